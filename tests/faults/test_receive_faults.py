"""Faults while ``dicomdesk serve`` receives: nothing half-stored, ever.

The archive writes each object into ``.incoming/`` and renames it into place only when complete,
then indexes it, then answers C-STORE (archive/store.py). A peer that aborts or vanishes in the
middle of an object, a disk without room and an object over the size limit must each leave no
file, no index row and no temp file; the answer, when one is possible, is A700 Out of Resources
(PS3.4 B.2.3). Afterwards the server answers a C-ECHO.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))

from serving import (  # noqa: E402
    CT_IMAGE_STORAGE,
    RawAssociation,
    ServeProcess,
    archive_state,
    echo_ok,
    encode_dataset,
    make_dataset,
    store_rq,
    store_status,
    wait_until,
)

from dicomdesk.net import uids  # noqa: E402

pytestmark = pytest.mark.interop

CONTEXTS = ((1, uids.VERIFICATION_SOP_CLASS), (3, CT_IMAGE_STORAGE))
BIG = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    with ServeProcess(root / "storage", "--network-timeout", "1.5") as proc:
        echo_ok(proc.port)
        yield proc


def _start_big_store(port: int, uid: str) -> tuple[RawAssociation, bytes]:
    raw = RawAssociation(port, CONTEXTS)
    assert raw.accepted
    data = encode_dataset(make_dataset(uid, pixels=BIG))
    raw.send_command(3, store_rq(uid))
    half = len(data) // 2
    for start in range(0, half, 16000):
        raw.send_data(3, data[start:min(start + 16000, half)], last=False)
    return raw, data


def _nothing_left_of(server: ServeProcess, uid: str) -> bool:
    files, rows, temp = archive_state(server.storage)
    return uid not in files and uid not in rows and not temp


def _temp_file_appears(server: ServeProcess) -> bool:
    return bool(archive_state(server.storage)[2])


def test_peer_aborting_halfway_through_an_object_leaves_no_file_row_or_temp(server):
    raw, _ = _start_big_store(server.port, "1.2.826.0.1.9.1")
    assert wait_until(lambda: _temp_file_appears(server), 30), "the object was not being received"
    raw.abort()
    assert wait_until(lambda: _nothing_left_of(server, "1.2.826.0.1.9.1"))
    echo_ok(server.port)


def test_peer_vanishing_without_fin_mid_object_leaves_nothing(server):
    raw, _ = _start_big_store(server.port, "1.2.826.0.1.9.2")
    assert wait_until(lambda: _temp_file_appears(server), 30)
    raw.vanish()  # SO_LINGER 0: RST, no release, no abort
    assert wait_until(lambda: _nothing_left_of(server, "1.2.826.0.1.9.2"))
    echo_ok(server.port)


def test_peer_that_stops_sending_mid_object_is_dropped_by_the_idle_timeout(server):
    raw, _ = _start_big_store(server.port, "1.2.826.0.1.9.3")
    assert wait_until(lambda: _temp_file_appears(server), 30)
    # Neither closes nor sends: the network (idle) timeout of 1.5 s must end it.
    assert wait_until(lambda: _nothing_left_of(server, "1.2.826.0.1.9.3"), timeout=30)
    answer = raw.sock.recv(16)  # the server's A-ABORT, or the close
    assert answer[:1] in (b"", b"\x07")
    raw.close()
    echo_ok(server.port)


def test_the_same_object_sent_whole_after_an_abort_is_stored_intact(server):
    raw, data = _start_big_store(server.port, "1.2.826.0.1.9.4")
    raw.abort()
    assert wait_until(lambda: _nothing_left_of(server, "1.2.826.0.1.9.4"))
    again = RawAssociation(server.port, CONTEXTS)
    again.send_command(3, store_rq("1.2.826.0.1.9.4"))
    for start in range(0, len(data), 16000):
        again.send_data(3, data[start:start + 16000], last=start + 16000 >= len(data))
    assert int(again.receive_message().Status) == 0x0000
    again.release()
    from serving import data_set_bytes

    stored = next(server.storage.rglob("1.2.826.0.1.9.4.dcm"))
    assert data_set_bytes(stored) == data


def _store(port: int, uid: str, pixels: int) -> int:
    return store_status(port, make_dataset(uid, pixels=pixels))


def test_disk_below_the_free_space_floor_answers_a700_and_keeps_nothing(tmp_path):
    # --min-free above any real disk's free space stands in for a full disk.
    with ServeProcess(tmp_path / "storage", "--min-free", "1P") as proc:
        assert _store(proc.port, "1.2.826.0.1.9.5", pixels=300_000) == 0xA700
        assert _nothing_left_of(proc, "1.2.826.0.1.9.5")
        echo_ok(proc.port)
    assert "free space" in proc.log()


def test_object_over_the_size_limit_answers_a700_without_filling_the_disk(tmp_path):
    with ServeProcess(tmp_path / "storage", "--max-object-size", "1M") as proc:
        assert _store(proc.port, "1.2.826.0.1.9.6", pixels=BIG) == 0xA700
        assert _nothing_left_of(proc, "1.2.826.0.1.9.6")
        assert _store(proc.port, "1.2.826.0.1.9.7", pixels=1000) == 0x0000
        assert "1.2.826.0.1.9.7" in archive_state(proc.storage)[1]
    assert "larger than" in proc.log()
