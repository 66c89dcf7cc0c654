"""A full disk under the archive (issue 11, item 2): nothing acknowledged is lost or hidden, and
the server always starts.

The storage folder sits on a small tmpfs mounted for the test (root here and in CI; a test
that cannot mount fails, it does not skip). The disk is filled until one page is left: an
object's file still fits, but SQLite cannot grow its write-ahead log, so the index row —
written just after the C-STORE response — fails. The object is in the journal
(``archive/journal.py``); the archive gives its reserve to the index, writes the row, and
from then on refuses new objects with 0xA700 until there is room again. A restart on the
still-full disk starts, answers C-ECHO and C-FIND with every acknowledged object, and
refuses stores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))

from serving import ServeProcess, echo_ok, make_dataset, store_status  # noqa: E402

from dicomdesk.operations import Peer, find  # noqa: E402

pytestmark = pytest.mark.interop

STUDY = "1.2.826.0.1.3680043.8.498.12"
PAGE = 4096


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs at ``tmp_path / "disk"``, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full case (root needed): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave_pages: int = 1) -> Path:
    """Fill the file system, then give ``leave_pages`` pages back; returns the filler."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        block = bytes(1 << 20)
        while True:
            try:
                os.write(fd, block)
            except OSError:
                if len(block) == PAGE:
                    break
                block = bytes(max(PAGE, len(block) // 16))
        size = os.fstat(fd).st_size
        os.ftruncate(fd, size - leave_pages * PAGE)
    finally:
        os.close(fd)
    return filler


def store(port: int, uid: str, pixels: int = 0) -> int:
    return store_status(port, make_dataset(uid, study=STUDY, series=STUDY + ".1", pixels=pixels))


def found(port: int) -> set[str]:
    result = find(Peer("127.0.0.1", port, "DICOMDESK", timeout=10), "IMAGE",
                  {"StudyInstanceUID": STUDY, "SeriesInstanceUID": STUDY + ".1", "SOPInstanceUID": ""})
    assert result.ok, result.error
    return {str(m.SOPInstanceUID) for m in result.matches}


def test_full_disk_never_hides_an_acknowledged_object_and_never_stops_the_server(small_disk, tmp_path):
    storage = small_disk / "storage"
    log = tmp_path / "serve.log"
    acknowledged: set[str] = set()
    with ServeProcess(storage, log=log) as server:
        assert store(server.port, f"{STUDY}.1.1", pixels=2000) == 0x0000
        acknowledged.add(f"{STUDY}.1.1")
        filler = fill(small_disk)
        # The object's file would take the last page, and its index row could not grow the
        # WAL: it is refused up front (the reserve's room is the floor), or acknowledged and
        # then findable — never acknowledged and lost to queries.
        status = store(server.port, f"{STUDY}.1.2")
        assert status in (0x0000, 0xA700), hex(status)
        if status == 0x0000:
            acknowledged.add(f"{STUDY}.1.2")
        assert found(server.port) >= acknowledged, "acknowledged, but C-FIND does not find it"
        assert store(server.port, f"{STUDY}.1.3") == 0xA700  # the disk is full: refused, honestly
        echo_ok(server.port)

    # A restart on the still-full disk (filled again: the clean stop gave the WAL's pages
    # back): it starts, answers, finds everything, refuses stores.
    fill(small_disk, leave_pages=0)
    with ServeProcess(storage, log=log) as server:
        echo_ok(server.port)
        assert found(server.port) >= acknowledged
        assert store(server.port, f"{STUDY}.1.4") == 0xA700
        filler.unlink()  # room again: stores are taken again, without a restart
        assert store(server.port, f"{STUDY}.1.5", pixels=2000) == 0x0000
        assert found(server.port) == acknowledged | {f"{STUDY}.1.5"}
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "disk full" in text


def _archive_helpers():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "archive"))
    import test_store

    return test_store


def test_an_index_row_failing_after_the_response_is_written_with_the_reserve(small_disk):
    """The race the free-space floor cannot close: another process fills the disk between the
    response and the row. The row is written with the reserve's space, then stores are refused."""
    from dicomdesk.archive import Archive

    helpers = _archive_helpers()
    with Archive(small_disk / "archive") as archive:
        helpers.receive(archive, helpers.part10_bytes("1.2.3.1"))
        archive.wait_indexed()
        with archive.index._lock:  # the row is queued, the response is out
            helpers.receive(archive, helpers.part10_bytes("1.2.3.2"))
            fill(small_disk, leave_pages=0)
        archive.wait_indexed()
        assert archive.count() == 2
        assert not list((archive.root / ".journal").glob("*.ack"))
        assert not archive.has_free_space()
        (small_disk / "filler").unlink()
        assert archive.has_free_space()  # room again: the reserve is made anew, stores resume
        helpers.receive(archive, helpers.part10_bytes("1.2.3.3"))
        assert archive.count() == 3


def test_a_start_on_a_full_disk_without_reserve_answers_queries_and_heals_when_there_is_room(small_disk):
    """The reserve was spent (the race above), the process stopped, and the disk filled to the
    last byte: SQLite cannot even create its WAL index. The archive still opens — the index
    read as it is — answers queries and refuses objects; with room again it writes again."""
    from dicomdesk.archive import Archive

    helpers = _archive_helpers()
    root = small_disk / "archive"
    with Archive(root) as archive:
        helpers.receive(archive, helpers.part10_bytes("1.2.3.1"))
        archive.wait_indexed()
        with archive.index._lock:
            helpers.receive(archive, helpers.part10_bytes("1.2.3.2"))
            fill(small_disk, leave_pages=0)
        archive.wait_indexed()
        assert not (root / ".journal" / "reserve").exists()
    fill(small_disk, leave_pages=0)  # what the clean close gave back (the WAL) is taken too
    with Archive(root) as archive:
        assert archive.recover().unindexed == 0
        assert sorted(str(r.SOPInstanceUID) for r in archive.find("IMAGE", _image_query())) == ["1.2.3.1", "1.2.3.2"]
        assert "disk full" in (archive.refusal_reason() or "")  # the server answers 0xA700
        (small_disk / "filler").unlink()
        assert archive.has_free_space()
        helpers.receive(archive, helpers.part10_bytes("1.2.3.3"))
        assert archive.count() == 3


def _image_query():
    from pydicom.dataset import Dataset

    helpers = _archive_helpers()
    q = Dataset()
    q.StudyInstanceUID = helpers.STUDY
    q.SeriesInstanceUID = helpers.SERIES
    q.SOPInstanceUID = ""
    return q


def test_recover_on_a_full_disk_indexes_the_journal_with_the_reserve(small_disk):
    """Killed after the responses, before the rows; restarted with the disk full: recover
    still indexes every journaled object (the reserve makes the room) and completes."""
    from dicomdesk.archive import Archive

    helpers = _archive_helpers()
    _crash_copy, part10_bytes, receive = helpers._crash_copy, helpers.part10_bytes, helpers.receive

    with Archive(small_disk / "live") as live:
        for i in range(3):
            receive(live, part10_bytes(f"1.2.3.{i}"))
        live.wait_indexed()
        with live.index._lock:  # the rows stay queued: what a kill -9 now leaves
            for i in range(3, 8):
                receive(live, part10_bytes(f"1.2.3.{i}"))
            crashed = _crash_copy(live, small_disk / "crashed")
    assert len(list((crashed / ".journal").glob("*.ack"))) == 5
    fill(small_disk, leave_pages=0)
    with Archive(crashed) as after:
        report = after.recover()
        assert report.indexed_files == 5 and report.unindexed == 0
        assert after.count() == 8
        assert not list((crashed / ".journal").glob("*.ack"))
        assert not after.has_free_space()  # and new objects are refused (0xA700)
