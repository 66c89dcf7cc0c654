"""The local archive: received objects on disk plus their SQLite index (PS3.4 B.2.2 Storage SCP).

Durability (the "Bytes to row" flow of ARCHITECTURE.md): the network layer writes each received
Part-10 file into a temp file in ``root/.incoming/`` (``incoming.py``, same file system as the
final place); then ``commit_incoming`` checks the header and the data set's structure, fsyncs
the file, adds it to the journal (``journal.py``: a hard link, fsynced), ``os.replace``s it to
``root/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` and queues its index row. The C-STORE
response goes once the journal entry is durable; the row is written behind it by the index's
helper thread (write-behind: readers of the index wait for queued rows), and the journal entry
is removed after the row is committed and the folder fsynced. A kill at any point therefore
leaves a temp file (never acknowledged: deleted by ``recover``), or a journaled file whose row
may be missing (indexed by ``recover``, ``recovery.py``) — never a partial file at a final path,
and never an acknowledged object that a restart forgets.

Refusals carry the C-STORE failure status to send (PS3.4 B.2.3): 0xA700 Out of Resources,
0xA900 Data Set does not match SOP Class, 0xC000 Cannot understand.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..net.inflate import DEFAULT_MAX_INFLATED_SIZE
from ..net.statuses import (C_STORE_CANNOT_UNDERSTAND, C_STORE_DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                            C_STORE_OUT_OF_RESOURCES, CLASS_INSTANCE_CONFLICT,
                            NO_SUCH_SOP_INSTANCE, PROCESSING_FAILURE)
from .admission import Admission
from .committer import Committer
from .errors import ArchiveError, ArchiveRefusal
from .headers import Header, check_whole, header_values, read_header, uid_of
from .incoming import INCOMING_DIR, IncomingFile, IncomingFileIO, IncomingFolder
from .index import FindQuery, Index, InstanceRef, build_find
from .journal import JOURNAL_DIR, RESERVE_NAME, Journal, Reserve
from .placement import Placement, StoredInstance
from .private import make_private

if TYPE_CHECKING:  # pydicom loads on first use: `dicomdesk serve` answers C-ECHO without it
    from pydicom.dataset import Dataset

    from .recovery import RecoveryReport

logger = logging.getLogger(__name__)

__all__ = ["INDEX_NAME", "Archive", "is_path_safe_uid"]


INDEX_NAME = "index.sqlite3"
#: Recorded in the index once its folder was reconciled under the journal protocol: an older
#: archive (whose write-behind rows a crash could lose) is scanned once (``reconcile``).
RECONCILED_FLAG = "journal-reconciled"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_path_safe_uid(uid: str) -> bool:
    """A UID (PS3.5 9.1: digits and dots, at most 64 chars, no empty component) can be a file name.
    Leading zeros in a component are tolerated: they occur in the wild and are still path-safe."""
    return 0 < len(uid) <= 64 and _UID.match(uid) is not None


class Archive:
    """Storage folder + SQLite index; the server's storage/query/retrieve/commitment backend."""

    def __init__(self, root: Path, *, durable: bool = True, read_only: bool = False,
                 min_free_bytes: int = 0,
                 max_inflated_size: int = DEFAULT_MAX_INFLATED_SIZE) -> None:
        self.root = Path(root)
        self.durable = durable
        self.read_only = read_only
        #: A deflated object inflating to more is refused (0xA700), checked as it inflates.
        self.max_inflated_size = max_inflated_size or DEFAULT_MAX_INFLATED_SIZE
        self._lock = threading.Lock()
        self._root_text = str(self.root)
        self._journal: Journal | None = None
        self._read_only_index: Index | None = None  # the one a full disk left (``_reopen_writable``)
        self._reserve = Reserve(self.root / JOURNAL_DIR / RESERVE_NAME)
        #: Whether new objects are accepted now, and why not (``admission.py``).
        self.admission = Admission(self.root, self._reserve, journaled=not read_only,
                                   min_free_bytes=min_free_bytes, heal=self._writable_again)
        #: Checked objects made durable and put in place, and what follows their rows.
        self.placement = Placement(self)
        if read_only:
            if not (self.root / INDEX_NAME).exists():
                raise ArchiveError(f"no archive index in {self.root}")
            self.index = Index(self.root / INDEX_NAME, read_only=True, durable=durable)
        else:
            index_file = self.root / INDEX_NAME
            fresh = not index_file.exists() or index_file.stat().st_size == 0
            make_private(self.root, INDEX_NAME, INCOMING_DIR)  # folders 0700, index 0600
            self._journal = Journal(self.root / JOURNAL_DIR, durable=durable)
            self.index = self._open_index()
            self.index.after_write_behind = self.placement.settle_journal
            if fresh and not self._holds_objects():
                self._set_flag(RECONCILED_FLAG)  # nothing to reconcile: a new archive
            if self.admission.refusal is None and not (self._reserve.room() and self._reserve.ensure()):
                self.admission.refuse("disk full (no room for the archive's reserve)")
        #: The temp files received objects are written into (``incoming.py``).
        self.incoming = IncomingFolder(self.incoming_dir)
        #: Out-of-line durable commits (``commit_incoming_later``), started on first use.
        self._committer: Committer | None = None
        self._committer_lock = threading.Lock()

    def _open_index(self) -> Index:
        """Open the index; on a full disk SQLite cannot even create its WAL index, so the
        reserve is given back first and new objects are refused until space returns. With no
        reserve left either, the index is read as it is (immutable, read-only): queries are
        answered, stores refused, and it is opened for writing once there is room."""
        path = self.root / INDEX_NAME
        try:
            return Index(path, durable=self.durable)
        except sqlite3.OperationalError as exc:
            # Locked by another program (a second server on this folder, an SQLite browser)
            # is not a full disk: the reserve stays, and the refusal says what it is.
            locked = "locked" in str(exc) or "busy" in str(exc)
            self.admission.refusal = f"the archive index is locked by another program ({exc})" if locked \
                else f"disk full ({exc})"
            if not locked and self._reserve.release():
                try:
                    return Index(path, durable=self.durable)
                except sqlite3.OperationalError:
                    pass
            if not path.exists():
                raise
            logger.error("the index cannot be opened for writing (%s): answering queries from it "
                         "as it is, refusing new objects until %s", exc,
                         "it is free" if locked else "the disk has room")
            if not locked:
                self.admission.refusal = "disk full: the index cannot be opened for writing"
            return Index(path, durable=self.durable, immutable=True)
        except sqlite3.DatabaseError as exc:  # not a database, malformed: damaged, not full
            return self._replace_damaged_index(path, exc)

    def _replace_damaged_index(self, path: Path, exc: Exception) -> Index:
        """A damaged index is only a cache of the folder: set it aside (kept for inspection)
        and start an empty one, which ``needs_full_scan`` then fills from the files while the
        server answers. The files themselves, and the journal, are untouched."""
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        logger.error("the archive index %s is damaged (%s): kept as %s; a new index is built "
                     "from the archive's files", path, exc, aside.name)
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
            except FileNotFoundError:
                pass
        return Index(path, durable=self.durable)

    def _reopen_writable(self) -> bool:
        """After ``_open_index`` fell back to reading: open the index for writing if it can
        be now. The read-only index is not closed (a query may still use it)."""
        if not self.index.immutable:
            return True
        try:
            index = Index(self.root / INDEX_NAME, durable=self.durable)
        except sqlite3.OperationalError:
            return False
        index.after_write_behind = self.placement.settle_journal
        self._read_only_index = self.index
        self.index = index
        logger.warning("the index is open for writing again")
        return True

    def _holds_objects(self) -> bool:
        """Whether the root holds any study folder (an index made now would miss them)."""
        return any(not p.name.startswith(".") and p.is_dir() for p in self.root.iterdir())

    def _set_flag(self, name: str) -> None:
        try:
            self.index.set_flag(name)
        except (sqlite3.Error, PermissionError) as exc:  # a full disk: the scan runs again next time
            logger.warning("cannot record %s in the index: %s", name, exc)

    def close(self) -> None:
        with self._committer_lock:
            committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()  # objects in flight are placed before the index closes
        self.incoming.close()
        self.index.close()  # the queued rows are written, the journal settled
        if self._read_only_index is not None:
            self._read_only_index.close()
        unindexed = self.placement.unindexed_count()
        if unindexed:
            logger.error("%d acknowledged objects are not indexed (disk full?): the journal keeps "
                         "them for the next start", unindexed)

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- storing

    @property
    def incoming_dir(self) -> Path:
        return self.root / INCOMING_DIR

    def _check_writable(self) -> None:
        if self.read_only:
            raise ArchiveError("the archive is open read-only")

    def has_free_space(self) -> bool:
        """False when a new object would be refused for lack of resources (0xA700): free space
        below ``min_free_bytes``, or the disk full (``refusal_reason`` says which)."""
        return self.refusal_reason() is None

    def refusal_reason(self, *, measure: bool = True) -> str | None:
        """Why a new object would be refused now (0xA700), or None (``Admission.reason``)."""
        return self.admission.reason(measure=measure)

    @property
    def min_free_bytes(self) -> int:
        return self.admission.min_free_bytes

    def _writable_again(self) -> bool:
        """The disk has room again (``Admission``): reopen the index for writing if a full
        disk left it read-only (and index what the journal kept), remake the reserve and
        index the rows that failed; True when all of that worked."""
        if self.index.immutable:
            if not self._reopen_writable():
                return False
            if self._journal is not None and self._journal.entries():
                from .recovery import RecoveryReport, replay

                replay(self, self._journal.entries(), RecoveryReport())
        return self._reserve.ensure() and self.placement.index_unindexed()

    def open_incoming(self) -> IncomingFile:
        """A new temp file for one received object (same file system as the archive)."""
        self._check_writable()
        return self.incoming.open()

    def discard_incoming(self, incoming: IncomingFile | BinaryIO) -> None:
        """An aborted transfer: the temp file goes away."""
        self.incoming.discard(incoming)


    def commit_incoming(self, incoming: IncomingFile | BinaryIO, *, calling_aet: str = "",
                        expected_sop_instance_uid: str | None = None,
                        expected_sop_class_uid: str | None = None) -> StoredInstance:
        """Validate, make durable, move into place and index one received object."""
        incoming = self.incoming.as_incoming(incoming)
        try:
            ds, values, size = self._check_incoming(incoming, expected_sop_instance_uid,
                                                    expected_sop_class_uid)
            if not incoming.fp.closed:
                self._sync_incoming(incoming.fp)
            return self.placement.place(incoming.path, ds, calling_aet, values, size)
        except BaseException:
            self.discard_incoming(incoming)
            raise

    def commit_incoming_later(self, incoming: IncomingFile | BinaryIO, *, calling_aet: str = "",
                              expected_sop_instance_uid: str | None = None,
                              expected_sop_class_uid: str | None = None) -> Future:
        """``commit_incoming`` out of line (``committer.py``): the checks run now (a refusal
        raises here), the fsyncs and the placement later; the future resolves to the
        ``StoredInstance`` once the object is as durable as ``commit_incoming`` leaves it,
        or to the ``ArchiveRefusal`` (or other error) that refused it."""
        incoming = self.incoming.as_incoming(incoming)
        try:
            ds, values, size = self._check_incoming(incoming, expected_sop_instance_uid,
                                                    expected_sop_class_uid)
            with self._committer_lock:
                if self._committer is None:
                    self._committer = Committer(self._sync_incoming, self._place_jobs)
                committer = self._committer
            future = committer.submit(incoming.fp, (incoming.path, ds, calling_aet, values, size))
        except BaseException:
            self.discard_incoming(incoming)
            raise

        def discard_if_refused(done: Future) -> None:
            if done.exception() is not None:
                self.discard_incoming(incoming)
        future.add_done_callback(discard_if_refused)
        return future

    def _check_incoming(self, incoming: IncomingFile, expected_instance: str | None,
                        expected_class: str | None) -> tuple[Header, dict[str, object], int | None]:
        """(header, its values, size) of a complete received object that may be stored;
        ArchiveRefusal says why not. Nothing is fsynced yet."""
        self._check_writable()
        fp = incoming.fp
        ds = fp.header() if isinstance(fp, IncomingFileIO) else None
        size = fp.size if isinstance(fp, IncomingFileIO) else None
        if ds is None:
            if not fp.closed:
                try:
                    fp.flush()
                except OSError as exc:
                    raise ArchiveRefusal(C_STORE_OUT_OF_RESOURCES,
                                         f"cannot write the file: {exc.strerror}") from exc
            check_whole(incoming, None)  # its reason, before pydicom's less precise one
            ds = read_header(incoming.path, self.max_inflated_size)
        else:
            check_whole(incoming, ds)  # before fsync: a truncated object costs no flush
        values = header_values(ds)
        self._validate(values, expected_instance, expected_class)
        refusal = self.refusal_reason(measure=self.admission.due(size))
        if refusal is not None:
            raise ArchiveRefusal(C_STORE_OUT_OF_RESOURCES, refusal)
        return ds, values, size

    def _sync_incoming(self, fp: BinaryIO) -> None:
        """Flush (and in durable mode fsync) a checked temp file, then close it."""
        try:
            fp.flush()
            if self.durable:
                os.fsync(fp.fileno())
            fp.close()
        except OSError as exc:
            raise ArchiveRefusal(C_STORE_OUT_OF_RESOURCES, f"cannot write the file: {exc.strerror}") from exc

    def _place_jobs(self, jobs: list[Any]) -> None:
        """The committer's batch of fsynced objects, placed in their order
        (``Placement.place_jobs``)."""
        self.placement.place_jobs(jobs)

    @staticmethod
    def _validate(values: dict[str, object], expected_instance: str | None,
                  expected_class: str | None) -> None:
        """``values`` from ``header_values``."""
        for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            uid = uid_of(values, keyword)
            if not uid:
                raise ArchiveRefusal(C_STORE_DATA_SET_DOES_NOT_MATCH_SOP_CLASS, f"{keyword} is missing")
            if not is_path_safe_uid(uid):
                raise ArchiveRefusal(C_STORE_CANNOT_UNDERSTAND, f"{keyword} is not a valid UID")
        if expected_instance is not None \
                and uid_of(values, "SOPInstanceUID") != expected_instance.strip("\0 "):
            raise ArchiveRefusal(C_STORE_DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                                 "SOP Instance UID differs from the C-STORE request's")
        sop_class = uid_of(values, "SOPClassUID")
        if expected_class is not None and sop_class and sop_class != expected_class.strip("\0 "):
            raise ArchiveRefusal(C_STORE_DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                                 "SOP Class UID differs from the C-STORE request's")

    def wait_indexed(self) -> None:
        """Return once every stored object is indexed and the copies it replaced are removed
        (queries wait by themselves; this is for callers that look at the folder)."""
        self.index.wait_written()

    def _index_file(self, path: Path, ds: Header, size: int, calling_aet: str, *,
                    remove_replaced: bool = True,
                    values: dict[str, object] | None = None) -> StoredInstance:
        """Index one placed file now (recovery, imports); ``values`` if already read."""
        rel = path.relative_to(self.root).as_posix()
        if values is None:
            values = header_values(ds)
        record = self.placement.record(rel, ds, size, calling_aet, values)
        try:
            old = self.index.upsert(record, remember_replaced=remove_replaced)
        except Exception as exc:  # sqlite3 errors: disk full, I/O; recover() indexes the file later
            logger.error("cannot index %s: %s", rel, exc)
            raise ArchiveRefusal(C_STORE_OUT_OF_RESOURCES, f"cannot update the index: {exc}") from exc
        if old is not None and old != rel:
            if remove_replaced:
                self._remove_file(self.root / old)
                self.index.forget_replaced([old])
            else:
                logger.warning("%s and %s hold the same SOP Instance UID; indexed the latter", old, rel)
        return self.placement.stored(path, record, old is not None)

    def _remove_file(self, path: Path) -> None:
        """Delete an archive file and the series/study folders it leaves empty."""
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        for d in (path.parent, path.parent.parent):
            if d == self.root or self.root not in d.parents:
                break
            try:
                d.rmdir()
            except OSError:
                break

    def add_file(self, path: Path, *, copy: bool = True, calling_aet: str = "") -> StoredInstance:
        """Import an existing file (drag and drop, ``dicomdesk import``); ``copy=False`` moves it.

        ``calling_aet`` records where the object came from (a C-GET's peer), as for C-STORE."""
        self._check_writable()
        path = Path(path)
        if not copy:
            read_header(path, self.max_inflated_size)  # refuse before the source is moved away
        incoming = self.open_incoming()
        try:
            if copy:
                with path.open("rb") as src:
                    shutil.copyfileobj(src, incoming.fp, 1 << 20)
            else:
                incoming.fp.close()
                shutil.move(path, incoming.path)
                # the temp file's writer saw no byte: size and header come from the moved file
                incoming = IncomingFile(incoming.path, incoming.path.open("rb"))
        except OSError as exc:
            self.discard_incoming(incoming)
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                raise ArchiveRefusal(C_STORE_OUT_OF_RESOURCES, "disk full") from exc
            raise
        return self.commit_incoming(incoming, calling_aet=calling_aet)

    # ---------------------------------------------------------------- recovery (recovery.py)

    def recover(self) -> RecoveryReport:
        """At start, before serving: finish what a crash (or kill -9, or power loss) cut short,
        bounded by what can be unfinished, not by the archive's size (``recovery.recover``)."""
        from .recovery import recover

        return recover(self)

    @property
    def needs_full_scan(self) -> bool:
        """True for an archive never reconciled under the journal protocol (written by an
        older dicomdesk, or whose index was deleted): ``reconcile`` once, while serving
        (not while a full disk keeps the index read-only)."""
        return not self.index.immutable and not self.index.flag(RECONCILED_FLAG)

    def reconcile(self, cancel: threading.Event | None = None) -> RecoveryReport:
        """Reconcile the whole folder with the index, beside a serving server
        (``recovery.reconcile``); ``cancel`` stops it (the next start scans again)."""
        from .recovery import reconcile

        return reconcile(self, cancel)

    def rebuild_index(self, folder: Path | None = None) -> int:
        """``dicomdesk index DIR``: re-read headers and rebuild rows (``recovery.rebuild_index``);
        returns the number of instances indexed."""
        from .recovery import rebuild_index

        return rebuild_index(self, folder)

    # ---------------------------------------------------------------- queries

    def find(self, level: str, identifier: Dataset, model: str = "study", *,
             combined_datetime: bool = False, retrieve_ae_title: str = "") -> Iterator[Dataset]:
        """C-FIND SCP (PS3.4 C.4.1) from the index; raises ``QueryError`` before the first match."""
        return self.index.find(level, identifier, model, combined_datetime=combined_datetime,
                               retrieve_ae_title=retrieve_ae_title)

    def prepare_find(self, level: str, identifier: Dataset, model: str = "study", *,
                     combined_datetime: bool = False, retrieve_ae_title: str = "") -> FindQuery:
        """Compile a C-FIND without running it: the SCP reads ``FindQuery.unsupported`` to choose
        between FF00 and FF01 (PS3.4 C.4.1.1.4); raises ``QueryError``."""
        return build_find(level, identifier, model, combined_datetime=combined_datetime,
                          retrieve_ae_title=retrieve_ae_title)

    def run_find(self, query: FindQuery) -> Iterator[Dataset]:
        """The responses of a compiled C-FIND, read in batches on a connection of their own."""
        return self.index.responses(query)

    def locate(self, level: str, identifier: Dataset, model: str = "study") -> list[InstanceRef]:
        """C-MOVE/C-GET SCP: the instances the identifier's unique keys select."""
        return self.index.locate(level, identifier, model)

    def commitment_status(self, refs: Iterable[tuple[str, str]]
                          ) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
        """Storage Commitment SCP (PS3.4 J.3): (committed, failed with Failure Reason).  An instance
        counts as committed only if its file is there with the indexed size."""
        refs = [(str(c).strip("\0 "), str(i).strip("\0 ")) for c, i in refs]
        rows = self.index.instances(uid for _c, uid in refs)
        committed: list[tuple[str, str]] = []
        failed: list[tuple[str, str, int]] = []
        for sop_class, uid in refs:
            row = rows.get(uid)
            if row is None:
                failed.append((sop_class, uid, int(NO_SUCH_SOP_INSTANCE)))
            elif row["sop_class_uid"] != sop_class:
                failed.append((sop_class, uid, int(CLASS_INSTANCE_CONFLICT)))
            else:
                try:
                    ok = (self.root / row["path"]).stat().st_size == row["file_size"]
                except OSError:
                    ok = False
                if ok:
                    committed.append((sop_class, uid))
                else:
                    failed.append((sop_class, uid, int(PROCESSING_FAILURE)))
        return committed, failed

    def count(self) -> int:
        return self.index.count()

    # ---------------------------------------------------------------- browsing (the window)

    def tree(self, sop_instance_uids: Iterable[str] | None = None) -> list[tuple]:
        """Instances as ``Index.TREE_COLUMNS`` tuples (patient, study, series, instance order);
        see ``Index.tree_rows``. ``path`` stays relative to ``root``."""
        return self.index.tree_rows(sop_instance_uids=sop_instance_uids)

    def delete_study(self, study_uid: str) -> int:
        """Remove a study: its index rows first (one transaction, so no C-FIND/C-MOVE sees a
        row whose file is gone), then its files and the folders they leave empty.  A crash
        between the two leaves unindexed files, which ``recover`` indexes again — never a row
        without its file.  Returns the number of instances removed."""
        self._check_writable()
        with self._lock:  # no commit of the same study interleaves (see ``Placement.place_jobs``)
            paths = self.index.remove_study(study_uid)
            for rel in paths:
                self._remove_file(self.root / rel)
        logger.info("deleted study %s (%d instances)", study_uid, len(paths))
        return len(paths)

    def export_study(self, study_uid: str, folder: Path, deidentifier: Any = None) -> list[Path]:
        """Copy a study's files to ``folder``/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm (the
        archive's own layout, so UIDs never collide); returns the copies' paths.

        With ``deidentifier`` (``transform.deidentify.Deidentifier``) each copy is de-identified
        (PS3.15 Annex E) on the way and named by its new UIDs; the archive is left as it was."""
        folder = Path(folder)
        copies: list[Path] = []
        for row in self.index.tree_rows(study_uid=study_uid):
            source = self.root / row[-1]
            if deidentifier is not None:
                copies.append(self._export_deidentified(source, folder, deidentifier))
                continue
            target = folder / row[-1]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copies.append(target)
        return copies

    @staticmethod
    def _export_deidentified(source: Path, folder: Path, deidentifier: Any) -> Path:
        from ..net.part10 import read_part10_header
        from ..transform.rewrite import rewrite_file
        from pydicom import dcmread

        ts = read_part10_header(source).transfer_syntax
        result = rewrite_file(source, ts, deidentifier=deidentifier, tmp_dir=str(folder))
        try:
            ids = dcmread(result.path, stop_before_pixels=True,
                          specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
            target = (folder / str(ids.get("StudyInstanceUID", "study"))
                      / str(ids.get("SeriesInstanceUID", "series")) / f"{result.sop_instance_uid}.dcm")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(result.path, target)
        except BaseException:
            if os.path.exists(result.path):
                os.unlink(result.path)
            raise
        return target
