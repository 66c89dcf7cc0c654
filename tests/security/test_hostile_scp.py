"""``dicomdesk get/find`` against a hostile SCP: the client ends with a clear message, keeps
no file that looks complete unless it arrived whole, and never waits forever.

The SCP is scripted byte by byte (``hostile_scp``); the client runs as a real process
(``python -m dicomdesk get|find``), exactly as a user runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dicomdesk.net import uids

from hostile_scp import HostileSCP, element
from serving import CT_IMAGE_STORAGE, REPO, encode_dataset, make_dataset

pytestmark = pytest.mark.interop

GET_RQ, GET_RSP, STORE_RQ, STORE_RSP = 0x0010, 0x8010, 0x0001, 0x8001
FIND_RSP = 0x8020


def run_client(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, "-m", "dicomdesk", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def store_sub_operation(peer, data: bytes, uid: str, message_id: int = 7) -> None:
    """A C-STORE-RQ sub-operation of a C-GET carrying ``data`` (sent as one last fragment)."""
    pc_id = peer.context_of(CT_IMAGE_STORAGE)
    peer.send_command(pc_id, {0x0002: CT_IMAGE_STORAGE, 0x0100: STORE_RQ, 0x0110: message_id,
                              0x0700: 0, 0x0800: 0x0000, 0x1000: uid})
    peer.send_pdv(pc_id, data, command=False, last=True)


def get_rsp(peer, pc_id: int, rq, status: int, completed: int, failed: int = 0) -> None:
    peer.send_command(pc_id, {0x0002: str(rq.AffectedSOPClassUID), 0x0100: GET_RSP,
                              0x0120: int(rq.MessageID), 0x0800: 0x0101, 0x0900: status,
                              0x1021: completed, 0x1022: failed, 0x1023: 0})


def test_get_of_a_sub_operation_whose_pixel_data_claims_2_gib_keeps_no_file_that_looks_complete(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.77"
    whole = encode_dataset(make_dataset(uid))
    truncated = whole + element(0x7FE0, 0x0010, b"OB", b"\x01" * 100, length=0x7FFFFFFE)
    answers = {}

    def script(peer, request):
        rq, pc_id = peer.read_command()
        store_sub_operation(peer, truncated, uid)
        answers["store"], _ = peer.read_command()
        get_rsp(peer, pc_id, rq, 0x0000, completed=1)
        peer.answer_release()

    out = tmp_path / "out"
    with HostileSCP(script) as scp:
        done = run_client("get", "127.0.0.1", str(scp.port), "--aet", "HOSTILE", "-L", "STUDY",
                          "-k", "StudyInstanceUID=1.2.3", "--out", str(out))
    assert int(answers["store"].Status) != 0x0000, "a truncated object was acknowledged"
    assert int(answers["store"].CommandField) == STORE_RSP
    assert not list(out.glob("*.dcm")), f"a truncated object was kept as complete: {done.stdout}"
    assert not list(out.iterdir()), "a temporary file was left behind"


def test_get_aborted_by_the_scp_mid_object_ends_with_a_message_and_leaves_no_file(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.78"
    data = encode_dataset(make_dataset(uid, pixels=64000))

    def script(peer, request):
        peer.read_command()
        pc_id = peer.context_of(CT_IMAGE_STORAGE)
        peer.send_command(pc_id, {0x0002: CT_IMAGE_STORAGE, 0x0100: STORE_RQ, 0x0110: 7,
                                  0x0700: 0, 0x0800: 0x0000, 0x1000: uid})
        peer.send_pdv(pc_id, data[:len(data) // 2], command=False, last=False)
        peer.abort()

    out = tmp_path / "out"
    with HostileSCP(script) as scp:
        done = run_client("get", "127.0.0.1", str(scp.port), "-L", "STUDY",
                          "-k", "StudyInstanceUID=1.2.3", "--out", str(out), "--timeout", "10")
    assert done.returncode == 1
    assert "abort" in done.stderr.lower(), done.stderr
    assert "Traceback" not in done.stderr
    assert not list(out.iterdir()), "a partial file was left behind"


def test_find_answered_only_with_responses_to_another_message_id_ends_within_its_timeout(tmp_path):
    """An SCP that answers every C-FIND with responses naming another Message ID: the client
    does not take them for its own, and does not wait for ever while they keep coming."""
    import time

    def script(peer, request):
        rq, pc_id = peer.read_command()
        peer.sock.settimeout(60)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            peer.send_command(pc_id, {0x0002: str(rq.AffectedSOPClassUID), 0x0100: FIND_RSP,
                                      0x0120: (int(rq.MessageID) + 1) % 65536, 0x0800: 0x0101,
                                      0x0900: 0xFF00})
            time.sleep(0.2)

    with HostileSCP(script) as scp:
        started = time.monotonic()
        done = run_client("find", "127.0.0.1", str(scp.port), "-L", "STUDY",
                          "-k", "StudyInstanceUID=", "--timeout", "3")
        elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "unexpected" in done.stderr and "aborted" in done.stderr, done.stderr
    assert elapsed < 25, f"the client waited {elapsed:.0f} s on responses that were not its own"


def test_get_of_an_instance_whose_uid_cannot_be_a_file_name_is_refused_and_leaves_nothing(tmp_path):
    """A 300-character SOP Instance UID makes a file name the file system refuses: the
    sub-operation fails (not the association), and no temp file is left behind."""
    uid = "1.2." + "3" * 296
    data = encode_dataset(make_dataset(uid))
    answers = {}

    def script(peer, request):
        rq, pc_id = peer.read_command()
        store_sub_operation(peer, data, uid)
        answers["store"], _ = peer.read_command()
        get_rsp(peer, pc_id, rq, 0xA702, completed=0, failed=1)
        peer.answer_release()

    out = tmp_path / "out"
    with HostileSCP(script) as scp:
        done = run_client("get", "127.0.0.1", str(scp.port), "-L", "STUDY",
                          "-k", "StudyInstanceUID=1.2.3", "--out", str(out))
    assert int(answers["store"].Status) != 0x0000
    assert "Traceback" not in done.stderr
    assert not list(out.iterdir()), "a temporary file was left behind"


def _client_peak_rss_mb(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    """Run the client in a child of a fresh interpreter; the child's peak RSS in MB."""
    code = ("import resource, subprocess, sys\n"
            "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.stderr.write(done.stderr)\n"
            "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "dicomdesk", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    returncode, peak_kb = done.stdout.split()
    return int(peak_kb) / 1024, subprocess.CompletedProcess(args, int(returncode), "", done.stderr)


def _many_matches(count: int):
    """A C-FIND SCP answering ``count`` pending matches, each carrying 2 KB the query did not
    ask for, then success."""
    from pydicom.dataset import Dataset

    from dicomdesk.net.pdu import PDataTfPDU, PresentationDataValueItem

    def script(peer, request):
        rq, pc_id = peer.read_command()
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID = "1.2.3.4"
        match.StudyDescription = "D" * 64
        match.add_new(0x00091010, "OB", b"\x01" * 2048)
        identifier = encode_dataset(match)
        from dicomdesk.net.commandset import encode_fields

        command = encode_fields({0x0002: str(rq.AffectedSOPClassUID), 0x0100: FIND_RSP,
                                 0x0120: int(rq.MessageID), 0x0800: 0x0000, 0x0900: 0xFF00})
        one = PDataTfPDU([PresentationDataValueItem(pc_id, b"\x03" + command),
                          PresentationDataValueItem(pc_id, b"\x02" + identifier)]).encode()
        for _ in range(count // 100):
            peer.sock.sendall(one * 100)
        peer.send_command(pc_id, {0x0002: str(rq.AffectedSOPClassUID), 0x0100: FIND_RSP,
                                  0x0120: int(rq.MessageID), 0x0800: 0x0101, 0x0900: 0x0000})
        peer.answer_release()

    return script


@pytest.mark.parametrize("output", [(), ("--json",)], ids=["table", "json"])
def test_find_memory_does_not_grow_with_what_the_scp_adds_to_each_match(output):
    """The client keeps what it prints (the requested columns), not every decoded match:
    40,000 matches that each carry 2 KB nobody asked for cost no more than 200 do."""
    peaks = {}
    for count in (200, 40_000):
        with HostileSCP(_many_matches(count)) as scp:
            peaks[count], done = _client_peak_rss_mb(
                "find", "127.0.0.1", str(scp.port), "-L", "STUDY", "-k", "StudyInstanceUID=",
                "--timeout", "60", *output)
        assert done.returncode == 0, done.stderr
    assert peaks[40_000] - peaks[200] < 30, f"peak RSS {peaks}"
