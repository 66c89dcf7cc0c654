"""The upper layer's life cycle on real sockets: idle timeout, release collision, cancel, memory.

* An idle timeout is an event of the connection object: the state machine leaves Sta6, so a
  later ``Association.abort()`` writes nothing more (it used to write a second A-ABORT to the
  closed descriptor: EBADF).
* A release collision (PS3.8 9.2.3, Table 9-10 Sta9-Sta12) completes on both sides: the
  requestor answers in Sta9 (AR-9), the acceptor waits in Sta10 for the RP (AR-10), then
  answers in Sta12 (AR-4).
* A C-FIND SCU given a cancel event sleeps in one poll over the socket and a wake descriptor:
  no wake-up until a response or the cancel arrives (it used to wake every 0.1 s).
* An association that ends frees its buffers at once, without the cycle collector (issue 11
  item 5: the DUL and its state machine referred to each other).
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicomdesk.net import dimsemessages, pdu, uids
from dicomdesk.net.applicationentity import AE, ClientAE
from dicomdesk.net.exceptions import AssociationAbortedError
from dicomdesk.net.fsm import States
from dicomdesk.net.sopclass import qr_find_scp, qr_find_scu, verification_scp, verification_scu

pytestmark = pytest.mark.interop

FIND = uids.STUDY_ROOT_FIND_SOP_CLASS


def _remote(port: int, aet: str = "SERVER") -> dict:
    return {"aet": aet, "address": "127.0.0.1", "port": port, "timeout": 10}


class _HeldFindAE(AE):
    """C-FIND SCP whose hook yields one match, then waits for the test before the next."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.first_sent = threading.Event()

    def on_receive_find(self, context, ds):
        match = Dataset()
        match.StudyInstanceUID = "1.2.3.1"
        match.QueryRetrieveLevel = "STUDY"
        yield match, 0xFF00
        self.first_sent.set()
        self.gate.wait(30)
        match2 = Dataset()
        match2.StudyInstanceUID = "1.2.3.2"
        match2.QueryRetrieveLevel = "STUDY"
        yield match2, 0xFF00


def test_idle_timeout_ends_the_association_in_the_state_machine_and_abort_writes_nothing_more(caplog):
    server = _HeldFindAE("SERVER", 0).add_scp(qr_find_scp)
    with server:
        client = ClientAE("IDLESCU").add_scu(qr_find_scu)
        client.network_timeout = 0.5  # idle timeout of the requestor's DUL
        assoc = client.request_association(_remote(server.port))
        try:
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = ""
            responses = assoc.get_scu(FIND)(query, assoc.next_message_id())
            assert next(responses)[1].is_pending
            # the SCP now holds its second match: nothing arrives, the idle timeout fires
            with caplog.at_level(logging.DEBUG, logger="dicomdesk.net"):
                with pytest.raises(AssociationAbortedError):
                    next(responses)
                assert assoc.dul.state in (States.STA_1, States.STA_13)
                assoc.abort()
            assert assoc.dul.state == States.STA_1
            assert not [r for r in caplog.records if "Bad file descriptor" in r.getMessage()
                        or "write to" in r.getMessage()]
        finally:
            server.gate.set()
            assoc.kill()


class _CollidingAE(AE):
    """Its Verification SCP releases the association instead of answering the C-ECHO-RQ."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcome: dict = {}
        self.done = threading.Event()

    def on_association_released(self, asce):
        self.outcome["acceptor"] = ("released", asce.dul.state)
        self.done.set()

    def on_association_aborted(self, asce, error):
        self.outcome["acceptor"] = (f"aborted: {error}", asce.dul.state)
        self.done.set()


def _release_instead_of_echo(asce, ctx, msg):
    asce.release()
    asce.ae.outcome["acceptor_release"] = (asce.is_released, asce.is_aborted, asce.dul.state)


_release_instead_of_echo.sop_classes = verification_scp.sop_classes


def test_a_release_collision_completes_on_both_sides():
    server = _CollidingAE("SERVER", 0).add_scp(_release_instead_of_echo)
    with server:
        client = ClientAE("COLLIDE").add_scu(verification_scu)
        assoc = client.request_association(_remote(server.port))
        ctx = assoc.sop_classes_as_scu[uids.VERIFICATION_SOP_CLASS]
        rq = dimsemessages.CEchoRQMessage()
        rq.message_id = assoc.next_message_id()
        rq.sop_class_uid = uids.VERIFICATION_SOP_CLASS
        # C-ECHO-RQ then A-RELEASE-RQ before reading anything: the acceptor answers the echo
        # with its own A-RELEASE-RQ, so both requests cross (PS3.8 9.2.3).
        assoc.send(rq, ctx.id)
        assoc.release()
        assert (assoc.is_released, assoc.is_aborted) == (True, False)
        assert assoc.dul.state == States.STA_1
        assert server.done.wait(10)
    assert server.outcome["acceptor_release"] == (True, False, States.STA_1)


def _switches_of(tid: int) -> int:
    text = Path(f"/proc/self/task/{tid}/status").read_text()
    return sum(int(line.split()[1]) for line in text.splitlines()
               if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))


def test_a_c_find_scu_waiting_with_a_cancel_event_sleeps_until_the_cancel_wakes_it():
    server = _HeldFindAE("SERVER", 0).add_scp(qr_find_scp)
    with server:
        client = ClientAE("CANCELSCU").add_scu(qr_find_scu)
        cancel = threading.Event()
        got_first = threading.Event()
        cancel_sent = threading.Event()
        result: dict = {"statuses": []}

        def run():
            result["tid"] = threading.get_native_id()
            with client.request_association(_remote(server.port)) as assoc:
                send = assoc.send

                def watching_send(msg, pc_id):  # notes the C-CANCEL-RQ going out
                    send(msg, pc_id)
                    if getattr(msg, "command_field", None) == 0x0FFF:
                        cancel_sent.set()

                assoc.send = watching_send
                query = Dataset()
                query.QueryRetrieveLevel = "STUDY"
                query.StudyInstanceUID = ""
                for _, status in assoc.get_scu(FIND)(query, assoc.next_message_id(), cancel):
                    result["statuses"].append(status)
                    got_first.set()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            assert got_first.wait(10) and server.first_sent.wait(10)
            before = _switches_of(result["tid"])
            threading.Event().wait(1.0)  # the SCU waits for its next response: no wake-up
            woke = _switches_of(result["tid"]) - before
            cancel.set()
            assert cancel_sent.wait(10), "the cancel did not wake the waiting SCU"
        finally:
            server.gate.set()
            worker.join(10)
        assert not worker.is_alive()
        # a 0.1 s check of the cancel event shows ~10 wake-ups; allow one stray
        assert woke <= 1, f"the waiting SCU thread woke {woke} times without I/O"
        assert result["statuses"][0].is_pending
        assert not result["statuses"][-1].is_pending


class _WatchingAE(AE):
    """Keeps weak references to each accepted association and its DUL."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.freed = threading.Event()
        self.refs: list = []
        self.aborted = threading.Event()

    def on_association_accepted(self, asce):
        self.refs.append(weakref.ref(asce.dul, lambda _: self.freed.set()))
        self.refs.append(weakref.ref(asce))

    def on_association_aborted(self, asce, error):
        self.aborted.set()


def test_an_aborted_association_with_an_unfinished_message_frees_its_buffers_without_gc():
    server = _WatchingAE("SERVER", 0).add_scp(qr_find_scp)
    with server:
        client = ClientAE("BIGSCU").add_scu(qr_find_scu)
        gc.collect()
        gc.disable()
        try:
            assoc = client.request_association(_remote(server.port))
            ctx = assoc.sop_classes_as_scu[FIND]
            rq = dimsemessages.CFindRQMessage()
            rq.message_id = assoc.next_message_id()
            rq.sop_class_uid = FIND
            rq.data_set = bytes(20 << 20)  # a 20 MiB identifier that never ends
            pdus = list(rq.encode(ctx.id, assoc.peer_max_pdu_length))
            for p_data in pdus[:-1]:  # everything but the last fragment
                assoc.dul.send(p_data)
            del pdus, rq
            assoc.abort()
            assert server.aborted.wait(10)
            assert server.freed.wait(10), "the ended association is kept alive by a reference cycle"
            assert all(ref() is None for ref in server.refs)
            client_dul = weakref.ref(assoc.dul)
            del assoc
            assert client_dul() is None
        finally:
            gc.enable()


class _ContextAE(AE):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list = []

    def on_receive_echo(self, context):
        association = context.association
        self.seen.append((association.calling_ae_title, association.dul.state, context.id,
                          context.sop_class))
        return 0


def test_a_hook_reaches_its_association_through_the_context_it_is_given():
    server = _ContextAE("SERVER", 0).add_scp(verification_scp)
    with server:
        client = ClientAE("HOOKSCU").add_scu(verification_scu)
        with client.request_association(_remote(server.port)) as assoc:
            assert assoc.get_scu(uids.VERIFICATION_SOP_CLASS)(assoc.next_message_id()) == 0
    [(calling, state, pc_id, sop_class)] = server.seen
    assert (calling, state, sop_class) == ("HOOKSCU", States.STA_6, uids.VERIFICATION_SOP_CLASS)
    assert pc_id % 2 == 1
