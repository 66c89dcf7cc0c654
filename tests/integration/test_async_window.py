"""The Asynchronous Operations Window (PS3.7 D.3.3.3) between ``send`` and the peers.

``send`` proposes to keep up to ``MAX_OUTSTANDING`` C-STOREs outstanding; ``dicomdesk serve``
accepts up to 16 (its durable archive then fsyncs object N while object N+1 arrives). A peer
that answers no window (DCMTK storescp, pynetdicom without a handler) or (1, 1) (pynetdicom
with one) gets exactly one C-STORE at a time, as before. Counted here without timing anything:
how many files are "sending" and not yet answered at once, as the sender reports them.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from dicomdesk import config
from dicomdesk.net import uids
from dicomdesk.net.applicationentity import ClientAE
from dicomdesk.operations.common import Peer
from dicomdesk.operations.sending import MAX_OUTSTANDING, send
from dicomdesk.operations.server import LocalServer

from test_send_pipelining import (assert_all_arrived, data_set_bytes, pynetdicom_store_scp,  # noqa: E402
                                  received_by_uid, store_handler, write_images)

pytestmark = pytest.mark.interop

SERVER_WINDOW = 16  # dicomdesk serve's Maximum Number Operations Performed (DEFAULT_MAX_OPS_PERFORMED)


class Outstanding:
    """Files sent and not yet answered, from the sender's progress events (any thread)."""

    def __init__(self) -> None:
        self.open: set[int] = set()
        self.most = 0
        self.cond = threading.Condition()

    def __call__(self, p) -> None:
        with self.cond:
            if p.state == "sending":
                self.open.add(p.index)
                self.most = max(self.most, len(self.open))
            elif p.state in ("stored", "failed", "skipped"):
                self.open.discard(p.index)
            self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.open) >= count, timeout)


def negotiated_window(port: int, aet: str) -> int:
    """What our requestor gets from the peer when it proposes ``MAX_OUTSTANDING``."""
    ae = ClientAE("PROBE")
    ae.max_ops_invoked = MAX_OUTSTANDING
    ae.update_context_def_list([uids.CT_IMAGE_STORAGE], transfer_syntaxes=[uids.EXPLICIT_VR_LITTLE_ENDIAN])
    with ae.request_association({"aet": aet, "address": "127.0.0.1", "port": port, "timeout": 20}) as assoc:
        return assoc.ops_window


def local_server(tmp_path: Path, durable: bool, on_stored=None, on_association=None) -> LocalServer:
    settings = config.ServerSettings(aet="DICOMDESK", port=0, storage_dir=tmp_path / "archive",
                                     durable=durable)
    return LocalServer(settings, on_association=on_association, on_stored=on_stored).start()


# ------------------------------------------------------------------ negotiated: our own server
@pytest.mark.parametrize("durable", [True, False], ids=["durable", "no-durable"])
def test_our_server_accepts_the_window_and_the_sender_fills_it(tmp_path, durable):
    paths = write_images(tmp_path / "src", 3 * MAX_OUTSTANDING)
    tracker = Outstanding()
    filled: list[bool] = []

    def hold_the_first(obj) -> None:
        # The first object's commit waits until the sender has the whole window out: only a
        # sender that does not wait for each response gets there.
        if not filled:
            filled.append(tracker.wait_for(MAX_OUTSTANDING))

    server = local_server(tmp_path, durable, on_stored=hold_the_first)
    try:
        assert negotiated_window(server.port, "DICOMDESK") == min(MAX_OUTSTANDING, SERVER_WINDOW)
        result = send(Peer("127.0.0.1", server.port, "DICOMDESK"), paths, progress=tracker)
    finally:
        server.stop()
    assert filled == [True]
    assert tracker.most == MAX_OUTSTANDING  # never more than the window
    assert_all_arrived(paths, result, received_by_uid(tmp_path / "archive"))


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "no-durable"])
def test_a_refusal_in_the_middle_of_a_pipelined_batch_fails_that_file_only(tmp_path, durable):
    from pydicom import dcmread

    paths = write_images(tmp_path / "src", 20)
    bad = {paths[3], paths[10], paths[11]}  # answered while other C-STOREs are outstanding
    for path in bad:
        ds = dcmread(path)
        del ds.StudyInstanceUID  # the archive refuses it: A900, "StudyInstanceUID is missing"
        ds.save_as(path, enforce_file_format=True)
    tracker = Outstanding()
    server = local_server(tmp_path, durable)
    try:
        result = send(Peer("127.0.0.1", server.port, "DICOMDESK"), paths, progress=tracker)
    finally:
        server.stop()
    outcome = {o.path: o for o in result.outcomes}
    for path in bad:
        assert outcome[path].state == "failed"
        assert outcome[path].status is not None and int(outcome[path].status) == 0xA900
        assert outcome[path].message.startswith(str(path))
        assert "StudyInstanceUID is missing" in outcome[path].message
    assert [outcome[p].state for p in paths if p not in bad] == ["stored"] * 17
    assert result.error is None and result.stored == 17 and result.failed == 3
    received = received_by_uid(tmp_path / "archive")
    assert not {data_set_bytes(p)[0] for p in bad} & set(received)
    for path in paths:
        if path not in bad:
            uid, raw = data_set_bytes(path)
            assert received[uid] == raw
    assert 1 <= tracker.most <= MAX_OUTSTANDING


def test_out_of_line_commits_are_told_on_the_association_thread(tmp_path):
    """``on_stored`` comes from the association's own thread even when the durable archive
    commits out of line (the window counts objects per association thread)."""
    paths = write_images(tmp_path / "src", 2 * MAX_OUTSTANDING)
    opened: list[int] = []
    told: list[int] = []
    server = local_server(tmp_path, True, on_stored=lambda obj: told.append(threading.get_ident()),
                          on_association=lambda event: event.state == "open" and opened.append(
                              threading.get_ident()))
    try:
        result = send(Peer("127.0.0.1", server.port, "DICOMDESK"), paths)
    finally:
        server.stop()
    assert result.ok and result.stored == len(paths)
    assert len(opened) == 1 and told == opened * len(paths)


# ------------------------------------------------------------------ not negotiated: as before
def test_dcmtk_storescp_answers_no_window_and_gets_one_store_at_a_time(dcmtk_storescp, tmp_path):
    assert negotiated_window(dcmtk_storescp.port, "STORESCP") == 1
    paths = write_images(tmp_path / "src", 20)
    tracker = Outstanding()
    result = send(Peer("127.0.0.1", dcmtk_storescp.port, "STORESCP"), paths, progress=tracker)
    assert_all_arrived(paths, result, received_by_uid(dcmtk_storescp.output_dir))
    assert tracker.most == 1


@pytest.mark.parametrize("answers_window", [False, True], ids=["no-item", "answers-1-1"])
def test_pynetdicom_scp_gets_one_store_at_a_time(pynetdicom_scp, tmp_path, answers_window):
    from pynetdicom import evt

    paths = write_images(tmp_path / "src", 12)
    received: dict[str, bytes] = {}
    handlers = [(evt.EVT_C_STORE, store_handler(received))]
    if answers_window:  # pynetdicom then answers (1, 1) to any proposal
        handlers.append((evt.EVT_ASYNC_OPS, lambda event: (1, 1)))
    scp = pynetdicom_scp([(uids.CT_IMAGE_STORAGE, [uids.EXPLICIT_VR_LITTLE_ENDIAN,
                                                   uids.IMPLICIT_VR_LITTLE_ENDIAN])],
                         handlers, ae_title="STORESCP")
    assert negotiated_window(scp.port, "STORESCP") == 1
    tracker = Outstanding()
    result = send(Peer("127.0.0.1", scp.port, "STORESCP"), paths, progress=tracker)
    assert_all_arrived(paths, result, received)
    assert tracker.most == 1


# ------------------------------------------------------------------ the acceptor's answer
@pytest.mark.parametrize("proposed,performed", [(0, SERVER_WINDOW), (4, 4), (64, SERVER_WINDOW), (1, 1)])
def test_pynetdicom_scu_proposing_a_window_gets_our_answer_and_stores(tmp_path, proposed, performed):
    from pynetdicom import AE
    from pynetdicom.pdu_primitives import AsynchronousOperationsWindowNegotiation

    paths = write_images(tmp_path / "src", 6)[::2]  # Explicit VR Little Endian
    server = local_server(tmp_path, True)
    try:
        ae = AE(ae_title="PYNETSCU")
        ae.add_requested_context(uids.CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
        window = AsynchronousOperationsWindowNegotiation()
        window.maximum_number_operations_invoked = proposed
        window.maximum_number_operations_performed = 1
        assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMDESK", ext_neg=[window])
        assert assoc.is_established
        try:
            assert assoc.acceptor.asynchronous_operations == (1, performed)
            from pydicom import dcmread

            for path in paths:  # pynetdicom itself waits for each response
                status = assoc.send_c_store(dcmread(path))
                assert status.Status == 0x0000
        finally:
            assoc.release()
    finally:
        server.stop()
    received = received_by_uid(tmp_path / "archive")
    for path in paths:
        uid, _ = data_set_bytes(path)
        assert uid in received


def test_storescu_to_our_durable_server_proposes_no_window_and_stores_in_line(tmp_path):
    from peers import run_dcmtk

    paths = write_images(tmp_path / "src", 10)
    server = local_server(tmp_path, True)
    try:
        done = run_dcmtk("storescu", "-aec", "DICOMDESK", "+sd", "127.0.0.1", str(server.port),
                         str(tmp_path / "src"))
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()
    received = received_by_uid(tmp_path / "archive")  # storescu may convert the syntax
    assert set(received) == {data_set_bytes(p)[0] for p in paths}


def test_window_1_proposes_none_and_sends_one_at_a_time_to_our_server(tmp_path):
    """``send(max_outstanding=1)`` / ``dicomdesk send --window 1``: for a peer that cannot take
    the proposal, no window item is sent at all, and the stores are synchronous."""
    import subprocess
    import sys

    paths = write_images(tmp_path / "src", 12)
    tracker = Outstanding()
    server = local_server(tmp_path, True)
    try:
        result = send(Peer("127.0.0.1", server.port, "DICOMDESK"), paths[:6], progress=tracker,
                      max_outstanding=1)
        done = subprocess.run([sys.executable, "-m", "dicomdesk", "send", "--window", "1", "--aec",
                               "DICOMDESK", "127.0.0.1", str(server.port), *map(str, paths[6:])],
                              capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert tracker.most == 1
    assert done.returncode == 0, done.stderr
    received = received_by_uid(tmp_path / "archive")
    assert result.ok and set(received) == {data_set_bytes(p)[0] for p in paths}


def test_a_release_right_after_pipelined_stores_gets_every_answer_first(tmp_path):
    """A requestor that sends three C-STOREs within its window and then A-RELEASE-RQ at
    once, reading nothing: the durable server answers the three (in order, each once its
    object is durable) before its A-RELEASE-RP, and all three are stored."""
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
    from serving import connect, encode_dataset, make_dataset, p_data, command_bytes, read_pdu, store_rq

    from dicomdesk.net import pdu
    from dicomdesk.net.negotiation import APPLICATION_CONTEXT_NAME, build_user_information
    from dicomdesk.net.commandset import decode_command

    server = local_server(tmp_path, True)
    uids_sent = [f"1.2.826.0.1.3680043.99.7.{n}" for n in (1, 2, 3)]
    try:
        sock = connect(server.port)
        rq = pdu.AAssociateRqPDU("DICOMDESK", "PIPELINER", [
            pdu.ApplicationContextItem(APPLICATION_CONTEXT_NAME),
            pdu.PresentationContextItemRQ(1, pdu.AbstractSyntaxSubItem(uids.CT_IMAGE_STORAGE),
                                          [pdu.TransferSyntaxSubItem(uids.EXPLICIT_VR_LITTLE_ENDIAN)]),
            build_user_information(16384, async_window=(0, 1))])
        sock.sendall(rq.encode())
        assert read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
        burst = b""
        for n, uid in enumerate(uids_sent, start=1):
            data = encode_dataset(make_dataset(uid, study="1.2.826.0.1.3680043.99.7", pixels=40_000))
            burst += p_data(1, command_bytes(store_rq(uid, message_id=n)), command=True, last=True)
            for start in range(0, len(data), 16000):
                burst += p_data(1, data[start:start + 16000], command=False, last=start + 16000 >= len(data))
        sock.sendall(burst + pdu.AReleaseRqPDU().encode())
        answered = []
        while True:
            raw = read_pdu(sock)
            assert raw, "the server closed before its A-RELEASE-RP"
            if raw[0] == 0x06:  # A-RELEASE-RP: the last thing it sends
                break
            assert raw[0] == 0x04, f"PDU type 0x{raw[0]:02x}"
            for item in pdu.PDataTfPDU.decode(raw).data_value_items:
                assert item.is_command and item.is_last
                rsp = decode_command(item.data_value[1:])
                answered.append((int(rsp.MessageIDBeingRespondedTo), int(rsp.Status)))
        sock.close()
    finally:
        server.stop()
    assert answered == [(1, 0), (2, 0), (3, 0)]
    assert set(received_by_uid(tmp_path / "archive")) == set(uids_sent)
