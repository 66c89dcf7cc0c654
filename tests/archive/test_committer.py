"""``Archive.commit_incoming_later``: fsyncs out of line, placement in arrival order, one
journal fsync for every object whose data is durable by then (``archive/committer.py``).

Real archives in tmp folders; the only seam is the archive's own fsync step, which a
subclass holds back with an event so the order of events is decided by the test, not by the
disk. Counted, never timed: which futures are resolved when, and how many journal fsyncs.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dicomdesk.archive import Archive, ArchiveRefusal
from dicomdesk.archive.journal import JOURNAL_DIR, ENTRY_SUFFIX

from test_store import SERIES, part10_bytes

WAIT = 20.0  # generous: the machine is shared


class HeldArchive(Archive):
    """An archive whose fsync of chosen temp files waits for the test's go (or fails)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, durable=True)
        self.hold: dict[int, threading.Event] = {}
        self.fail: set[int] = set()
        self.synced: list[int] = []
        self.synced_cond = threading.Condition()
        self.batches: list[int] = []
        self.order: dict[str, int] = {}  # temp file name -> object number

    def _sync_incoming(self, fp) -> None:
        number = self.order[Path(fp.name).name]
        gate = self.hold.get(number)
        if gate is not None:
            assert gate.wait(WAIT)
        if number in self.fail:
            fp.close()
            raise ArchiveRefusal(0xA700, "cannot write the file: No space left on device")
        super()._sync_incoming(fp)
        with self.synced_cond:
            self.synced.append(number)
            self.synced_cond.notify_all()

    def _place_jobs(self, jobs) -> None:
        self.batches.append(len(jobs))
        super()._place_jobs(jobs)

    def wait_synced(self, numbers: set[int]) -> None:
        with self.synced_cond:
            assert self.synced_cond.wait_for(lambda: numbers <= set(self.synced), WAIT)


def submit(archive: HeldArchive, count: int) -> list:
    futures = []
    for n in range(count):
        incoming = archive.open_incoming()
        archive.order[incoming.path.name] = n
        incoming.fp.write(part10_bytes(f"{SERIES}.{n + 1}"))
        futures.append(archive.commit_incoming_later(incoming))
    return futures


def journal_entries(archive: Archive) -> list[Path]:
    return [p for p in (archive.root / JOURNAL_DIR).iterdir() if p.name.endswith(ENTRY_SUFFIX)]


def test_objects_are_placed_in_arrival_order_under_one_journal_fsync(tmp_path):
    archive = HeldArchive(tmp_path / "archive")
    try:
        archive.hold[0] = threading.Event()
        futures = submit(archive, 4)
        archive.wait_synced({1, 2, 3})  # the later objects' data is on disk first...
        assert not any(f.done() for f in futures)  # ...but nothing is acknowledged before object 0
        assert not journal_entries(archive) and archive.batches == []
        archive.hold[0].set()
        stored = [f.result(WAIT) for f in futures]
        # Object 0's data was the last to be durable: all four go under one journal fsync.
        assert archive.batches == [4]
        assert [s.sop_instance_uid for s in stored] == [f"{SERIES}.{n + 1}" for n in range(4)]
        for s in stored:
            assert s.path.is_file()
        archive.wait_indexed()
        assert archive.count() == 4
    finally:
        archive.close()
    assert not list(archive.incoming_dir.iterdir())


def test_a_failed_fsync_refuses_that_object_only(tmp_path):
    archive = HeldArchive(tmp_path / "archive")
    try:
        archive.fail.add(1)
        futures = submit(archive, 3)
        with pytest.raises(ArchiveRefusal) as refused:
            futures[1].result(WAIT)
        assert refused.value.status == 0xA700
        assert futures[0].result(WAIT).path.is_file()
        assert futures[2].result(WAIT).path.is_file()
        archive.wait_indexed()
        assert archive.count() == 2
    finally:
        archive.close()
    assert not list(archive.incoming_dir.iterdir())  # the refused temp file is gone


def test_close_places_what_is_in_flight_before_the_index_closes(tmp_path):
    archive = HeldArchive(tmp_path / "archive")
    archive.hold[0] = threading.Event()
    futures = submit(archive, 3)
    closer = threading.Thread(target=archive.close)
    closer.start()
    archive.hold[0].set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert all(f.result(0).path.is_file() for f in futures)
    with Archive(tmp_path / "archive") as reopened:
        assert reopened.count() == 3
