"""Placing a checked received object: journal, rename into place, queued index row (PS3.4 B.2.2).

The order is the archive's durability promise (``store.py``): the object's journal entry (a
fsynced hard link) exists before the rename into ``<Study>/<Series>/<SOP>.dcm``; its C-STORE
response may go once the journal is fsynced; its index row is written behind the response by
the index's helper thread, and only then is the journal entry removed (after the folder's
fsync, ``settle``) and a copy the object replaced at another path deleted (``_indexed``). A row
that cannot be written (disk full) keeps its entry: it is indexed once there is room
(``index_unindexed``) or at the next start (``recovery.py``).
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..durable import fsync_directory
from ..net.statuses import C_STORE_OUT_OF_RESOURCES
from .committer import CommitJob
from .errors import ArchiveRefusal
from .headers import Header, uid_of
from .index import InstanceRecord
from .private import PRIVATE_DIR_MODE

if TYPE_CHECKING:
    from .store import Archive

logger = logging.getLogger(__name__)

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
#: Fault injection for tests/faults (a real kill -9 at one exact step): the name of the step.
#: Unset in normal use; read once at import.
_KILL_AT = os.environ.get("DICOMDESK_FAULT_KILL_AT", "")


def _fault_point(step: str) -> None:
    """``kill -9`` of this process at ``step`` when ``DICOMDESK_FAULT_KILL_AT`` names it
    (tests/faults: a crash at an exact point, not at a random time)."""
    if _KILL_AT == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class StoredInstance:
    """What was stored (fields match ``archive.scp.StoredObject`` plus a few more)."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    patient_name: str
    transfer_syntax: str
    size: int
    calling_aet: str = ""
    replaced: bool = False
    modality: str = ""


class Placement:
    """How one archive places checked objects and settles them once their rows are written.

    Works on its archive's folder, index, journal and lock (``archive``); holds what is in
    flight between the rename and the row: the paths pending, the settled journal entries,
    the replaced copies removed, the rows that failed."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        #: Relative paths renamed into place whose queued index row is not written yet (count).
        self._pending_paths: dict[str, int] = {}
        self._pending_lock = threading.Lock()
        self._last_folder: str | None = None  # where the previous object went (it exists)
        #: Journal entries whose row is committed: the index thread fsyncs their folders and
        #: removes them after each batch. (entry, relative folder)
        self._settled_entries: list[tuple[str, str]] = []
        #: Replaced copies removed (or taken over by a newer object) since the last batch: the
        #: index thread forgets them in ``replaced_copy`` after the batch (``settle_journal``).
        self._replaced_done: list[str] = []
        #: Journal entries whose row could not be written: (entry, record); indexed again
        #: when the disk has room (``index_unindexed``) or at the next start (``recover``).
        self._unindexed: list[tuple[str, InstanceRecord]] = []
        self._unindexed_lock = threading.Lock()

    def keep_unindexed(self, failed: list[tuple[str, InstanceRecord]]) -> None:
        """Rows that could not be written (``recovery.replay``): indexed when there is room."""
        with self._unindexed_lock:
            self._unindexed.extend(failed)

    def unindexed_count(self) -> int:
        with self._unindexed_lock:
            return len(self._unindexed)

    def index_unindexed(self) -> bool:
        """Write the rows that failed (from any thread); True when none is left."""
        with self._unindexed_lock:
            failed, self._unindexed = self._unindexed, []
        if not failed:
            return True
        try:
            olds = self.archive.index.upsert_many([record for _, record in failed])
        except sqlite3.Error as exc:
            logger.error("still cannot index %d acknowledged objects: %s", len(failed), exc)
            with self._unindexed_lock:
                self._unindexed[:0] = failed
            return False
        for (entry, record), old in zip(failed, olds):
            with self._pending_lock:  # as in ``_indexed``: checked and removed under one lock
                if old is not None and old != record.path and old not in self._pending_paths:
                    self.archive._remove_file(self.archive.root / old)
        self.settle([(entry, os.path.dirname(record.path)) for entry, record in failed])
        logger.warning("indexed %d acknowledged objects the index could not take before", len(failed))
        return True

    def makedirs(self, directory: Path) -> None:
        """Create the study/series folders; fsync each parent whose entries changed (durable)."""
        missing = []
        d = directory
        while not d.exists():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            d.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            if self.archive.durable:
                fsync_directory(d.parent)

    def place(self, source: Path, ds: Header, calling_aet: str,
              values: dict[str, object], size: int | None = None) -> StoredInstance:
        """Rename the complete file into place, then queue its index row (write-behind).

        The row is written by the index's helper thread just after the C-STORE response, not
        before it: readers of the index wait for queued rows, so nobody sees the difference,
        and a crash before the row is written leaves a placed file that ``recover`` indexes.
        Paths are plain strings here (this runs once per received object).
        """
        job = CommitJob(None, (source, ds, calling_aet, values, size))
        self.place_jobs([job])
        return job.result.result()

    def place_jobs(self, jobs: list[CommitJob]) -> None:
        """``place`` for several fsynced objects in their order, under one journal fsync:
        each job's result is its ``StoredInstance`` or the refusal, resolved only once its
        journal entry is durable."""
        journal = self.archive._journal
        assert journal is not None
        placed = []
        with self.archive._lock:  # renames, journal entries and queued rows stay in the same order
            for job in jobs:
                source, ds, calling_aet, values, size = job.place_args
                rel = (f"{uid_of(values, 'StudyInstanceUID')}/{uid_of(values, 'SeriesInstanceUID')}/"
                       f"{uid_of(values, 'SOPInstanceUID')}.dcm")
                final = os.path.join(self.archive._root_text, rel)
                source = os.fspath(source)
                try:
                    if size is None:
                        size = os.stat(source).st_size
                    try:
                        entry = journal.add(source)  # before the rename: no placed file without it
                    except OSError as exc:
                        raise ArchiveRefusal(C_STORE_OUT_OF_RESOURCES,
                                             f"cannot journal the file: {exc.strerror}") from exc
                    # Pending before the rename: the index thread removes the copy a
                    # replacement left at its old path unless that path is pending. Counted
                    # only after the rename (and the journal's fsync), a copy renamed to the old
                    # path of an object being indexed could be taken for that stale copy and
                    # deleted — after being acknowledged.
                    with self._pending_lock:
                        self._pending_paths[rel] = self._pending_paths.get(rel, 0) + 1
                    try:
                        replaced = self._rename_into_place(source, final)
                    except BaseException:
                        journal.remove([entry])
                        with self._pending_lock:
                            self._unpend(rel)
                        raise
                except BaseException as exc:
                    job.result.set_exception(exc)
                    continue
                placed.append((job, rel, final, entry, replaced, ds, size, calling_aet, values))
            if not placed:
                return
            try:
                journal.sync()  # from here these objects survive a crash: the responses may go
            except BaseException:
                with self._pending_lock:
                    for item in placed:
                        self._unpend(item[1])
                raise
            results = []
            for job, rel, final, entry, replaced, ds, size, calling_aet, values in placed:
                record = self.record(rel, ds, size, calling_aet, values)
                self.archive.index.upsert_later(
                    record,
                    lambda old, rel=rel, entry=entry, record=record: self._indexed(rel, old, entry, record))
                if replaced:
                    logger.info("replaced %s", uid_of(values, "SOPInstanceUID"))
                results.append((job, self.stored(Path(final), record, replaced)))
        for job, stored in results:
            job.result.set_result(stored)

    def _rename_into_place(self, source: str, final: str) -> bool:
        """``os.replace`` into the study/series folder; True if a file was there (replaced).

        The folder is not fsynced here: the journal entry (fsynced) keeps the object until
        its row is written, and the folder is fsynced before that entry goes (once per batch).

        The folder of the previous object is remembered (a series arrives as a burst); a
        folder that vanished since — emptied by the removal of a replaced copy (``_indexed``,
        on the index's thread, without this lock) or a deleted study — is made again.
        """
        folder = os.path.dirname(final)
        for attempt in range(3):
            try:
                if folder != self._last_folder:
                    self.makedirs(Path(folder))
                    self._last_folder = folder
                replaced = os.path.exists(final)
                os.replace(source, final)
                return replaced
            except FileNotFoundError as exc:
                self._last_folder = None
                if attempt == 2 or not os.path.exists(source):
                    raise ArchiveRefusal(C_STORE_OUT_OF_RESOURCES,
                                         f"cannot store the file: {exc.strerror}") from exc
            except OSError as exc:
                self._last_folder = None
                raise ArchiveRefusal(C_STORE_OUT_OF_RESOURCES,
                                     f"cannot store the file: {exc.strerror}") from exc
        raise AssertionError("unreachable")

    def _unpend(self, rel: str) -> None:
        """One object placed at ``rel`` is no longer pending (caller holds ``_pending_lock``)."""
        left = self._pending_paths.get(rel, 0) - 1
        if left > 0:
            self._pending_paths[rel] = left
        else:
            self._pending_paths.pop(rel, None)

    def _indexed(self, rel: str, old: str | None | Exception, entry: str | None = None,
                 record: InstanceRecord | None = None) -> None:
        """The queued row of ``rel`` is written (index thread): remove the copy it replaced,
        and let its journal entry go after this batch (``settle_journal``) — or, if the row
        failed, keep the entry and refuse new objects until it is written (``admission.py``).

        A replaced copy at another path (same SOP Instance UID, another study or series) is
        removed unless a later object, still queued, was renamed to that very path: then that
        later row names the file, and removing it would lose an acknowledged object.
        """
        with self._pending_lock:
            self._unpend(rel)
            keep_old = isinstance(old, str) and old in self._pending_paths
            if isinstance(old, str) and old != rel:
                if not keep_old:
                    # under the lock: a copy now being placed at ``old`` counts itself pending
                    # first (``place``), so it is either seen above or placed after this removal
                    logger.info("replaced %s (was %s)", rel, old)
                    _fault_point("before-replaced-removal")
                    self.archive._remove_file(self.archive.root / old)
                self._replaced_done.append(old)
        if isinstance(old, Exception):  # the journal keeps it; indexed when there is room
            logger.error("cannot index %s: %s", rel, old)
            if entry is not None and record is not None:
                with self._unindexed_lock:
                    self._unindexed.append((entry, record))
            return
        if entry is not None:
            self._settled_entries.append((entry, os.path.dirname(rel)))

    def settle_journal(self) -> None:
        """After a batch of rows (index thread): rows that failed are tried once more with the
        reserve's space (then new objects are refused: the disk is full); the entries of
        committed rows go, after their folders are fsynced."""
        with self._unindexed_lock:
            failed = bool(self._unindexed)
        if failed:
            released = self.archive._reserve.release()
            self.archive.admission.refuse("disk full: the index cannot grow" if released
                         else "the index cannot be written")
            self.index_unindexed()
        settled, self._settled_entries = self._settled_entries, []
        self.settle(settled)
        done, self._replaced_done = self._replaced_done, []
        if done:
            self.archive.index.forget_replaced(done)

    def settle(self, settled: list[tuple[str, str]]) -> None:
        """Entries whose rows are committed: fsync their folders (the renames), then remove them."""
        if not settled or self.archive._journal is None:
            return
        if self.archive.durable:
            for folder in dict.fromkeys(folder for _, folder in settled):
                fsync_directory(self.archive.root / folder)
        self.archive._journal.remove(entry for entry, _ in settled)

    def record(self, rel: str, ds: Header, size: int, calling_aet: str,
               values: dict[str, object]) -> InstanceRecord:
        meta = getattr(ds, "file_meta", None)
        ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        return InstanceRecord(
            values, transfer_syntax=ts or IMPLICIT_VR_LITTLE_ENDIAN, file_size=size, path=rel,
            received_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            calling_aet=calling_aet.strip())

    @staticmethod
    def stored(path: Path, record: InstanceRecord, replaced: bool) -> StoredInstance:
        values = record.values
        return StoredInstance(
            path=path, sop_class_uid=uid_of(values, "SOPClassUID"),
            sop_instance_uid=uid_of(values, "SOPInstanceUID"),
            study_uid=uid_of(values, "StudyInstanceUID"), series_uid=uid_of(values, "SeriesInstanceUID"),
            patient_id=str(values.get("PatientID") or ""), patient_name=str(values.get("PatientName") or ""),
            transfer_syntax=record.transfer_syntax, size=record.file_size, calling_aet=record.calling_aet,
            replaced=replaced, modality=str(values.get("Modality") or "").strip())

