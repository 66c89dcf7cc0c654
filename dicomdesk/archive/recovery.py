"""Crash recovery and reconciliation of the archive's folder with its index (``store.Archive``).

``recover`` runs at every start, before serving, and costs what a crash can leave unfinished:
temp files of objects still arriving (never acknowledged: deleted), the journal's objects
(acknowledged, row perhaps not written: put back in place and indexed), and copies a
replacement left behind. ``reconcile`` walks the whole folder once, for an archive written
before the journal existed; ``rebuild_index`` re-reads every header on request. These work on
the archive's own state (its index, journal, reserve and lock), as its methods did.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..durable import fsync_directory
from .errors import ArchiveRefusal
from .headers import Header, header_values, read_header, uid_of, uid_text
from .incoming import INCOMING_DIR
from .index import InstanceRecord
from .journal import JOURNAL_DIR
from .store import INDEX_NAME, RECONCILED_FLAG

if TYPE_CHECKING:
    from .store import Archive

logger = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    """What ``Archive.recover`` reconciled."""

    removed_temp_files: int = 0
    dropped_rows: int = 0          # rows whose file was gone
    reindexed_rows: int = 0        # rows whose file changed size (replaced, then killed)
    indexed_files: int = 0         # files renamed into place but never indexed
    removed_stale_files: int = 0   # older copies of an instance indexed at another path
    unreadable_files: list[Path] = field(default_factory=list)
    journal_entries: int = 0       # acknowledged objects the journal named (``recover``)
    unindexed: int = 0             # of those, not indexed yet (index unwritable): kept for later
    files_examined: int = 0        # files whose header was read


def _newer(path: Path, than: Path) -> bool:
    """Whether ``path`` was written after ``than`` (received files keep the mtime of their
    last data write: renaming into place does not change it)."""
    try:
        return path.stat().st_mtime_ns > than.stat().st_mtime_ns
    except OSError:
        return False


def _archive_files(archive: Archive, folder: Path, *, any_name: bool = False) -> Iterator[Path]:
    """Archive files under ``folder`` (``*.dcm``; with ``any_name`` every file except the
    index's own and the temp folder, for indexing a folder of files named by someone else)."""
    for dirpath, names in _archive_folders(archive, folder, any_name=any_name):
        for name in names:
            yield Path(dirpath) / name


def _archive_folders(archive: Archive, folder: Path, *,
                     any_name: bool = False) -> Iterator[tuple[str, list[str]]]:
    """``(folder path, names of its archive files)`` under ``folder``, as plain strings
    (a walk of a million files builds no Path per file; see ``_archive_files``)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        if Path(dirpath) == archive.root:
            dirnames[:] = [d for d in dirnames if d not in (INCOMING_DIR, JOURNAL_DIR)]
        names = [name for name in filenames
                 if name.endswith(".dcm") or (any_name and not name.startswith(INDEX_NAME))]
        if names:
            yield dirpath, names


def recover(archive: Archive) -> RecoveryReport:
    """At start, before serving: finish what a crash (or kill -9, or power loss) cut short.

    Bounded by what can be unfinished, not by the archive's size: temp files of objects
    still arriving are deleted (never acknowledged), and the objects the journal names
    (acknowledged, row perhaps not written) are put back in place if a rename was lost
    and indexed. On a disk too full for the index the reserve is used; if even that
    fails, the entries stay for the next chance and new objects are refused (0xA700):
    the server still starts and answers. An archive written before the journal existed
    needs one full ``reconcile`` (``needs_full_scan``).
    """
    archive._check_writable()
    began = time.monotonic()
    report = RecoveryReport()
    report.removed_temp_files = archive.incoming.remove_leftovers()
    assert archive._journal is not None
    entries = archive._journal.entries()
    report.journal_entries = len(entries)
    if entries and not archive._reopen_writable():  # a full disk: they wait for room
        report.unindexed = len(entries)
        logger.error("%d acknowledged objects wait in the journal until the disk has room",
                     len(entries))
    elif entries:
        replay(archive, entries, report)
    if not report.unindexed:
        _remove_replaced_copies(archive, report)
    if any(v for k, v in vars(report).items() if k != "files_examined"):
        logger.warning("recovery: %s", report)
    logger.info("recovery: %d journaled objects, %d temp files, %d headers read in %.0f ms",
                report.journal_entries, report.removed_temp_files, report.files_examined,
                (time.monotonic() - began) * 1000)
    return report


def replay(archive: Archive, entries: list[Path], report: RecoveryReport) -> None:
    """Index the journal's objects; the last entry of a SOP Instance UID wins, as it did
    when its row was queued (an earlier copy at another path is removed)."""
    latest: dict[str, tuple[Path, str, Header, dict[str, object]]] = {}
    superseded: set[str] = set()
    for entry in entries:
        report.files_examined += 1
        try:
            ds = read_header(entry, archive.max_inflated_size)
        except ArchiveRefusal:  # checked before it was acknowledged: damaged since
            report.unreadable_files.append(entry)
            continue
        values = header_values(ds)
        uid = uid_of(values, "SOPInstanceUID")
        rel = (f"{uid_of(values, 'StudyInstanceUID')}/{uid_of(values, 'SeriesInstanceUID')}/"
               f"{uid}.dcm")
        if uid in latest and latest[uid][1] != rel:
            superseded.add(latest[uid][1])
        latest[uid] = (entry, rel, ds, values)
    for rel in superseded - {item[1] for item in latest.values()}:
        archive._remove_file(archive.root / rel)
        report.removed_stale_files += 1
    settled: list[tuple[str, str]] = []
    failed: list[tuple[str, InstanceRecord]] = []
    for entry, rel, ds, values in latest.values():
        final = archive.root / rel
        _restore(archive, entry, final)
        record = archive.placement.record(rel, ds, final.stat().st_size, "", values)
        if failed:
            failed.append((str(entry), record))
            continue
        try:
            archive._index_file(final, ds, record.file_size, "", values=values)
        except ArchiveRefusal:
            if archive._reserve.release():
                archive.admission.refuse("disk full: the index cannot grow")
                try:
                    archive._index_file(final, ds, record.file_size, "", values=values)
                except ArchiveRefusal:
                    failed.append((str(entry), record))
                    continue
            else:
                failed.append((str(entry), record))
                continue
        report.indexed_files += 1
        settled.append((str(entry), os.path.dirname(rel)))
    done = {entry for entry, _ in settled} | {entry for entry, _ in failed}
    settled.extend((str(e), "") for e in entries if str(e) not in done
                   and e not in report.unreadable_files)  # superseded by a later entry
    archive.placement.settle(settled)
    if failed:
        report.unindexed = len(failed)
        archive.placement.keep_unindexed(failed)
        archive.admission.refuse(f"{len(failed)} acknowledged objects wait for room in the index")


def _remove_replaced_copies(archive: Archive, report: RecoveryReport) -> None:
    """Remove the copies the index recorded as replaced (``Index._upsert_one``) whose
    removal a crash cut short: the row had moved to the newer object's path in the same
    transaction that named the old path, so the old file is an older version of an object
    indexed elsewhere. Runs after the journal's replay, when every acknowledged object has
    its row: a path that is some row's path now holds a newer object (sent again to its
    old study) and stays. Bounded by the moves in flight at the crash, not the archive."""
    if archive.index.read_only:
        return  # a full disk left the index read-only: the next start does it
    paths = archive.index.replaced_copies()
    for rel in paths:
        row = archive.index.instance(Path(rel).stem)
        if row is not None and row["path"] == rel:
            continue
        full = archive.root / rel
        if full.exists():
            archive._remove_file(full)
            report.removed_stale_files += 1
            logger.warning("removed %s: a copy replaced before the crash", rel)
    archive.index.forget_replaced(paths)


def _restore(archive: Archive, entry: Path, final: Path) -> None:
    """Put the journal's copy at ``final`` unless it is there (a power loss can forget the
    rename into the study folder, not the fsynced journal entry)."""
    try:
        if final.exists() and os.path.samefile(entry, final):
            return
    except OSError:
        pass
    archive.placement.makedirs(final.parent)
    temp = archive.incoming_dir / f"restore-{entry.name}"
    try:
        temp.unlink()
    except FileNotFoundError:
        pass
    os.link(entry, temp)
    os.replace(temp, final)
    if archive.durable:
        fsync_directory(final.parent)
    logger.warning("restored %s from the journal", final)


def _reconcile_row(archive: Archive, uid: str, rel: str, size: int, report: RecoveryReport) -> None:
    """One index row against its file: dropped when the file is gone, indexed again when
    the file changed size (decided under the lock, against the row as it is then)."""
    full_text = os.path.join(archive._root_text, rel)  # no Path per row (pathlib interns parts)
    try:
        actual = os.stat(full_text).st_size
    except FileNotFoundError:
        full = Path(full_text)
        with archive._lock:
            row = archive.index.instance(uid)
            if row is not None and row["path"] == rel and not full.exists():
                archive.index.remove_instance(uid)
                report.dropped_rows += 1
        return
    if actual != size:
        full = Path(full_text)
        with archive._lock:
            row = archive.index.instance(uid)
            if row is None or row["path"] != rel:
                return
            try:
                ds = read_header(full, archive.max_inflated_size)
                report.files_examined += 1
                archive._index_file(full, ds, full.stat().st_size, "")
                report.reindexed_rows += 1
            except (ArchiveRefusal, OSError):
                report.unreadable_files.append(full)


def _reconcile_file(archive: Archive, full: Path, rel: str, report: RecoveryReport) -> bool:
    """A file without a row at its path (under the lock, against the index as it is
    then): indexed, or removed when it is an older copy of one indexed elsewhere. False
    when the index cannot grow (reconciliation stops)."""
    with archive._lock:
        if not full.exists():
            return True  # removed meanwhile (a study deleted, a copy replaced)
        row = archive.index.instance(full.stem)  # waits for queued rows: placed meanwhile?
        if row is not None and row["path"] == rel:
            return True
        try:
            ds = read_header(full, archive.max_inflated_size)
        except ArchiveRefusal:
            report.unreadable_files.append(full)
            return True
        report.files_examined += 1
        uid = uid_text(ds, "SOPInstanceUID")
        other = archive.index.instance(uid)
        if other is not None and (archive.root / other["path"]).exists() \
                and not _newer(full, archive.root / other["path"]):
            # an older copy whose removal a crash cut short; a newer one is a
            # replacement placed (perhaps acknowledged) whose row the crash lost
            archive._remove_file(full)
            report.removed_stale_files += 1
            return True
        try:
            archive._index_file(full, ds, full.stat().st_size, "")
        except ArchiveRefusal as exc:
            logger.error("reconcile stopped: %s", exc.reason)
            return False
        report.indexed_files += 1
    return True


def reconcile(archive: Archive, cancel: threading.Event | None = None) -> RecoveryReport:
    """Reconcile the whole folder with the index: rows whose file is gone or changed,
    files without a row, stale copies. Reads every row and walks every folder, so it runs
    once for an archive that needs it (``needs_full_scan``), beside a serving server:
    each decision is made under the archive's lock against the index as it is then, and
    files placed since the scan began are left to the journal. ``cancel`` stops it
    (the next start scans again)."""
    archive._check_writable()
    report = RecoveryReport()
    # the rows a page at a time, the files a folder at a time: memory stays bounded by a
    # page and the largest folder, not by the archive (the in-window server runs this in
    # the window's process; a million rows held at once took ~500 MB there)
    after = 0
    while True:
        page = archive.index.files_after(after)
        if not page:
            break
        after = page[-1][0]
        for _rowid, uid, rel, size in page:
            if cancel is not None and cancel.is_set():
                return report
            _reconcile_row(archive, uid, rel, size, report)
    for dirpath, names in _archive_folders(archive, archive.root):
        folder = Path(dirpath).relative_to(archive.root).as_posix()
        folder = "" if folder == "." else folder
        indexed = archive.index.paths_under(folder)
        for name in names:
            if cancel is not None and cancel.is_set():
                return report
            rel = f"{folder}/{name}" if folder else name
            if rel not in indexed and not _reconcile_file(archive, Path(dirpath) / name, rel,
                                                               report):
                return report
    archive._set_flag(RECONCILED_FLAG)
    if any(v for k, v in vars(report).items() if k != "files_examined"):
        logger.warning("reconciliation: %s", report)
    return report


def rebuild_index(archive: Archive, folder: Path | None = None) -> int:
    """``dicomdesk index DIR``: re-read headers and rebuild rows.  ``None`` rebuilds the whole
    archive; a folder inside the archive re-indexes that subtree in place; a folder elsewhere
    is imported (copied).  Returns the number of instances indexed."""
    archive._check_writable()
    root = archive.root.resolve()
    target = root if folder is None else Path(folder).resolve()
    count = 0
    if target == root or root in target.parents:
        prefix = "" if target == root else target.relative_to(root).as_posix()
        archive.index.clear(prefix)
        for full in _archive_files(archive, target, any_name=True):
            try:
                ds = read_header(full, archive.max_inflated_size)
                values = header_values(ds)
                archive._validate(values, None, None)
            except ArchiveRefusal as exc:
                logger.info("not indexed %s: %s", full, exc.reason)
                continue
            path = archive.root / full.relative_to(root)
            # Two files with one SOP Instance UID (a replacement whose old copy a crash
            # left, from an archive older than ``replaced_copy``): index the newer by
            # mtime — a replacement's file is written after the copy it replaces, as
            # ``_reconcile_file`` decides — and delete neither (an explicit rebuild
            # reports, it does not guess which file the user meant to drop).
            other = archive.index.instance(uid_of(values, "SOPInstanceUID"))
            if other is not None and _newer(archive.root / other["path"], path):
                logger.warning("%s and %s hold the same SOP Instance UID; indexed the newer "
                               "(%s)", other["path"], path.relative_to(archive.root).as_posix(),
                               other["path"])
                continue
            archive._index_file(path, ds, full.stat().st_size, "", remove_replaced=False,
                             values=values)
            count += 1
        if target == root:
            archive._set_flag(RECONCILED_FLAG)
        return count
    for dirpath, _dirs, filenames in os.walk(target):
        for name in filenames:
            try:
                archive.add_file(Path(dirpath) / name)
            except ArchiveRefusal as exc:
                logger.debug("skipped %s: %s", name, exc.reason)
                continue
            count += 1
    return count
