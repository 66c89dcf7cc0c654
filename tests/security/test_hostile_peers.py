"""Hostile peers against ``dicomdesk serve`` (a real process with a temp archive).

Each case gets the answer the standard prescribes — A-ABORT for bytes the upper layer cannot
accept (PS3.8 9.3.1, 9.2 AA-1/AA-3/AA-8), A-ASSOCIATE-RJ when over the association limit
(Table 9-21), a C-STORE failure status for a data set the archive will not keep (PS3.4 B.2.3),
the standard's C-FIND and Storage Commitment answers — and afterwards the server is still up,
its thread count is back at its baseline (/proc/<pid>/status) and a C-ECHO succeeds.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from dicomdesk.net import pdu, uids
from dicomdesk.operations import Peer, commit, find

from serving import (
    CT_IMAGE_STORAGE,
    RawAssociation,
    ServeProcess,
    archive_state,
    associate_rq,
    connect,
    echo_ok,
    encode_dataset,
    make_dataset,
    p_data,
    read_all,
    read_pdu,
    store_rq,
    write_part10,
)

from dicomdesk.net.applicationentity import MAX_IDLE_ASSOCIATION_THREADS

pytestmark = pytest.mark.interop

STORAGE_CONTEXTS = ((1, uids.VERIFICATION_SOP_CLASS), (3, CT_IMAGE_STORAGE))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module; each test checks it is healthy and back to its baseline."""
    root = tmp_path_factory.mktemp("hostile")
    with ServeProcess(root / "storage") as proc:
        echo_ok(proc.port)  # warm up: lazily created threads and imports happen now
        proc.baseline_threads = proc.wait_threads(3, timeout=5)
        proc.baseline_rss = proc.status_field("VmRSS")
        yield proc


@pytest.fixture
def hostile(server):
    """Run a case, then: the process lives, threads return to the baseline, an echo works."""
    yield server
    assert server.alive(), server.log()[-3000:]
    # Association threads are kept for the next connection (at most MAX_IDLE_ASSOCIATION_THREADS
    # of them, blocked without polling); anything beyond that pool is a leak.
    limit = server.baseline_threads + MAX_IDLE_ASSOCIATION_THREADS
    threads = server.wait_threads(limit)
    assert threads <= limit, f"{threads} threads, baseline {server.baseline_threads} + idle pool"
    echo_ok(server.port)
    assert not archive_state(server.storage)[2], "a temp file was left in .incoming"


def _abort_fields(answer: bytes) -> tuple[int, int]:
    assert answer[:1] == b"\x07", f"expected A-ABORT, got {answer[:10]!r}"
    abort = pdu.AAbortPDU.decode(answer[:10])
    return abort.source, abort.reason_diag


def test_garbage_before_an_association_is_aborted_or_closed(hostile):
    with connect(hostile.port) as sock:
        sock.sendall(bytes(range(256)) * 4)
        answer = read_pdu(sock)  # Sta13 after A-ABORT: the server waits for our close
    assert answer == b"" or _abort_fields(answer)[0] == 2


def test_unknown_pdu_type_after_association_is_aborted_unrecognised_pdu(hostile):
    raw = RawAssociation(hostile.port)
    assert raw.accepted
    raw.sock.sendall(b"\x42\x00" + struct.pack(">L", 4) + b"\0\0\0\0")
    assert _abort_fields(read_pdu(raw.sock)) == (2, 1)
    raw.close()


def test_association_request_truncated_then_closed_costs_nothing(hostile):
    with connect(hostile.port) as sock:
        sock.sendall(associate_rq()[:40])
        sock.shutdown(socket.SHUT_WR)
        read_all(sock)


def test_p_data_truncated_mid_pdu_then_closed_ends_the_association(hostile):
    raw = RawAssociation(hostile.port)
    assert raw.accepted
    whole = p_data(1, b"\x00" * 200, command=True, last=True)
    raw.sock.sendall(whole[:50])
    raw.sock.shutdown(socket.SHUT_WR)
    read_all(raw.sock)
    raw.close()


def test_associate_ac_sent_to_the_acceptor_is_aborted_as_unexpected(hostile):
    ac = pdu.AAssociateAcPDU("DICOMDESK", "HOSTILE", []).encode()
    with connect(hostile.port) as sock:
        sock.sendall(ac)
        answer = read_pdu(sock)
    assert _abort_fields(answer) == (2, 2)


def test_release_rp_without_a_release_rq_is_aborted_as_unexpected(hostile):
    raw = RawAssociation(hostile.port)
    raw.sock.sendall(pdu.AReleaseRpPDU().encode())
    assert _abort_fields(read_pdu(raw.sock)) == (2, 2)
    raw.close()


def test_data_fragment_before_any_command_is_aborted(hostile):
    raw = RawAssociation(hostile.port)
    raw.send_data(1, b"\x08\x00\x18\x00", last=True)
    assert read_pdu(raw.sock)[:1] == b"\x07"
    raw.close()


@pytest.mark.parametrize("pdu_type", [0x01, 0x04])
def test_four_gib_length_field_is_refused_before_reading_the_body(hostile, pdu_type):
    if pdu_type == 0x04:
        raw = RawAssociation(hostile.port)
        sock = raw.sock
    else:
        sock = connect(hostile.port)
    started = time.monotonic()
    sock.sendall(struct.pack(">BBL", pdu_type, 0, 0xFFFFFFFF) + b"\0" * 64)
    answer = read_pdu(sock)
    sock.close()
    assert time.monotonic() - started < 3
    assert _abort_fields(answer)[0] == 2
    assert hostile.status_field("VmRSS") < hostile.baseline_rss + 64 * 1024


def test_two_hundred_connections_at_once_get_an_answer_and_the_server_stays_up(hostile):
    rq = associate_rq()
    socks = []
    try:
        for _ in range(200):
            sock = socket.socket()
            sock.settimeout(20)
            sock.connect(("127.0.0.1", hostile.port))
            socks.append(sock)
            try:
                sock.sendall(rq)
            except OSError:
                pass  # already dropped by the server
        outcomes = {"accepted": 0, "rejected": 0, "closed": 0}
        for sock in socks:
            answer = read_pdu(sock)
            if answer[:1] == b"\x02":
                outcomes["accepted"] += 1
            elif answer[:1] == b"\x03":
                rj = pdu.AAssociateRjPDU.decode(answer[:10])
                assert (rj.result, rj.source, rj.reason_diag) == (2, 3, 2)  # local limit exceeded
                outcomes["rejected"] += 1
            else:
                assert answer == b""
                outcomes["closed"] += 1
        # dicomdesk serve's default limit is 32; an accepted one may have met ARTIM meanwhile
        assert 1 <= outcomes["accepted"] <= 32, outcomes
        assert outcomes["rejected"] >= 1, outcomes
        assert sum(outcomes.values()) == 200
        assert hostile.threads() <= hostile.baseline_threads + 64
    finally:
        for sock in socks:
            sock.close()
    assert hostile.status_field("VmRSS") < hostile.baseline_rss + 64 * 1024


def _store_raw(port: int, instance_uid: str, data: bytes) -> int:
    raw = RawAssociation(port, STORAGE_CONTEXTS)
    assert raw.accepted
    try:
        raw.send_command(3, store_rq(instance_uid))
        raw.send_data(3, data, last=True)
        response = raw.receive_message()
        assert response.CommandField == 0x8001
        assert response.MessageIDBeingRespondedTo == 1
        return int(response.Status)
    finally:
        assert raw.release()[:1] == b"\x06"


def _stored_uids(server: ServeProcess) -> set[str]:
    files, rows, _ = archive_state(server.storage)
    assert files == rows
    return files


def test_c_store_whose_data_set_does_not_parse_is_refused_and_not_kept(hostile):
    before = _stored_uids(hostile)
    status = _store_raw(hostile.port, "1.2.3.999.1", b"\xfe\xff\x00\xe0" + b"\xff" * 300)
    assert status in (0xC000, 0xA900) or 0xC000 <= status <= 0xCFFF, hex(status)
    assert _stored_uids(hostile) == before


def test_data_set_whose_instance_uid_differs_from_the_command_is_refused_a900(hostile):
    before = _stored_uids(hostile)
    status = _store_raw(hostile.port, "1.2.3.999.2", encode_dataset(make_dataset("1.2.3.999.3")))
    assert status == 0xA900
    assert _stored_uids(hostile) == before


@pytest.mark.parametrize("uid", ["../../../../tmp/evil", "1.2/../../3", "1." + "2" * 70],
                         ids=["dot-dot", "slash", "too-long"])
def test_uid_that_is_not_a_path_safe_uid_is_refused_and_nothing_written_outside(hostile, uid):
    before = _stored_uids(hostile)
    status = _store_raw(hostile.port, uid, encode_dataset(make_dataset(uid)))
    assert status in (0xC000, 0xA900), hex(status)
    assert _stored_uids(hostile) == before
    assert not (hostile.storage.parent / "evil.dcm").exists()
    assert not Path("/tmp/evil.dcm").exists()


@pytest.mark.parametrize("study, series", [("../..", "1.2"), ("1.2.3", "a" * 80)],
                         ids=["study-dot-dot", "series-not-a-uid"])
def test_study_or_series_uid_that_is_not_path_safe_is_refused(hostile, study, series):
    before = _stored_uids(hostile)
    status = _store_raw(hostile.port, "1.2.3.999.4",
                        encode_dataset(make_dataset("1.2.3.999.4", study=study, series=series)))
    assert status in (0xC000, 0xA900), hex(status)
    assert _stored_uids(hostile) == before


def test_a_valid_store_after_the_refusals_is_kept(hostile):
    status = _store_raw(hostile.port, "1.2.3.999.5", encode_dataset(make_dataset("1.2.3.999.5")))
    assert status == 0x0000
    assert "1.2.3.999.5" in _stored_uids(hostile)


def test_c_find_with_keys_the_index_does_not_know_is_answered_not_aborted(hostile):
    peer = Peer("127.0.0.1", hostile.port, "DICOMDESK", timeout=10)
    from pydicom.dataset import Dataset

    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.PatientName = "*"
    keys.StudyInstanceUID = ""
    keys.PatientWeight = None
    keys.AdmittingDiagnosesDescription = "x"
    keys.add_new(0x00110010, "LO", "HOSTILE CREATOR")  # private creator and a private key
    keys.add_new(0x00111001, "LO", "")
    result = find(peer, "STUDY", keys)
    assert result.error is None, result.error
    assert result.status is not None and int(result.status) == 0x0000


def test_c_find_with_an_invalid_level_gets_a_failure_status(hostile):
    raw = RawAssociation(hostile.port, ((1, uids.STUDY_ROOT_FIND_SOP_CLASS),))
    from pydicom.dataset import Dataset

    from dicomdesk.net.dimsemessages import CFindRQMessage

    msg = CFindRQMessage()
    msg.message_id = 7
    msg.affected_sop_class_uid = uids.STUDY_ROOT_FIND_SOP_CLASS
    msg.priority = 0
    msg.data_set = b"x"
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "GALAXY"
    raw.send_command(1, msg)
    raw.send_data(1, encode_dataset(identifier), last=True)
    response = raw.receive_message()
    assert response.CommandField == 0x8020
    status = int(response.Status)
    assert status in (0xA900, 0xC000) or 0xC000 <= status <= 0xCFFF, hex(status)
    raw.release()


def test_storage_commitment_of_instances_that_do_not_exist_reports_no_such_object(hostile, tmp_path):
    files = [write_part10(make_dataset(f"1.2.3.999.77.{i}"), tmp_path / f"{i}.dcm") for i in range(2)]
    result = commit(Peer("127.0.0.1", hostile.port, "DICOMDESK", timeout=10), files, timeout=20,
                    listen_port=None)
    assert result.error is None or not result.committed
    assert result.committed == []
    assert sorted(uid for uid, _ in result.failed) == ["1.2.3.999.77.0", "1.2.3.999.77.1"]
    assert {reason for _, reason in result.failed} == {0x0112}  # No such object instance


def test_command_set_that_does_not_decode_is_aborted(hostile):
    raw = RawAssociation(hostile.port)
    raw.sock.sendall(p_data(1, b"\x00\x00\x00\x00\x04\x00\x00\x00\xff\xff", command=True, last=True))
    answer = read_pdu(raw.sock)
    assert answer[:1] == b"\x07"
    raw.close()
