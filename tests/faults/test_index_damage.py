"""A damaged index never stops ``dicomdesk serve`` from starting (real process, real files).

The index is a cache of the archive's folder: when SQLite says it is not a database, or
that its pages are malformed, the server keeps it aside, starts with an empty one and fills
it from the files (the reconciliation scan), so every object on disk is findable again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))

from serving import LOCALHOST, ServeProcess, make_dataset, store_status, wait_until  # noqa: E402

from dicomdesk.operations import Peer, find  # noqa: E402

pytestmark = pytest.mark.interop

STUDY = "1.2.826.0.1.3680043.8.498.120"


def _garbage_header(index: Path) -> None:
    data = bytearray(index.read_bytes())
    data[:100] = b"X" * 100
    index.write_bytes(data)


def _damaged_pages(index: Path) -> None:
    data = bytearray(index.read_bytes())
    for page in range(4096, len(data), 4096):
        data[page + 100:page + 400] = b"\xff" * 300
    index.write_bytes(data)


def _study_found(port: int) -> bool:
    result = find(Peer(LOCALHOST, port, "DICOMDESK", timeout=10), "STUDY", {"StudyInstanceUID": STUDY})
    return result.error is None and len(result.matches) == 1


@pytest.mark.parametrize("damage", [_garbage_header, _damaged_pages], ids=["not-a-database", "malformed"])
def test_a_damaged_index_is_set_aside_and_rebuilt_from_the_files(tmp_path, damage):
    storage = tmp_path / "storage"
    with ServeProcess(storage) as server:
        for n in range(3):
            assert store_status(server.port, make_dataset(f"{STUDY}.{n}", study=STUDY)) == 0
    damage(storage / "index.sqlite3")
    with ServeProcess(storage) as server:  # raises if it does not start
        assert wait_until(lambda: _study_found(server.port), timeout=30), server.log()[-2000:]
        assert store_status(server.port, make_dataset(f"{STUDY}.9", study=STUDY)) == 0
        result = find(Peer(LOCALHOST, server.port, "DICOMDESK", timeout=10), "IMAGE",
                      {"StudyInstanceUID": STUDY, "SeriesInstanceUID": "1.2.3.4.5", "SOPInstanceUID": ""})
        assert sorted(str(m.SOPInstanceUID) for m in result.matches) == [
            f"{STUDY}.{n}" for n in (0, 1, 2, 9)]
        assert "damaged" in server.log()
    assert list(storage.glob("index.sqlite3.damaged-*")), "the damaged index was not kept"


def test_an_index_locked_by_another_program_is_not_taken_for_a_full_disk(tmp_path):
    """Another program holding the index's write lock at start (a second server on the same
    folder, an SQLite browser): the server starts, says the index is locked — not that the
    disk is full — keeps its disk reserve, refuses stores (A700) while the lock is held and
    accepts them once it is gone."""
    import sqlite3

    storage = tmp_path / "storage"
    with ServeProcess(storage) as server:
        assert store_status(server.port, make_dataset(f"{STUDY}.0", study=STUDY)) == 0
    holder = sqlite3.connect(storage / "index.sqlite3", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        server = ServeProcess(storage).start(timeout=60)
        try:
            log = server.log()
            assert "locked" in log, log[-2000:]
            assert "disk full" not in log, log[-2000:]
            assert (storage / ".journal" / "reserve").exists(), "the disk reserve was given up"
            holder.rollback()
            holder.close()
            holder = None
            assert store_status(server.port, make_dataset(f"{STUDY}.1", study=STUDY)) == 0
        finally:
            server.stop()
    finally:
        if holder is not None:
            holder.close()
