"""Two ``UpperLayerConnection`` objects joined in memory: the whole upper layer without sockets.

Bytes one side returns from ``send``/``send_data``/``data_to_send`` are handed to the other's
``receive_data`` (in chunks of any size); time is a number the test chooses. Covered:
negotiation, C-STORE in 16 KiB fragments, C-FIND with C-CANCEL, C-GET with a C-STORE
sub-operation, release, release collision in both roles (PS3.8 9.2.3), A-ABORT sent and
received in every state, the idle timeout and ARTIM (PS3.8 9.1.5).
"""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from dicomdesk.net import dimsemessages, pdu, uids
from dicomdesk.net.dataset_encoding import encode_data_set
from dicomdesk.net.negotiation import (
    PContextDef,
    accepted_from_ac,
    build_pres_context_def_list,
    build_user_information,
    negotiate_contexts,
)
from dicomdesk.net.exceptions import NetDICOMError
from dicomdesk.net.fsm import APAbortIndication, States
from dicomdesk.net.upperlayer import CancelRequested, IdleTimeout, UpperLayerConnection

CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = uids.STUDY_ROOT_FIND_SOP_CLASS
GET = uids.STUDY_ROOT_GET_SOP_CLASS
EXPLICIT = uids.EXPLICIT_VR_LITTLE_ENDIAN
MAX_PDU = 16384  # DCMTK's default maximum


def wire(parts: list) -> bytes:
    return b"".join(p if isinstance(p, (bytes, bytearray, memoryview)) else bytes(p) for p in parts)


def deliver(parts: list, to: UpperLayerConnection, now: float = 0.0, chunk: int = 0) -> None:
    """Hand bytes to the other side, whole or in ``chunk``-byte pieces."""
    data = wire(parts)
    if not chunk:
        to.receive_data(data, now)
        return
    for start in range(0, len(data), chunk):
        to.receive_data(data[start:start + chunk], now)


def events(conn: UpperLayerConnection) -> list:
    out = []
    while (item := conn.next_event()) is not None:
        out.append(item)
    return out


class Pair:
    """A requestor (``scu``) and an acceptor (``scp``) with their wire between them."""

    def __init__(self, *, idle_timeout=None, artim_timeout=30.0):
        self.scu = UpperLayerConnection(max_pdu_length=MAX_PDU, is_requestor=True,
                                        idle_timeout=idle_timeout, artim_timeout=artim_timeout)
        self.scp = UpperLayerConnection(max_pdu_length=MAX_PDU, idle_timeout=idle_timeout,
                                        artim_timeout=artim_timeout)
        self.proposed = {1: PContextDef(1, CT, [EXPLICIT]), 3: PContextDef(3, FIND, [EXPLICIT]),
                         5: PContextDef(5, GET, [EXPLICIT])}

    # -- establishment, one step at a time (each leaves a state to test)
    def request(self) -> None:  # scu: Sta4; scp: Sta2
        self.scp.connection_made(0.0)
        self.rq = pdu.AAssociateRqPDU("SCP", "SCU", [
            pdu.ApplicationContextItem("1.2.840.10008.3.1.1.1"),
            *build_pres_context_def_list(self.proposed.items()),
            build_user_information(MAX_PDU, role_selection=[]),
        ])
        self.scu.request(self.rq, 0.0)

    def connect(self) -> None:  # scu: Sta5
        self.rq_bytes = self.scu.connected(0.0)

    def deliver_rq(self) -> list:  # scp: Sta3
        deliver(self.rq_bytes, self.scp)
        return events(self.scp)

    def accept(self) -> list:  # both Sta6
        requested = [i for i in self.rq.variable_items if getattr(i, "item_type", None) == 0x20]
        negotiated = negotiate_contexts(requested, {CT: [EXPLICIT], FIND: [EXPLICIT], GET: [EXPLICIT]},
                                        {CT: [EXPLICIT]})
        ac = pdu.AAssociateAcPDU("SCP", "SCU", [
            pdu.ApplicationContextItem("1.2.840.10008.3.1.1.1"), *negotiated.ac_items,
            build_user_information(MAX_PDU)])
        self.scp.accepted_contexts = negotiated.accepted
        deliver(self.scp.send(ac, 0.0), self.scu)
        got = events(self.scu)
        self.scu.accepted_contexts = accepted_from_ac(self.proposed, negotiated.ac_items)
        return got

    def establish(self) -> "Pair":
        self.request()
        self.connect()
        self.deliver_rq()
        self.accept()
        return self


def send_message(sender: UpperLayerConnection, msg, pc_id: int) -> list:
    return sender.send_data(list(msg.encode(pc_id, MAX_PDU)), 0.0)


# ---------------------------------------------------------------------------- negotiation
def test_negotiation_in_memory_reaches_sta6_on_both_sides():
    pair = Pair()
    pair.request()
    assert (pair.scu.state, pair.scp.state) == (States.STA_4, States.STA_2)
    pair.connect()
    assert pair.scu.state == States.STA_5
    rq_events = pair.deliver_rq()
    assert [type(e).__name__ for e in rq_events] == ["AAssociateRqPDU"]
    assert pair.scp.state == States.STA_3
    ac_events = pair.accept()
    assert [type(e).__name__ for e in ac_events] == ["AAssociateAcPDU"]
    assert (pair.scu.state, pair.scp.state) == (States.STA_6, States.STA_6)
    assert set(pair.scu.accepted_contexts) == {1, 3, 5}
    assert pair.scu.accepted_contexts[3].supported_ts == EXPLICIT
    assert pair.scp.next_deadline() is None  # ARTIM stopped by AE-6, no idle timeout


# ---------------------------------------------------------------------------- C-STORE
@pytest.mark.parametrize("chunk", [0, 1000, 16390])
def test_c_store_in_16_kib_fragments_is_reassembled_whole(chunk):
    pair = Pair().establish()
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientName = "Paired^Memory"
    ds.add_new(0x00091010, "OB", bytes(range(256)) * 400)  # 100 KiB: 7 fragments
    rq = dimsemessages.CStoreRQMessage()
    rq.message_id = 7
    rq.sop_class_uid = CT
    rq.affected_sop_instance_uid = "1.2.3.4"
    rq.data_set = encode_data_set(ds, EXPLICIT)
    pdus = list(rq.encode(1, MAX_PDU))
    assert len(pdus) == 1 + 7
    deliver(pair.scu.send_data(pdus, 0.0), pair.scp, chunk=chunk)
    [(msg, pc_id)] = events(pair.scp)
    assert pc_id == 1 and isinstance(msg, dimsemessages.CStoreRQMessage)
    assert msg.data_set.PatientName == "Paired^Memory"
    assert msg.data_set[0x00091010].value == bytes(range(256)) * 400
    rsp = dimsemessages.CStoreRSPMessage()
    rsp.message_id_being_responded_to = 7
    rsp.sop_class_uid = CT
    rsp.affected_sop_instance_uid = "1.2.3.4"
    rsp.status = 0
    deliver(send_message(pair.scp, rsp, 1), pair.scu)
    [(answer, _)] = events(pair.scu)
    assert answer.status == 0 and answer.message_id_being_responded_to == 7


# ---------------------------------------------------------------------------- C-FIND + C-CANCEL
def _identifier(uid: str) -> bytes:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    return encode_data_set(ds, EXPLICIT)


def _find_rsp(status: int, identifier: bytes | None = None):
    rsp = dimsemessages.CFindRSPMessage()
    rsp.message_id_being_responded_to = 1
    rsp.sop_class_uid = FIND
    rsp.status = status
    rsp.data_set = identifier
    return rsp


def test_c_find_cancelled_by_the_local_user_gets_the_final_cancel_status():
    pair = Pair().establish()
    rq = dimsemessages.CFindRQMessage()
    rq.message_id = 1
    rq.sop_class_uid = FIND
    rq.data_set = _identifier("")
    deliver(send_message(pair.scu, rq, 3), pair.scp)
    [(find, _)] = events(pair.scp)
    assert find.data_set.QueryRetrieveLevel == "STUDY"
    deliver(send_message(pair.scp, _find_rsp(0xFF00, _identifier("1.2.1")), 3), pair.scu)
    [(pending, _)] = events(pair.scu)
    assert pending.status == 0xFF00 and pending.data_set.StudyInstanceUID == "1.2.1"
    # the user cancels while the SCU waits: an event of the connection, nothing is sent yet
    pair.scu.cancel()
    assert isinstance(pair.scu.next_event(), CancelRequested)
    assert pair.scu.data_to_send() == []
    cancel = dimsemessages.CCancelRQMessage()
    cancel.message_id_being_responded_to = 1
    deliver(send_message(pair.scu, cancel, 3), pair.scp)
    [(got, _)] = events(pair.scp)
    assert got.command_field == 0x0FFF and got.message_id_being_responded_to == 1
    deliver(send_message(pair.scp, _find_rsp(0xFE00), 3), pair.scu)
    [(final, _)] = events(pair.scu)
    assert final.status == 0xFE00 and final.data_set is None
    assert (pair.scu.state, pair.scp.state) == (States.STA_6, States.STA_6)


# ---------------------------------------------------------------------------- C-GET
def test_c_get_with_a_c_store_sub_operation_on_the_same_association():
    pair = Pair().establish()
    rq = dimsemessages.CGetRQMessage()
    rq.message_id = 1
    rq.sop_class_uid = GET
    rq.data_set = _identifier("1.2.1")
    deliver(send_message(pair.scu, rq, 5), pair.scp)
    [(get, _)] = events(pair.scp)
    assert get.command_field == 0x0010
    # sub-operation: the SCP sends C-STORE-RQ on the storage context (SCU/SCP role reversed)
    instance = Dataset()
    instance.SOPClassUID = CT
    instance.SOPInstanceUID = "1.2.1.1"
    instance.PatientName = "Sub^Op"
    store = dimsemessages.CStoreRQMessage()
    store.message_id = 2
    store.sop_class_uid = CT
    store.affected_sop_instance_uid = "1.2.1.1"
    store.data_set = encode_data_set(instance, EXPLICIT)
    deliver(send_message(pair.scp, store, 1), pair.scu, chunk=512)
    [(sub, pc_id)] = events(pair.scu)
    assert pc_id == 1 and sub.data_set.PatientName == "Sub^Op"
    store_rsp = dimsemessages.CStoreRSPMessage()
    store_rsp.message_id_being_responded_to = 2
    store_rsp.sop_class_uid = CT
    store_rsp.status = 0
    deliver(send_message(pair.scu, store_rsp, 1), pair.scp)
    [(stored, _)] = events(pair.scp)
    assert stored.status == 0
    for status, remaining, completed in ((0xFF00, 0, 1), (0x0000, None, 1)):
        rsp = dimsemessages.CGetRSPMessage()
        rsp.message_id_being_responded_to = 1
        rsp.sop_class_uid = GET
        rsp.status = status
        rsp.num_of_remaining_sub_ops = remaining
        rsp.num_of_completed_sub_ops = completed
        deliver(send_message(pair.scp, rsp, 5), pair.scu)
    answers = [msg for msg, _ in events(pair.scu)]
    assert [a.status for a in answers] == [0xFF00, 0x0000]
    assert answers[-1].num_of_completed_sub_ops == 1


# ---------------------------------------------------------------------------- release
def test_release_requested_by_the_requestor():
    pair = Pair().establish()
    deliver(pair.scu.send(pdu.AReleaseRqPDU(), 1.0), pair.scp)
    assert pair.scu.state == States.STA_7
    [rq] = events(pair.scp)
    assert rq.pdu_type == 5 and pair.scp.state == States.STA_8
    deliver(pair.scp.send(pdu.AReleaseRpPDU(), 1.0), pair.scu)
    assert pair.scp.state == States.STA_13 and pair.scp.next_deadline() == 31.0  # ARTIM
    [rp] = events(pair.scu)
    assert rp.pdu_type == 6 and pair.scu.state == States.STA_1 and pair.scu.must_close
    pair.scp.receive_data(b"", 1.5)  # the requestor closed the transport
    assert pair.scp.state == States.STA_1 and pair.scp.next_deadline() is None


def test_release_collision_follows_ps3_8_9_2_3_in_both_roles():
    pair = Pair().establish()
    scu_rq = pair.scu.send(pdu.AReleaseRqPDU(), 0.0)
    scp_rq = pair.scp.send(pdu.AReleaseRqPDU(), 0.0)
    assert (pair.scu.state, pair.scp.state) == (States.STA_7, States.STA_7)
    deliver(scp_rq, pair.scu)
    deliver(scu_rq, pair.scp)
    assert [e.pdu_type for e in events(pair.scu)] == [5]
    assert [e.pdu_type for e in events(pair.scp)] == [5]
    assert (pair.scu.state, pair.scp.state) == (States.STA_9, States.STA_10)
    # the acceptor may not answer yet: Sta10 + A-RELEASE response is a blank cell
    with pytest.raises(NetDICOMError):
        pair.scp.send(pdu.AReleaseRpPDU(), 0.0)
    deliver(pair.scu.send(pdu.AReleaseRpPDU(), 0.0), pair.scp)  # AR-9
    assert pair.scu.state == States.STA_11
    assert [e.pdu_type for e in events(pair.scp)] == [6]  # AR-10: release confirmation
    assert pair.scp.state == States.STA_12
    deliver(pair.scp.send(pdu.AReleaseRpPDU(), 0.0), pair.scu)  # AR-4
    assert pair.scp.state == States.STA_13
    assert [e.pdu_type for e in events(pair.scu)] == [6]  # AR-3
    assert pair.scu.state == States.STA_1 and pair.scu.must_close
    pair.scp.receive_data(b"", 0.1)
    assert pair.scp.state == States.STA_1


# ---------------------------------------------------------------------------- A-ABORT
def _drive(state: States) -> tuple[Pair, UpperLayerConnection, UpperLayerConnection]:
    """A pair with one side (returned second, its peer third) in ``state``."""
    pair = Pair()
    if state == States.STA_2:
        pair.request()
        return pair, pair.scp, pair.scu
    if state == States.STA_4:
        pair.request()
        return pair, pair.scu, pair.scp
    if state == States.STA_5:
        pair.request()
        pair.connect()
        return pair, pair.scu, pair.scp
    if state == States.STA_3:
        pair.request()
        pair.connect()
        pair.deliver_rq()
        return pair, pair.scp, pair.scu
    pair.establish()
    if state == States.STA_6:
        return pair, pair.scu, pair.scp
    if state == States.STA_7:
        pair.scu.send(pdu.AReleaseRqPDU(), 0.0)
        return pair, pair.scu, pair.scp
    if state == States.STA_8:
        deliver(pair.scu.send(pdu.AReleaseRqPDU(), 0.0), pair.scp)
        events(pair.scp)
        return pair, pair.scp, pair.scu
    # release collision states
    scu_rq = pair.scu.send(pdu.AReleaseRqPDU(), 0.0)
    scp_rq = pair.scp.send(pdu.AReleaseRqPDU(), 0.0)
    deliver(scp_rq, pair.scu)
    deliver(scu_rq, pair.scp)
    events(pair.scu)
    events(pair.scp)
    if state == States.STA_9:
        return pair, pair.scu, pair.scp
    if state == States.STA_10:
        return pair, pair.scp, pair.scu
    deliver(pair.scu.send(pdu.AReleaseRpPDU(), 0.0), pair.scp)
    if state == States.STA_11:
        return pair, pair.scu, pair.scp
    events(pair.scp)
    if state == States.STA_12:
        return pair, pair.scp, pair.scu
    assert state == States.STA_13
    pair.scp.send(pdu.AReleaseRpPDU(), 0.0)
    return pair, pair.scp, pair.scu


ALL_BUT_IDLE = [s for s in States if s != States.STA_1]


@pytest.mark.parametrize("state", ALL_BUT_IDLE, ids=lambda s: s.name)
def test_drive_reaches_each_state(state):
    _, side, _ = _drive(state)
    assert side.state == state


@pytest.mark.parametrize("state", ALL_BUT_IDLE, ids=lambda s: s.name)
def test_a_local_a_abort_in_every_state(state):
    """Evt15 (Table 9-10): AA-2 in Sta4, AA-1 wherever a connection is open, blank in Sta2
    and Sta13 (our own code misused the API)."""
    _, side, peer = _drive(state)
    if state in (States.STA_2, States.STA_13):
        with pytest.raises(NetDICOMError):
            side.send(pdu.AAbortPDU(0, 0), 5.0)
        assert side.state == state
        return
    sent = side.send(pdu.AAbortPDU(0, 0), 5.0)
    if state == States.STA_4:  # AA-2: no connection yet, nothing to send
        assert sent == [] and side.state == States.STA_1 and side.must_close
        return
    assert wire(sent) == pdu.AAbortPDU(0, 0).encode()  # AA-1
    assert side.state == States.STA_13 and side.next_deadline() == 35.0  # ARTIM
    events(peer)
    peer_waits_for_rq = peer.state == States.STA_2  # Sta5: the RQ is still on the wire
    deliver(sent, peer)
    got = events(peer)
    if peer_waits_for_rq:
        assert got == []  # AA-2
    else:
        [abort] = got
        assert abort.pdu_type == 7 and abort.source == 0  # AA-3: A-ABORT indication
    assert peer.state == States.STA_1 and peer.must_close
    side.receive_data(b"", 5.1)  # the peer closed: AR-5
    assert side.state == States.STA_1


@pytest.mark.parametrize("state", [s for s in ALL_BUT_IDLE if s != States.STA_4], ids=lambda s: s.name)
def test_an_a_abort_received_in_every_state(state):
    """Evt16 (Table 9-10): AA-2 in Sta2 and Sta13 (close, nothing to indicate), AA-3 elsewhere."""
    _, side, _ = _drive(state)
    events(side)
    side.receive_data(pdu.AAbortPDU(2, 6).encode(), 1.0)
    got = events(side)
    assert side.state == States.STA_1 and side.must_close
    if state in (States.STA_2, States.STA_13):
        assert got == []
    else:
        assert got == [APAbortIndication(2, 6)]  # provider source: A-P-ABORT


# ---------------------------------------------------------------------------- timers
def test_the_idle_timeout_is_an_event_that_aborts_and_closes():
    pair = Pair(idle_timeout=5.0).establish()
    pair.scu.waiting(10.0)
    assert pair.scu.next_deadline() == 15.0
    pair.scu.timers_expired(14.9)
    assert pair.scu.state == States.STA_6 and pair.scu.next_event() is None
    pair.scu.timers_expired(15.0)
    assert pair.scu.state == States.STA_13 and pair.scu.must_close
    [indication] = events(pair.scu)
    assert isinstance(indication, IdleTimeout) and indication.source == 2
    sent = pair.scu.data_to_send()
    assert wire(sent) == pdu.AAbortPDU(2, 0).encode()
    pair.scu.connection_lost(15.0)  # the driver closed it: nothing more will be sent
    assert pair.scu.state == States.STA_1
    with pytest.raises(NetDICOMError):
        pair.scu.send(pdu.AAbortPDU(0, 0), 16.0)  # a second abort is API misuse, not a write
    deliver(sent, pair.scp)
    assert events(pair.scp) == [APAbortIndication(2, 0)]


def test_a_pdu_that_begins_must_end_within_the_idle_timeout_plus_its_length_at_the_minimum_rate():
    pair = Pair(idle_timeout=5.0).establish()
    data = pdu.PDataTfPDU([pdu.PresentationDataValueItem(1, b"\x00" + bytes(16000))]).encode()
    pair.scp.waiting(0.0)
    pair.scp.receive_data(data[:100], 1.0)
    assert pair.scp.next_event() is None
    assert pair.scp.next_deadline() == 6.0  # nothing more for 5 s: idle
    pair.scp.receive_data(data[100:101], 5.9)  # a byte now and then keeps it from idling...
    # ...but the PDU must end 5 s after its first byte plus its length at 64 KiB/s
    assert 6.2 < pair.scp.next_deadline() < 6.3
    pair.scp.timers_expired(6.1)
    assert pair.scp.next_event() is None
    pair.scp.timers_expired(6.3)
    assert isinstance(pair.scp.next_event(), IdleTimeout)


def test_artim_closes_a_connection_that_never_sends_an_a_associate_rq():
    scp = UpperLayerConnection(artim_timeout=30.0, idle_timeout=5.0)
    scp.connection_made(100.0)
    assert scp.next_deadline() == 130.0  # ARTIM, not the idle timeout
    scp.timers_expired(129.0)
    assert scp.state == States.STA_2
    scp.timers_expired(130.0)  # Evt18: AA-2
    assert scp.state == States.STA_1 and scp.must_close and events(scp) == []


def test_an_invalid_pdu_aborts_and_the_rest_of_the_stream_is_discarded():
    pair = Pair().establish()
    pair.scp.receive_data(bytes.fromhex("09 00 00000004 00000000") + b"more", 2.0)
    assert events(pair.scp) == [APAbortIndication(2, 1)]  # unrecognized PDU (AA-8)
    assert wire(pair.scp.data_to_send()) == pdu.AAbortPDU(2, 1).encode()
    assert pair.scp.state == States.STA_13 and pair.scp.next_deadline() == 32.0
    pair.scp.receive_data(pdu.AReleaseRqPDU().encode(), 3.0)  # not framed any more
    assert events(pair.scp) == [] and pair.scp.state == States.STA_13
    pair.scp.timers_expired(32.0)  # ARTIM: AA-2
    assert pair.scp.state == States.STA_1 and pair.scp.must_close
