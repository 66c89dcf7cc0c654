"""Memory a peer can make ``dicomdesk serve`` spend is bounded (issue 11, items 3 and 4).

Each case runs a fresh server process, sends it the hostile request over a real socket and
reads the server's peak resident memory (VmHWM, /proc/<pid>/status) afterwards: before the
fixes a 1 GiB deflate bomb took the server to 2 GB, a 400,000-reference storage commitment
to 1.9 GB, a 200,000-item C-FIND sequence to ~245 MB over the baseline. Now each is refused
with the status docs/security.md names, nothing is kept, and the peak stays within
``HEADROOM`` of the baseline; legitimate deflated objects still store and retrieve intact.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from dicomdesk.net import pdu, uids
from dicomdesk.net.dimsemessages import CFindRQMessage, CGetRQMessage, NActionRQMessage
from dicomdesk.operations import Peer, send

from hostile_payloads import (DEFLATED_LE, associate_rq, commitment_flood, deflate_bomb,
                              find_identifier_flat, find_identifier_with_sequence, send_data_set)
from serving import (EXPLICIT_LE, RawAssociation, ServeProcess, archive_state, command_bytes, connect,
                     data_set_bytes, echo_ok, p_data, read_pdu)

pytestmark = pytest.mark.interop

MiB = 1 << 20
#: What a refused request may add to the server's peak RSS: the wire bytes held while they
#: arrive (at most 64 MiB for an in-memory data set), the walk's buffers, allocator slack.
HEADROOM = 160 * MiB
COMMITMENT = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS


@pytest.fixture
def server(tmp_path):
    with ServeProcess(tmp_path / "storage") as proc:
        echo_ok(proc.port)
        proc.baseline_rss = proc.status_field("VmRSS") * 1024
        yield proc
        assert proc.alive(), proc.log()[-3000:]


def peak_growth(server: ServeProcess) -> int:
    """Bytes the server's peak RSS grew over its baseline."""
    return server.status_field("VmHWM") * 1024 - server.baseline_rss


def _stored(server: ServeProcess) -> set[str]:
    files, rows, temp = archive_state(server.storage)
    assert files == rows and not temp
    return files


def _peer(server: ServeProcess) -> Peer:
    return Peer("127.0.0.1", server.port, "DICOMDESK", timeout=60)


# ------------------------------------------------------------------------- deflate (item 3)
def test_deflate_bomb_c_store_is_refused_a700_without_inflating_it_in_memory(server, tmp_path):
    bomb = deflate_bomb(tmp_path / "bomb.dcm", 1 << 30, "1.2.3.77.1.1.1")
    assert bomb.stat().st_size < 2 * MiB  # 1 GiB of zeros inflated
    result = send(_peer(server), [bomb])
    outcome = result.outcomes[0]
    assert outcome.state == "failed", outcome
    assert int(outcome.status) == 0xA700, outcome
    assert "inflates to more than" in (outcome.status.error_comment or ""), outcome.status.error_comment
    assert _stored(server) == set()
    assert peak_growth(server) < HEADROOM, f"peak grew {peak_growth(server) / MiB:.0f} MiB"
    echo_ok(server.port)


def test_deflate_bomb_under_a_smaller_configured_cap_is_refused(tmp_path):
    bomb = deflate_bomb(tmp_path / "bomb.dcm", 40 * MiB, "1.2.3.77.1.1.2")
    with ServeProcess(tmp_path / "storage", "--max-inflated-size", "32M") as server:
        outcome = send(_peer(server), [bomb]).outcomes[0]
        assert int(outcome.status) == 0xA700, outcome
        assert _stored(server) == set()


def test_legitimate_deflated_file_is_stored_found_and_retrieved_byte_identical(server, tmp_path):
    original = Path(get_testdata_file("image_dfl.dcm"))
    result = send(_peer(server), [original])
    assert result.stored == 1, result.outcomes
    uid = "1.3.6.1.4.1.5962.1.1.0.0.0.977067309.6001.0"
    assert _stored(server) == {uid}
    kept = next(server.storage.rglob(f"{uid}.dcm"))
    # the file's deflated data set has an odd length: sent with the NUL pad PS3.5 A.5 asks for
    sent = data_set_bytes(original) + b"\0"
    assert data_set_bytes(kept) == sent
    received, statuses = _c_get(server.port, uid, "1.2.840.10008.5.1.4.1.1.7")
    assert received == [sent] and statuses[-1] == 0x0000

    assert dcmread(BytesIO(b"\0" * 128 + b"DICM" + kept.read_bytes()[132:])).PatientName \
        == dcmread(original).PatientName


def test_retrieving_a_large_deflated_object_streams_it_without_inflating(server, tmp_path):
    """200 MiB inflated (under the 256 MiB default cap): kept, then sent back by C-GET as it is
    stored; the retrieve path reads only its header (it used to inflate it all, per retrieve)."""
    big = deflate_bomb(tmp_path / "big.dcm", 200 * MiB, "1.2.3.77.1.1.3")
    outcome = send(_peer(server), [big]).outcomes[0]
    assert outcome.state == "stored", outcome
    received, statuses = _c_get(server.port, "1.2.3.77.1.1.3", "1.2.840.10008.5.1.4.1.1.7")
    assert received == [data_set_bytes(big)] and statuses[-1] == 0x0000
    assert peak_growth(server) < HEADROOM, f"peak grew {peak_growth(server) / MiB:.0f} MiB"


def _c_get(port: int, instance_uid: str, sop_class: str, ts: str = DEFLATED_LE
           ) -> tuple[list[bytes], list[int]]:
    """C-GET of one instance by pynetdicom, accepting it in ``ts`` only: (the data sets as
    received, not decoded; the statuses of the C-GET responses)."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, build_role, evt

    received: list[bytes] = []

    def on_store(event):
        received.append(event.request.DataSet.getvalue())
        return 0x0000

    ae = AE(ae_title="GETTER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(uids.STUDY_ROOT_GET_SOP_CLASS)
    ae.add_requested_context(sop_class, [ts])
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.SOPInstanceUID = instance_uid
    identifier.StudyInstanceUID = ""
    identifier.SeriesInstanceUID = ""
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMDESK",
                         ext_neg=[build_role(sop_class, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        statuses = [int(status.Status) for status, _ in
                    assoc.send_c_get(identifier, uids.STUDY_ROOT_GET_SOP_CLASS) if status]
    finally:
        assoc.release()
    return received, statuses


# -------------------------------------------------------------- decoded size (item 4)
def _request(port: int, context_sop: str, message, data: bytes, ts: str = EXPLICIT_LE,
             then: Any = None) -> tuple[int, str]:
    """Send one request whose data set is ``data`` on a raw association; (status, comment)."""
    sock = connect(port, timeout=120)
    try:
        sock.sendall(associate_rq([(1, context_sop, ts)]))
        assert read_pdu(sock)[:1] == b"\x02"
        sock.sendall(p_data(1, command_bytes(message), command=True, last=True))
        send_data_set(sock, 1, data)
        raw = SimpleNamespace(sock=sock)
        rsp = RawAssociation.receive_message(raw)
        status = int(rsp.Status)
        comment = str(rsp.get("ErrorComment", "") or "")
        while status in (0xFF00, 0xFF01):
            rsp = RawAssociation.receive_message(raw)
            status = int(rsp.Status)
            comment = str(rsp.get("ErrorComment", "") or "")
        if then is not None:
            then(raw)
        sock.sendall(pdu.AReleaseRqPDU().encode())
        assert read_pdu(sock)[:1] == b"\x06"
        return status, comment
    finally:
        sock.close()


def _n_action() -> NActionRQMessage:
    msg = NActionRQMessage()
    msg.message_id = 1
    msg.requested_sop_class_uid = COMMITMENT
    msg.requested_sop_instance_uid = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE
    msg.action_type_id = 1
    msg.data_set = b"present"
    return msg


def _c_find(sop_class: str = uids.STUDY_ROOT_FIND_SOP_CLASS) -> CFindRQMessage:
    msg = CFindRQMessage()
    msg.message_id = 1
    msg.affected_sop_class_uid = sop_class
    msg.priority = 0
    msg.data_set = b"present"
    return msg


def test_storage_commitment_with_400000_references_is_refused_0213_with_bounded_memory(server):
    data = commitment_flood(400_000)
    assert len(data) > 25 * MiB
    status, comment = _request(server.port, COMMITMENT, _n_action(), data)
    assert status == 0x0213, hex(status)  # PS3.7 10.1.4.1.10 Resource limitation
    assert "more than 10000 items" in comment
    assert peak_growth(server) < HEADROOM, f"peak grew {peak_growth(server) / MiB:.0f} MiB"
    echo_ok(server.port)


def test_storage_commitment_within_the_bound_is_answered(server):
    reports = []

    def answer_the_report(raw: Any) -> None:  # the result comes on this association (J.3.3)
        from dicomdesk.net.dimsemessages import NEventReportRSPMessage

        report = RawAssociation.receive_message(raw)
        reports.append(report)
        while True:  # its Event Information follows the command (Failed SOP Sequence)
            items = pdu.PDataTfPDU.decode(read_pdu(raw.sock)).data_value_items
            if any(not item.is_command and item.is_last for item in items):
                break
        rsp = NEventReportRSPMessage()
        rsp.message_id_being_responded_to = report.MessageID
        rsp.affected_sop_class_uid = COMMITMENT
        rsp.affected_sop_instance_uid = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE
        rsp.event_type_id = report.EventTypeID
        rsp.status = 0
        raw.sock.sendall(p_data(1, command_bytes(rsp), command=True, last=True))

    status, _ = _request(server.port, COMMITMENT, _n_action(), commitment_flood(2_000),
                         then=answer_the_report)
    assert status == 0x0000, hex(status)
    assert reports[0].CommandField == 0x0100 and reports[0].EventTypeID == 2  # none archived


def test_c_find_identifier_with_a_200000_item_sequence_is_refused_a700(server):
    data = find_identifier_with_sequence(200_000)
    assert len(data) > 12 * MiB
    status, comment = _request(server.port, uids.STUDY_ROOT_FIND_SOP_CLASS, _c_find(), data)
    assert status == 0xA700, hex(status)  # PS3.4 C.4.1.1.4 Refused: Out of Resources
    assert "more than 10000 items" in comment
    assert peak_growth(server) < HEADROOM, f"peak grew {peak_growth(server) / MiB:.0f} MiB"


def test_c_find_identifier_with_too_many_elements_is_refused_a700(server):
    status, comment = _request(server.port, uids.STUDY_ROOT_FIND_SOP_CLASS, _c_find(),
                               find_identifier_flat(300_000))
    assert status == 0xA700, hex(status)
    assert "more than 50000 elements" in comment


def test_c_get_identifier_over_the_bounds_is_refused_a701(server):
    msg = CGetRQMessage()
    msg.message_id = 1
    msg.affected_sop_class_uid = uids.STUDY_ROOT_GET_SOP_CLASS
    msg.priority = 0
    msg.data_set = b"present"
    status, _ = _request(server.port, uids.STUDY_ROOT_GET_SOP_CLASS, msg,
                         find_identifier_with_sequence(20_000))
    assert status == 0xA701, hex(status)  # PS3.4 C.4.3.1.4 Out of Resources
