"""The local archive: received objects on disk plus their SQLite index (PS3.4 B.2.2 Storage SCP).

Durability (the "Bytes to row" flow of ARCHITECTURE.md): the network layer writes each received
Part-10 file into a temp file in ``root/.incoming/`` (same file system as the final place); then
``commit_incoming`` validates the header, fsyncs the file, ``os.replace``s it to
``root/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``, fsyncs the directory and writes the index row
in one transaction.  A kill at any point therefore leaves either a temp file (deleted by
``recover``), a complete file without its row (indexed by ``recover``) or a complete file with its
row — never a partial file at a final path.  A C-STORE response is only sent after the row exists,
so an object ``recover`` has to drop was never acknowledged and the sender will send it again.

Refusals carry the C-STORE failure status to send (PS3.4 B.2.3): 0xA700 Out of Resources,
0xA900 Data Set does not match SOP Class, 0xC000 Cannot understand.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias

from ..durable import fsync_directory
from .committer import CommitJob, Committer
from .journal import JOURNAL_DIR, RESERVE_NAME, Journal, Reserve
from ..net.inflate import DEFAULT_MAX_INFLATED_SIZE, InflateLimitExceeded
from ..net.sopclass.storage import (_DEFLATED_SYNTAXES, _SCAN_BYTES, Part10Error,
                                    check_deflated_structure, check_file_structure,
                                    read_deflated_header, read_file_meta, scan_header)
from .index import KEYS, FindQuery, Index, InstanceRecord, InstanceRef, build_find
from .private import PRIVATE_DIR_MODE, make_private

if TYPE_CHECKING:  # pydicom loads on first use: `dicomdesk serve` answers C-ECHO without it
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)


def _fault_point(step: str) -> None:
    """``kill -9`` of this process at ``step`` when ``DICOMDESK_FAULT_KILL_AT`` names it
    (tests/faults: a crash at an exact point, not at a random time)."""
    if _KILL_AT == step:
        os.kill(os.getpid(), signal.SIGKILL)

STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATA_SET_DOES_NOT_MATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
#: Storage Commitment Failure Reasons (PS3.4 J.3.3, Table J.3-2 / C.14.1.1)
FAILURE_PROCESSING = 0x0110
FAILURE_NO_SUCH_OBJECT_INSTANCE = 0x0112
FAILURE_CLASS_INSTANCE_CONFLICT = 0x0119

INDEX_NAME = "index.sqlite3"
#: Fault injection for tests/faults (a real kill -9 at one exact step): the name of the step.
#: Unset in normal use; read once at import.
_KILL_AT = os.environ.get("DICOMDESK_FAULT_KILL_AT", "")
INCOMING_DIR = ".incoming"
#: Recorded in the index once its folder was reconciled under the journal protocol: an older
#: archive (whose write-behind rows a crash could lose) is scanned once (``reconcile``).
_RECONCILED_FLAG = "journal-reconciled"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_HEADER_TAGS = sorted({key.tag for key in KEYS.values()} | {0x00080005})
_HEADER_TAG_SET = frozenset(_HEADER_TAGS)
#: Received bytes after which free space is measured again at the latest (``_free_space_due``).
FREE_SPACE_CHECK_BYTES = 64 << 20


class ArchiveError(Exception):
    """The archive was misused (e.g. writing to a read-only archive)."""


class ArchiveRefusal(Exception):
    """A received object the archive will not keep; ``status`` is the C-STORE status to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"0x{status:04X}: {reason}")
        self.status = status
        self.reason = reason


@dataclass
class IncomingFile:
    """A temp file the network layer writes a received Part-10 file into (``fp`` is binary)."""

    path: Path
    fp: BinaryIO

    def __enter__(self) -> IncomingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.fp.closed:
            self.fp.close()


@dataclass(frozen=True)
class StoredInstance:
    """What was stored (fields match ``operations.StoredObject`` plus a few more)."""

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


def is_path_safe_uid(uid: str) -> bool:
    """A UID (PS3.5 9.1: digits and dots, at most 64 chars, no empty component) can be a file name.
    Leading zeros in a component are tolerated: they occur in the wild and are still path-safe."""
    return 0 < len(uid) <= 64 and _UID.match(uid) is not None


def _scan_header(path: Path) -> _ScannedHeader | None:
    """The fast path of ``_read_header``: one read of the file's start with plain ``struct``.

    ``scan_header`` yields pydicom's own RawDataElements, so values (and character sets)
    decode exactly as ``dcmread`` would; any file whose layout is not plain returns None
    and pydicom reads it (and decides whether to refuse it).
    """
    try:
        with open(path, "rb") as fp:
            return _header_of_scan(scan_header(fp, _HEADER_TAG_SET))
    except (OSError, Part10Error):
        return None


def _scan_head(head: bytes | bytearray, whole_file: bool) -> _ScannedHeader | None:
    """``_scan_header`` of the first bytes of a file, kept in memory while it was written.

    The scan reads ``_SCAN_BYTES`` after the meta and takes a short read for the end of the
    file; so ``head`` answers only when it holds the whole file or that much past the meta.
    """
    try:
        scan = scan_header(io.BytesIO(head), _HEADER_TAG_SET)
    except Part10Error:
        return None
    if scan is None or not (whole_file or scan.data_offset + _SCAN_BYTES <= len(head)):
        return None
    return _header_of_scan(scan)


def _header_of_scan(scan: object) -> _ScannedHeader | None:
    if scan is None or not scan.elements:
        return None
    return _ScannedHeader(scan.elements, scan.transfer_syntax, scan.data_offset, scan.stop_offset)


class _ScannedHeader:
    """A scanned header where the archive reads a Dataset: the raw elements (``_dict``) and
    ``file_meta.get("TransferSyntaxUID")``. Plain values are read from the raw bytes
    (``InstanceRecord.from_dataset``); the pydicom Dataset — ~25 µs to build, once per
    received object — is built only when a value needs pydicom's conversion (``get``)."""

    __slots__ = ("_dict", "file_meta", "_dataset", "_values", "data_offset", "stop_offset")

    def __init__(self, elements: dict[int, object], transfer_syntax: str, data_offset: int = 0,
                 stop_offset: int | None = None) -> None:
        self._dict = elements
        self.file_meta = {"TransferSyntaxUID": transfer_syntax}
        #: Where the data set starts, and where the scan stopped (every element before it was
        #: seen whole: the structure check walks only the rest, usually Pixel Data alone).
        self.data_offset = data_offset
        self.stop_offset = stop_offset
        self._dataset: Dataset | None = None
        self._values: dict[str, object] | None = None

    def values(self) -> dict[str, object]:
        """``_header_values`` of this header, read once."""
        if self._values is None:
            self._values = InstanceRecord.from_dataset(self, transfer_syntax="", file_size=0,
                                                       path="", received_at="").values
        return self._values

    def dataset(self) -> Dataset:
        if self._dataset is None:
            from pydicom.dataset import Dataset, FileMetaDataset
            from pydicom.tag import BaseTag

            ds = Dataset({BaseTag(tag): elem for tag, elem in self._dict.items()})
            meta = FileMetaDataset()
            meta.TransferSyntaxUID = self.file_meta["TransferSyntaxUID"]
            ds.file_meta = meta
            self._dataset = ds
        return self._dataset

    def get(self, key: object, default: object = None) -> object:
        return self.dataset().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.dataset()

    def __len__(self) -> int:
        return len(self._dict)


#: What the archive reads of a file's header: pydicom's Dataset, or a scan standing in for it.
Header: TypeAlias = "Dataset | _ScannedHeader"


def _read_deflated_header(path: Path, max_inflated_size: int) -> Header | None:
    """The header of a deflated object (PS3.5 A.5), or None when the file is not deflated.

    pydicom's ``dcmread`` inflates the whole data set in memory (a 1 MB deflate bomb costs
    GBs): instead the data set is inflated as a stream, its structure walked and its size
    bounded by ``max_inflated_size`` (0xA700 beyond: nothing is kept), and the header read
    from the first inflated bytes only. A corrupt or truncated stream answers 0xC000.
    """
    try:
        with open(path, "rb") as fp:
            meta = read_file_meta(fp)
            if meta is None or meta[0].get(0x00020010, "") not in _DEFLATED_SYNTAXES:
                return None
            values, offset = meta
            try:
                check_deflated_structure(fp, offset, max_inflated_size)
            except InflateLimitExceeded as exc:
                raise ArchiveRefusal(STATUS_OUT_OF_RESOURCES,
                                     f"inflates to more than {max_inflated_size} bytes") from exc
            scan = _header_of_scan(scan_header(fp, _HEADER_TAG_SET,
                                               max_inflated_size=max_inflated_size))
            if scan is not None:
                return scan
            ds = read_deflated_header(fp, offset, max(_HEADER_TAGS), max_inflated_size)
    except (OSError, Part10Error) as exc:
        raise ArchiveRefusal(STATUS_CANNOT_UNDERSTAND, f"not a readable deflated object: {exc}") from exc
    from pydicom.dataset import FileMetaDataset

    meta_ds = FileMetaDataset()
    meta_ds.TransferSyntaxUID = values[0x00020010]
    ds.file_meta = meta_ds
    if len(ds) == 0:
        raise ArchiveRefusal(STATUS_CANNOT_UNDERSTAND, "the file holds no data set")
    return ds


def _read_header(path: Path, max_inflated_size: int = DEFAULT_MAX_INFLATED_SIZE) -> Header:
    """The header elements the index needs, without pixel data; raises ArchiveRefusal(0xC000)
    (0xA700 for a deflated data set inflating past ``max_inflated_size``)."""
    ds = _scan_header(path)
    if ds is not None:
        return ds
    ds = _read_deflated_header(path, max_inflated_size)
    if ds is not None:
        return ds
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS, defer_size=1024)
        except InvalidDicomError:  # no preamble: a bare data set (or meta) as older tools write
            ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS, defer_size=1024,
                         force=True)
            if "SOPInstanceUID" not in ds:
                raise
    except Exception as exc:  # any parse failure of a peer's bytes is "cannot understand"
        raise ArchiveRefusal(STATUS_CANNOT_UNDERSTAND, f"not a readable DICOM file: {exc}") from exc
    if len(ds) == 0:  # a file meta header but no data set (truncated)
        raise ArchiveRefusal(STATUS_CANNOT_UNDERSTAND, "the file holds no data set")
    return ds


def _check_whole(incoming: IncomingFile, ds: Header | None) -> None:
    """Refuse (0xC000, the reason as Error Comment) a file whose data set ends inside an
    element, an item or a sequence: the sender's structure check (``check_file_structure``)
    run on what arrived, before anything is made durable or acknowledged.

    Element headers are walked and values skipped, from where the header scan stopped
    (usually Pixel Data's header): a few reads per object, whatever its size. Read through
    the temp file's own descriptor (no second open). Deflated data sets are not walked here.
    """
    fp = incoming.fp
    scanned = isinstance(ds, _ScannedHeader)
    try:
        if not fp.closed:  # after a scan only a few headers are left: a small buffer
            reader = io.BufferedReader(io.FileIO(fp.fileno(), "r", closefd=False),
                                       4096 if scanned else 65536)
        else:
            reader = open(incoming.path, "rb")
        with reader:
            if scanned:
                check_file_structure(reader, transfer_syntax=ds.file_meta["TransferSyntaxUID"],
                                     data_offset=ds.data_offset, start=ds.stop_offset)
            else:
                check_file_structure(reader)
    except Part10Error as exc:
        raise ArchiveRefusal(STATUS_CANNOT_UNDERSTAND, str(exc)) from exc
    except OSError as exc:
        raise ArchiveRefusal(STATUS_OUT_OF_RESOURCES, f"cannot read the file back: {exc.strerror}") from exc


def _newer(path: Path, than: Path) -> bool:
    """Whether ``path`` was written after ``than`` (received files keep the mtime of their
    last data write: renaming into place does not change it)."""
    try:
        return path.stat().st_mtime_ns > than.stat().st_mtime_ns
    except OSError:
        return False


class IncomingFileIO(io.FileIO):
    """The temp file a received object is written to, keeping its first bytes in memory.

    The archive indexes a few header elements of every object it receives; reading them
    back from the file cost an open, a read and a close per object. Writes are appends (the
    network layer writes the meta, then the data set as it arrives), so the first
    ``HEAD_BYTES`` written are the file's start; a write after a ``seek`` ends that promise
    and the header is read from the file as before. Unbuffered: fragments are large, and
    every byte goes straight to the kernel as it did through a buffer of 8 KiB.
    """

    HEAD_BYTES = _SCAN_BYTES + 8192  # the meta plus what the header scan reads after it

    def __init__(self, name: str, fd: int) -> None:
        super().__init__(name, "w+", opener=lambda _path, _flags: fd)
        self.head = bytearray()
        self.written = 0
        self._appending = True
        self._seeked = False
        self._early: _ScannedHeader | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write all of ``data`` (a regular file takes it whole unless the disk is full).

        The write that completes ``head`` also reads the header from it: the index values
        are ready while the rest of the object still arrives, not after its last byte,
        when the peer waits for the response."""
        size = len(data)
        if self._seeked:
            self._appending = False
        elif len(self.head) < self.HEAD_BYTES:
            self.head += data[:self.HEAD_BYTES - len(self.head)]
            if len(self.head) >= self.HEAD_BYTES:
                self._early = _scan_head(self.head, False)
                if self._early is not None:
                    self._early.values()
        done = super().write(data)
        while done is not None and done < size:
            more = super().write(memoryview(data)[done:])
            if not more:
                raise OSError(errno.EIO, "short write")
            done += more
        self.written += size
        return size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._seeked = True
        return super().seek(offset, whence)

    @property
    def size(self) -> int | None:
        """The file's length when every write was an append (else None: ask the file system)."""
        return self.written if self._appending else None

    def header(self) -> _ScannedHeader | None:
        """The header elements from ``head``, or None (then read them from the file)."""
        if not self._appending:
            return None
        if self._early is not None:
            return self._early
        return _scan_head(self.head, self.written == len(self.head))


class _TempFilePool:
    """Unnamed files (Linux ``O_TMPFILE``) created ahead of need by a helper thread.

    Creating a file costs 0.1-1 ms on ext4 while earlier objects' data is written back (inode
    allocation waits on the journal), and it sat on the C-STORE's critical path. The helper
    thread creates a few inodes in ``.incoming`` *without a name*: nothing is visible, and
    an unused one disappears when its descriptor closes (or the process dies), so a crash
    leaves nothing behind. ``take`` links one under a fresh ``in-*.part`` name — from then
    on it is exactly what ``mkstemp`` gave before: a named temp file in ``.incoming``,
    renamed into place only when complete. Where ``O_TMPFILE`` or ``/proc`` is missing,
    ``take`` returns None and the caller uses ``mkstemp``.

    The thread sleeps on a condition until a file is taken (no polling); ``close`` stops it.
    """

    SIZE = 32
    #: The thread is woken when the pool falls to this many, and refills it in one go: one
    #: wake-up per 16 objects, not one per object (each costs the receiving thread a futex
    #: wake and GIL hand-offs; ``wakeups`` counts them for a test).
    LOW = 16

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._fds: list[int] = []
        self._cond = threading.Condition()
        self._closed = False
        self._dir_fd: int | None = None
        self._thread: threading.Thread | None = None
        self.wakeups = 0
        tmpfile_flag = getattr(os, "O_TMPFILE", 0)
        self._usable = bool(tmpfile_flag) and os.path.isdir("/proc/self/fd")
        if self._usable:
            try:
                self._dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
                self._fds.append(self._create())
            except OSError:  # no O_TMPFILE on this file system (or no /proc): mkstemp
                self._usable = False
                self._close_fds()
                return
            self._thread = threading.Thread(target=self._fill, name="archive-temp-files", daemon=True)
            self._thread.start()

    def _create(self) -> int:
        return os.open(self._directory, os.O_TMPFILE | os.O_RDWR, 0o600)

    def _fill(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self._fds) > self.LOW:
                    self._cond.wait()
                if self._closed:
                    return
                missing = self.SIZE - len(self._fds)
                self.wakeups += 1
            created = []
            try:
                for _ in range(missing):
                    created.append(self._create())
            except OSError as exc:
                logger.info("cannot pre-create temp files (%s); creating them on demand", exc)
            with self._cond:
                if self._closed:
                    for fd in created:
                        os.close(fd)
                    return
                self._fds.extend(created)
            if len(created) < missing:
                return

    def take(self) -> tuple[int, str] | None:
        """A descriptor and its new name in the directory, or None (then use mkstemp)."""
        with self._cond:  # held while naming: ``close`` must not close the directory meanwhile
            if not self._usable or self._closed or not self._fds or self._dir_fd is None:
                return None
            fd = self._fds.pop()
            if len(self._fds) == self.LOW:
                self._cond.notify()
            for _ in range(100):
                name = f"in-{os.urandom(8).hex()}.part"
                try:
                    # linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N names an O_TMPFILE file
                    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=self._dir_fd, follow_symlinks=True)
                except FileExistsError:
                    continue
                except OSError as exc:
                    logger.info("cannot name a pre-created temp file (%s); creating them on demand", exc)
                    self._usable = False
                    break
                return fd, str(self._directory / name)
            os.close(fd)
            return None

    def _close_fds(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        with self._cond:
            self._close_fds()


def _uid_text(ds: Header, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value).strip("\0 ") if value is not None else ""


def _header_values(ds: Header) -> dict[str, object]:
    """The index's key values of a header (``InstanceRecord.values``), each read from pydicom
    once: validation, the final path, the index row and the report all use this dict (each
    pydicom access costs microseconds, and this runs once per received object)."""
    if isinstance(ds, _ScannedHeader):
        return dict(ds.values())
    return InstanceRecord.from_dataset(ds, transfer_syntax="", file_size=0, path="",
                                       received_at="").values


def _uid(values: dict[str, object], keyword: str) -> str:
    return str(values.get(keyword) or "").strip("\0 ")


class Archive:
    """Storage folder + SQLite index; the server's storage/query/retrieve/commitment backend."""

    def __init__(self, root: Path, *, durable: bool = True, read_only: bool = False,
                 min_free_bytes: int = 0,
                 max_inflated_size: int = DEFAULT_MAX_INFLATED_SIZE) -> None:
        self.root = Path(root)
        self.durable = durable
        self.read_only = read_only
        self.min_free_bytes = min_free_bytes
        #: A deflated object inflating to more is refused (0xA700), checked as it inflates.
        self.max_inflated_size = max_inflated_size or DEFAULT_MAX_INFLATED_SIZE
        self._lock = threading.Lock()
        #: Relative paths renamed into place whose queued index row is not written yet (count).
        self._pending_paths: dict[str, int] = {}
        self._pending_lock = threading.Lock()
        self._root_text = str(self.root)
        self._last_folder: str | None = None  # where the previous object went (it exists)
        self._journal: Journal | None = None
        self._read_only_index: Index | None = None  # the one a full disk left (``_reopen_writable``)
        self._reserve = Reserve(self.root / JOURNAL_DIR / RESERVE_NAME)
        #: Why new objects are refused (disk full, index unwritable); None: they are accepted.
        self._refusal: str | None = None
        self._refusal_lock = threading.Lock()
        #: Bytes received since free space was last measured, and how many may come before
        #: it is measured again (``_free_space_due``); 0: at the next commit.
        self._unmeasured_bytes = 0
        self._measure_budget = 0
        #: Journal entries whose row is committed: the index thread fsyncs their folders and
        #: removes them after each batch. (entry, relative folder)
        self._settled_entries: list[tuple[str, str]] = []
        #: Replaced copies removed (or taken over by a newer object) since the last batch: the
        #: index thread forgets them in ``replaced_copy`` after the batch (``_settle_journal``).
        self._replaced_done: list[str] = []
        #: Journal entries whose row could not be written: (entry, record); indexed again
        #: when the disk has room (``_heal``) or at the next start (``recover``).
        self._unindexed: list[tuple[str, InstanceRecord]] = []
        self._unindexed_lock = threading.Lock()
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
            self.index.after_write_behind = self._settle_journal
            if fresh and not self._holds_objects():
                self._set_flag(_RECONCILED_FLAG)  # nothing to reconcile: a new archive
            if self._refusal is None and not (self._reserve.room() and self._reserve.ensure()):
                self._refuse("disk full (no room for the archive's reserve)")
        self._temp_pool: _TempFilePool | None = None
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
            self._refusal = f"the archive index is locked by another program ({exc})" if locked \
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
                self._refusal = "disk full: the index cannot be opened for writing"
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
        index.after_write_behind = self._settle_journal
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
        pool, self._temp_pool = self._temp_pool, None
        if pool is not None:
            pool.close()
        self.index.close()  # the queued rows are written, the journal settled
        if self._read_only_index is not None:
            self._read_only_index.close()
        if self._unindexed:
            logger.error("%d acknowledged objects are not indexed (disk full?): the journal keeps "
                         "them for the next start", len(self._unindexed))

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
        """Why a new object would be refused now (0xA700), or None. A full disk (the reserve
        given to the index) or an unwritable index ends as soon as there is room again: the
        reserve is made anew and the journal's unindexed objects are indexed first.
        ``measure=False`` skips the free-space measurement (one ``statvfs``): the receiving
        side asks before the first byte, the commit measures."""
        if self._refusal is not None and self._heal() is not None:
            return self._refusal
        if not measure:
            return None
        self._unmeasured_bytes = 0
        self._measure_budget = 0
        budget = FREE_SPACE_CHECK_BYTES
        if self._journal is not None:
            headroom = self._reserve.headroom(held=True)
            if headroom < 0:
                self._refuse(f"disk full (less than {self._reserve.size} bytes free beside the reserve)")
                return self._refusal
            budget = min(budget, headroom // 4)
        if self.min_free_bytes > 0:
            free = shutil.disk_usage(self.root).free
            if free < self.min_free_bytes:
                return f"free space below {self.min_free_bytes} bytes"
            budget = min(budget, (free - self.min_free_bytes) // 4)
        self._measure_budget = budget
        return None

    def _free_space_due(self, size: int | None) -> bool:
        """Whether the commit of an object of ``size`` bytes measures free space again
        (``refusal_reason``): after ``FREE_SPACE_CHECK_BYTES`` or a quarter of the room the
        last measurement found, whichever is less, were received since — not once per
        object (a ``statvfs`` each; near a full disk the budget shrinks to every object)."""
        if size is None:
            return True
        self._unmeasured_bytes += size
        return self._unmeasured_bytes >= self._measure_budget

    def _refuse(self, reason: str) -> None:
        # No lock: ``_heal`` holds its lock while it waits for the index thread, which calls this.
        if self._refusal is None:
            logger.error("refusing new objects: %s", reason)
        self._refusal = reason

    def _heal(self) -> str | None:
        """Leave the refusing state if the disk has room again; returns the reason if not."""
        with self._refusal_lock:
            if self._refusal is None:
                return None
            if not self._reserve.room():
                return self._refusal
            if self.index.immutable:
                if not self._reopen_writable():
                    return self._refusal
                if self._journal is not None and self._journal.entries():
                    self._replay(self._journal.entries(), RecoveryReport())
            if not self._reserve.ensure() or not self._index_unindexed():
                return self._refusal
            logger.warning("accepting new objects again: %s is over", self._refusal)
            self._refusal = None
            return None

    def _index_unindexed(self) -> bool:
        """Write the rows that failed (from any thread); True when none is left."""
        with self._unindexed_lock:
            failed, self._unindexed = self._unindexed, []
        if not failed:
            return True
        try:
            olds = self.index.upsert_many([record for _, record in failed])
        except sqlite3.Error as exc:
            logger.error("still cannot index %d acknowledged objects: %s", len(failed), exc)
            with self._unindexed_lock:
                self._unindexed[:0] = failed
            return False
        for (entry, record), old in zip(failed, olds):
            with self._pending_lock:  # as in ``_indexed``: checked and removed under one lock
                if old is not None and old != record.path and old not in self._pending_paths:
                    self._remove_file(self.root / old)
        self._settle([(entry, os.path.dirname(record.path)) for entry, record in failed])
        logger.warning("indexed %d acknowledged objects the index could not take before", len(failed))
        return True

    def open_incoming(self) -> IncomingFile:
        """A new temp file for one received object (same file system as the archive)."""
        self._check_writable()
        if self._temp_pool is None:
            self._temp_pool = _TempFilePool(self.incoming_dir)
        taken = self._temp_pool.take()
        if taken is None:
            fd, name = tempfile.mkstemp(prefix="in-", suffix=".part", dir=self.incoming_dir)
        else:
            fd, name = taken
        try:
            # mkstemp's descriptor, wrapped under its name so that ``fp.name`` leads back to
            # the IncomingFile (no second open of the new file).
            fp = IncomingFileIO(name, fd)
        except BaseException:
            os.close(fd)
            raise
        return IncomingFile(Path(name), fp)

    def discard_incoming(self, incoming: IncomingFile | BinaryIO) -> None:
        """An aborted transfer: the temp file goes away."""
        incoming = self._as_incoming(incoming)
        if not incoming.fp.closed:
            try:
                incoming.fp.close()
            except OSError:  # e.g. ENOSPC flushing what is being thrown away
                pass
        try:
            incoming.path.unlink()
        except FileNotFoundError:
            pass

    def _as_incoming(self, obj: IncomingFile | BinaryIO) -> IncomingFile:
        """Accept the file object itself (what ``get_file`` handed to the network layer)."""
        if isinstance(obj, IncomingFile):
            return obj
        path = Path(getattr(obj, "name", ""))
        if path.parent != self.incoming_dir:
            raise ArchiveError(f"{path} is not an incoming file of this archive")
        return IncomingFile(path, obj)

    def commit_incoming(self, incoming: IncomingFile | BinaryIO, *, calling_aet: str = "",
                        expected_sop_instance_uid: str | None = None,
                        expected_sop_class_uid: str | None = None) -> StoredInstance:
        """Validate, make durable, move into place and index one received object."""
        incoming = self._as_incoming(incoming)
        try:
            ds, values, size = self._check_incoming(incoming, expected_sop_instance_uid,
                                                    expected_sop_class_uid)
            if not incoming.fp.closed:
                self._sync_incoming(incoming.fp)
            return self._place(incoming.path, ds, calling_aet, values, size)
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
        incoming = self._as_incoming(incoming)
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
                    raise ArchiveRefusal(STATUS_OUT_OF_RESOURCES,
                                         f"cannot write the file: {exc.strerror}") from exc
            _check_whole(incoming, None)  # its reason, before pydicom's less precise one
            ds = _read_header(incoming.path, self.max_inflated_size)
        else:
            _check_whole(incoming, ds)  # before fsync: a truncated object costs no flush
        values = _header_values(ds)
        self._validate(values, expected_instance, expected_class)
        refusal = self.refusal_reason(measure=self._free_space_due(size))
        if refusal is not None:
            raise ArchiveRefusal(STATUS_OUT_OF_RESOURCES, refusal)
        return ds, values, size

    def _sync_incoming(self, fp: BinaryIO) -> None:
        """Flush (and in durable mode fsync) a checked temp file, then close it."""
        try:
            fp.flush()
            if self.durable:
                os.fsync(fp.fileno())
            fp.close()
        except OSError as exc:
            raise ArchiveRefusal(STATUS_OUT_OF_RESOURCES, f"cannot write the file: {exc.strerror}") from exc

    @staticmethod
    def _validate(values: dict[str, object], expected_instance: str | None,
                  expected_class: str | None) -> None:
        """``values`` from ``_header_values``."""
        for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            uid = _uid(values, keyword)
            if not uid:
                raise ArchiveRefusal(STATUS_DATA_SET_DOES_NOT_MATCH, f"{keyword} is missing")
            if not is_path_safe_uid(uid):
                raise ArchiveRefusal(STATUS_CANNOT_UNDERSTAND, f"{keyword} is not a valid UID")
        if expected_instance is not None and _uid(values, "SOPInstanceUID") != expected_instance.strip("\0 "):
            raise ArchiveRefusal(STATUS_DATA_SET_DOES_NOT_MATCH,
                                 "SOP Instance UID differs from the C-STORE request's")
        sop_class = _uid(values, "SOPClassUID")
        if expected_class is not None and sop_class and sop_class != expected_class.strip("\0 "):
            raise ArchiveRefusal(STATUS_DATA_SET_DOES_NOT_MATCH,
                                 "SOP Class UID differs from the C-STORE request's")

    def _makedirs(self, directory: Path) -> None:
        """Create the study/series folders; fsync each parent whose entries changed (durable)."""
        missing = []
        d = directory
        while not d.exists():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            d.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            if self.durable:
                fsync_directory(d.parent)

    def _place(self, source: Path, ds: Header, calling_aet: str,
               values: dict[str, object], size: int | None = None) -> StoredInstance:
        """Rename the complete file into place, then queue its index row (write-behind).

        The row is written by the index's helper thread just after the C-STORE response, not
        before it: readers of the index wait for queued rows, so nobody sees the difference,
        and a crash before the row is written leaves a placed file that ``recover`` indexes.
        Paths are plain strings here (this runs once per received object).
        """
        job = CommitJob(None, (source, ds, calling_aet, values, size))
        self._place_jobs([job])
        return job.result.result()

    def _place_jobs(self, jobs: list[CommitJob]) -> None:
        """``_place`` for several fsynced objects in their order, under one journal fsync:
        each job's result is its ``StoredInstance`` or the refusal, resolved only once its
        journal entry is durable."""
        journal = self._journal
        assert journal is not None
        placed = []
        with self._lock:  # renames, journal entries and queued rows stay in the same order
            for job in jobs:
                source, ds, calling_aet, values, size = job.place_args
                rel = (f"{_uid(values, 'StudyInstanceUID')}/{_uid(values, 'SeriesInstanceUID')}/"
                       f"{_uid(values, 'SOPInstanceUID')}.dcm")
                final = os.path.join(self._root_text, rel)
                source = os.fspath(source)
                try:
                    if size is None:
                        size = os.stat(source).st_size
                    try:
                        entry = journal.add(source)  # before the rename: no placed file without it
                    except OSError as exc:
                        raise ArchiveRefusal(STATUS_OUT_OF_RESOURCES,
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
                record = self._record(rel, ds, size, calling_aet, values)
                self.index.upsert_later(
                    record, lambda old, rel=rel, entry=entry, record=record: self._indexed(rel, old, entry, record))
                if replaced:
                    logger.info("replaced %s", _uid(values, "SOPInstanceUID"))
                results.append((job, self._stored(Path(final), record, replaced)))
        for job, stored in results:
            job.result.set_result(stored)

    def wait_indexed(self) -> None:
        """Return once every stored object is indexed and the copies it replaced are removed
        (queries wait by themselves; this is for callers that look at the folder)."""
        self.index.wait_written()

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
                    self._makedirs(Path(folder))
                    self._last_folder = folder
                replaced = os.path.exists(final)
                os.replace(source, final)
                return replaced
            except FileNotFoundError as exc:
                self._last_folder = None
                if attempt == 2 or not os.path.exists(source):
                    raise ArchiveRefusal(STATUS_OUT_OF_RESOURCES,
                                         f"cannot store the file: {exc.strerror}") from exc
            except OSError as exc:
                self._last_folder = None
                raise ArchiveRefusal(STATUS_OUT_OF_RESOURCES, f"cannot store the file: {exc.strerror}") from exc
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
        and let its journal entry go after this batch (``_settle_journal``) — or, if the row
        failed, keep the entry and refuse new objects until it is written (``_heal``).

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
                    # first (``_place``), so it is either seen above or placed after this removal
                    logger.info("replaced %s (was %s)", rel, old)
                    _fault_point("before-replaced-removal")
                    self._remove_file(self.root / old)
                self._replaced_done.append(old)
        if isinstance(old, Exception):  # the journal keeps it; indexed when there is room
            logger.error("cannot index %s: %s", rel, old)
            if entry is not None and record is not None:
                with self._unindexed_lock:
                    self._unindexed.append((entry, record))
            return
        if entry is not None:
            self._settled_entries.append((entry, os.path.dirname(rel)))

    def _settle_journal(self) -> None:
        """After a batch of rows (index thread): rows that failed are tried once more with the
        reserve's space (then new objects are refused: the disk is full); the entries of
        committed rows go, after their folders are fsynced."""
        with self._unindexed_lock:
            failed = bool(self._unindexed)
        if failed:
            released = self._reserve.release()
            self._refuse("disk full: the index cannot grow" if released
                         else "the index cannot be written")
            self._index_unindexed()
        settled, self._settled_entries = self._settled_entries, []
        self._settle(settled)
        done, self._replaced_done = self._replaced_done, []
        if done:
            self.index.forget_replaced(done)

    def _settle(self, settled: list[tuple[str, str]]) -> None:
        """Entries whose rows are committed: fsync their folders (the renames), then remove them."""
        if not settled or self._journal is None:
            return
        if self.durable:
            for folder in dict.fromkeys(folder for _, folder in settled):
                fsync_directory(self.root / folder)
        self._journal.remove(entry for entry, _ in settled)

    def _record(self, rel: str, ds: Header, size: int, calling_aet: str,
                values: dict[str, object]) -> InstanceRecord:
        meta = getattr(ds, "file_meta", None)
        ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        return InstanceRecord(
            values, transfer_syntax=ts or IMPLICIT_VR_LITTLE_ENDIAN, file_size=size, path=rel,
            received_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            calling_aet=calling_aet.strip())

    @staticmethod
    def _stored(path: Path, record: InstanceRecord, replaced: bool) -> StoredInstance:
        values = record.values
        return StoredInstance(
            path=path, sop_class_uid=_uid(values, "SOPClassUID"),
            sop_instance_uid=_uid(values, "SOPInstanceUID"),
            study_uid=_uid(values, "StudyInstanceUID"), series_uid=_uid(values, "SeriesInstanceUID"),
            patient_id=str(values.get("PatientID") or ""), patient_name=str(values.get("PatientName") or ""),
            transfer_syntax=record.transfer_syntax, size=record.file_size, calling_aet=record.calling_aet,
            replaced=replaced, modality=str(values.get("Modality") or "").strip())

    def _index_file(self, path: Path, ds: Header, size: int, calling_aet: str, *,
                    remove_replaced: bool = True,
                    values: dict[str, object] | None = None) -> StoredInstance:
        """Index one placed file now (recovery, imports); ``values`` if already read."""
        rel = path.relative_to(self.root).as_posix()
        if values is None:
            values = _header_values(ds)
        record = self._record(rel, ds, size, calling_aet, values)
        try:
            old = self.index.upsert(record, remember_replaced=remove_replaced)
        except Exception as exc:  # sqlite3 errors: disk full, I/O; recover() indexes the file later
            logger.error("cannot index %s: %s", rel, exc)
            raise ArchiveRefusal(STATUS_OUT_OF_RESOURCES, f"cannot update the index: {exc}") from exc
        if old is not None and old != rel:
            if remove_replaced:
                self._remove_file(self.root / old)
                self.index.forget_replaced([old])
            else:
                logger.warning("%s and %s hold the same SOP Instance UID; indexed the latter", old, rel)
        return self._stored(path, record, old is not None)

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
            _read_header(path, self.max_inflated_size)  # refuse before the source is moved away
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
                raise ArchiveRefusal(STATUS_OUT_OF_RESOURCES, "disk full") from exc
            raise
        return self.commit_incoming(incoming, calling_aet=calling_aet)

    # ---------------------------------------------------------------- reconciliation

    def _archive_files(self, folder: Path, *, any_name: bool = False) -> Iterator[Path]:
        """Archive files under ``folder`` (``*.dcm``; with ``any_name`` every file except the
        index's own and the temp folder, for indexing a folder of files named by someone else)."""
        for dirpath, names in self._archive_folders(folder, any_name=any_name):
            for name in names:
                yield Path(dirpath) / name

    def _archive_folders(self, folder: Path, *,
                         any_name: bool = False) -> Iterator[tuple[str, list[str]]]:
        """``(folder path, names of its archive files)`` under ``folder``, as plain strings
        (a walk of a million files builds no Path per file; see ``_archive_files``)."""
        for dirpath, dirnames, filenames in os.walk(folder):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d not in (INCOMING_DIR, JOURNAL_DIR)]
            names = [name for name in filenames
                     if name.endswith(".dcm") or (any_name and not name.startswith(INDEX_NAME))]
            if names:
                yield dirpath, names

    def recover(self) -> RecoveryReport:
        """At start, before serving: finish what a crash (or kill -9, or power loss) cut short.

        Bounded by what can be unfinished, not by the archive's size: temp files of objects
        still arriving are deleted (never acknowledged), and the objects the journal names
        (acknowledged, row perhaps not written) are put back in place if a rename was lost
        and indexed. On a disk too full for the index the reserve is used; if even that
        fails, the entries stay for the next chance and new objects are refused (0xA700):
        the server still starts and answers. An archive written before the journal existed
        needs one full ``reconcile`` (``needs_full_scan``).
        """
        self._check_writable()
        began = time.monotonic()
        report = RecoveryReport()
        for leftover in self.incoming_dir.iterdir():
            if leftover.is_file():
                leftover.unlink()
                report.removed_temp_files += 1
        assert self._journal is not None
        entries = self._journal.entries()
        report.journal_entries = len(entries)
        if entries and not self._reopen_writable():  # a full disk: they wait for room
            report.unindexed = len(entries)
            logger.error("%d acknowledged objects wait in the journal until the disk has room",
                         len(entries))
        elif entries:
            self._replay(entries, report)
        if not report.unindexed:
            self._remove_replaced_copies(report)
        if any(v for k, v in vars(report).items() if k != "files_examined"):
            logger.warning("recovery: %s", report)
        logger.info("recovery: %d journaled objects, %d temp files, %d headers read in %.0f ms",
                    report.journal_entries, report.removed_temp_files, report.files_examined,
                    (time.monotonic() - began) * 1000)
        return report

    def _replay(self, entries: list[Path], report: RecoveryReport) -> None:
        """Index the journal's objects; the last entry of a SOP Instance UID wins, as it did
        when its row was queued (an earlier copy at another path is removed)."""
        latest: dict[str, tuple[Path, str, Header, dict[str, object]]] = {}
        superseded: set[str] = set()
        for entry in entries:
            report.files_examined += 1
            try:
                ds = _read_header(entry, self.max_inflated_size)
            except ArchiveRefusal:  # checked before it was acknowledged: damaged since
                report.unreadable_files.append(entry)
                continue
            values = _header_values(ds)
            uid = _uid(values, "SOPInstanceUID")
            rel = (f"{_uid(values, 'StudyInstanceUID')}/{_uid(values, 'SeriesInstanceUID')}/"
                   f"{uid}.dcm")
            if uid in latest and latest[uid][1] != rel:
                superseded.add(latest[uid][1])
            latest[uid] = (entry, rel, ds, values)
        for rel in superseded - {item[1] for item in latest.values()}:
            self._remove_file(self.root / rel)
            report.removed_stale_files += 1
        settled: list[tuple[str, str]] = []
        failed: list[tuple[str, InstanceRecord]] = []
        for entry, rel, ds, values in latest.values():
            final = self.root / rel
            self._restore(entry, final)
            record = self._record(rel, ds, final.stat().st_size, "", values)
            if failed:
                failed.append((str(entry), record))
                continue
            try:
                self._index_file(final, ds, record.file_size, "", values=values)
            except ArchiveRefusal:
                if self._reserve.release():
                    self._refuse("disk full: the index cannot grow")
                    try:
                        self._index_file(final, ds, record.file_size, "", values=values)
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
        self._settle(settled)
        if failed:
            report.unindexed = len(failed)
            with self._unindexed_lock:
                self._unindexed.extend(failed)
            self._refuse(f"{len(failed)} acknowledged objects wait for room in the index")

    def _remove_replaced_copies(self, report: RecoveryReport) -> None:
        """Remove the copies the index recorded as replaced (``Index._upsert_one``) whose
        removal a crash cut short: the row had moved to the newer object's path in the same
        transaction that named the old path, so the old file is an older version of an object
        indexed elsewhere. Runs after the journal's replay, when every acknowledged object has
        its row: a path that is some row's path now holds a newer object (sent again to its
        old study) and stays. Bounded by the moves in flight at the crash, not the archive."""
        if self.index.read_only:
            return  # a full disk left the index read-only: the next start does it
        paths = self.index.replaced_copies()
        for rel in paths:
            row = self.index.instance(Path(rel).stem)
            if row is not None and row["path"] == rel:
                continue
            full = self.root / rel
            if full.exists():
                self._remove_file(full)
                report.removed_stale_files += 1
                logger.warning("removed %s: a copy replaced before the crash", rel)
        self.index.forget_replaced(paths)

    def _restore(self, entry: Path, final: Path) -> None:
        """Put the journal's copy at ``final`` unless it is there (a power loss can forget the
        rename into the study folder, not the fsynced journal entry)."""
        try:
            if final.exists() and os.path.samefile(entry, final):
                return
        except OSError:
            pass
        self._makedirs(final.parent)
        temp = self.incoming_dir / f"restore-{entry.name}"
        try:
            temp.unlink()
        except FileNotFoundError:
            pass
        os.link(entry, temp)
        os.replace(temp, final)
        if self.durable:
            fsync_directory(final.parent)
        logger.warning("restored %s from the journal", final)

    @property
    def needs_full_scan(self) -> bool:
        """True for an archive never reconciled under the journal protocol (written by an
        older dicomdesk, or whose index was deleted): ``reconcile`` once, while serving
        (not while a full disk keeps the index read-only)."""
        return not self.index.immutable and not self.index.flag(_RECONCILED_FLAG)

    def _reconcile_row(self, uid: str, rel: str, size: int, report: RecoveryReport) -> None:
        """One index row against its file: dropped when the file is gone, indexed again when
        the file changed size (decided under the lock, against the row as it is then)."""
        full_text = os.path.join(self._root_text, rel)  # no Path per row (pathlib interns parts)
        try:
            actual = os.stat(full_text).st_size
        except FileNotFoundError:
            full = Path(full_text)
            with self._lock:
                row = self.index.instance(uid)
                if row is not None and row["path"] == rel and not full.exists():
                    self.index.remove_instance(uid)
                    report.dropped_rows += 1
            return
        if actual != size:
            full = Path(full_text)
            with self._lock:
                row = self.index.instance(uid)
                if row is None or row["path"] != rel:
                    return
                try:
                    ds = _read_header(full, self.max_inflated_size)
                    report.files_examined += 1
                    self._index_file(full, ds, full.stat().st_size, "")
                    report.reindexed_rows += 1
                except (ArchiveRefusal, OSError):
                    report.unreadable_files.append(full)

    def _reconcile_file(self, full: Path, rel: str, report: RecoveryReport) -> bool:
        """A file without a row at its path (under the lock, against the index as it is
        then): indexed, or removed when it is an older copy of one indexed elsewhere. False
        when the index cannot grow (reconciliation stops)."""
        with self._lock:
            if not full.exists():
                return True  # removed meanwhile (a study deleted, a copy replaced)
            row = self.index.instance(full.stem)  # waits for queued rows: placed meanwhile?
            if row is not None and row["path"] == rel:
                return True
            try:
                ds = _read_header(full, self.max_inflated_size)
            except ArchiveRefusal:
                report.unreadable_files.append(full)
                return True
            report.files_examined += 1
            uid = _uid_text(ds, "SOPInstanceUID")
            other = self.index.instance(uid)
            if other is not None and (self.root / other["path"]).exists() \
                    and not _newer(full, self.root / other["path"]):
                # an older copy whose removal a crash cut short; a newer one is a
                # replacement placed (perhaps acknowledged) whose row the crash lost
                self._remove_file(full)
                report.removed_stale_files += 1
                return True
            try:
                self._index_file(full, ds, full.stat().st_size, "")
            except ArchiveRefusal as exc:
                logger.error("reconcile stopped: %s", exc.reason)
                return False
            report.indexed_files += 1
        return True

    def reconcile(self, cancel: threading.Event | None = None) -> RecoveryReport:
        """Reconcile the whole folder with the index: rows whose file is gone or changed,
        files without a row, stale copies. Reads every row and walks every folder, so it runs
        once for an archive that needs it (``needs_full_scan``), beside a serving server:
        each decision is made under the archive's lock against the index as it is then, and
        files placed since the scan began are left to the journal. ``cancel`` stops it
        (the next start scans again)."""
        self._check_writable()
        report = RecoveryReport()
        # the rows a page at a time, the files a folder at a time: memory stays bounded by a
        # page and the largest folder, not by the archive (the in-window server runs this in
        # the window's process; a million rows held at once took ~500 MB there)
        after = 0
        while True:
            page = self.index.files_after(after)
            if not page:
                break
            after = page[-1][0]
            for _rowid, uid, rel, size in page:
                if cancel is not None and cancel.is_set():
                    return report
                self._reconcile_row(uid, rel, size, report)
        for dirpath, names in self._archive_folders(self.root):
            folder = Path(dirpath).relative_to(self.root).as_posix()
            folder = "" if folder == "." else folder
            indexed = self.index.paths_under(folder)
            for name in names:
                if cancel is not None and cancel.is_set():
                    return report
                rel = f"{folder}/{name}" if folder else name
                if rel not in indexed and not self._reconcile_file(Path(dirpath) / name, rel,
                                                                   report):
                    return report
        self._set_flag(_RECONCILED_FLAG)
        if any(v for k, v in vars(report).items() if k != "files_examined"):
            logger.warning("reconciliation: %s", report)
        return report

    def rebuild_index(self, folder: Path | None = None) -> int:
        """``dicomdesk index DIR``: re-read headers and rebuild rows.  ``None`` rebuilds the whole
        archive; a folder inside the archive re-indexes that subtree in place; a folder elsewhere
        is imported (copied).  Returns the number of instances indexed."""
        self._check_writable()
        root = self.root.resolve()
        target = root if folder is None else Path(folder).resolve()
        count = 0
        if target == root or root in target.parents:
            prefix = "" if target == root else target.relative_to(root).as_posix()
            self.index.clear(prefix)
            for full in self._archive_files(target, any_name=True):
                try:
                    ds = _read_header(full, self.max_inflated_size)
                    values = _header_values(ds)
                    self._validate(values, None, None)
                except ArchiveRefusal as exc:
                    logger.info("not indexed %s: %s", full, exc.reason)
                    continue
                path = self.root / full.relative_to(root)
                # Two files with one SOP Instance UID (a replacement whose old copy a crash
                # left, from an archive older than ``replaced_copy``): index the newer by
                # mtime — a replacement's file is written after the copy it replaces, as
                # ``_reconcile_file`` decides — and delete neither (an explicit rebuild
                # reports, it does not guess which file the user meant to drop).
                other = self.index.instance(_uid(values, "SOPInstanceUID"))
                if other is not None and _newer(self.root / other["path"], path):
                    logger.warning("%s and %s hold the same SOP Instance UID; indexed the newer "
                                   "(%s)", other["path"], path.relative_to(self.root).as_posix(),
                                   other["path"])
                    continue
                self._index_file(path, ds, full.stat().st_size, "", remove_replaced=False,
                                 values=values)
                count += 1
            if target == root:
                self._set_flag(_RECONCILED_FLAG)
            return count
        for dirpath, _dirs, filenames in os.walk(target):
            for name in filenames:
                try:
                    self.add_file(Path(dirpath) / name)
                except ArchiveRefusal as exc:
                    logger.debug("skipped %s: %s", name, exc.reason)
                    continue
                count += 1
        return count

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
                failed.append((sop_class, uid, FAILURE_NO_SUCH_OBJECT_INSTANCE))
            elif row["sop_class_uid"] != sop_class:
                failed.append((sop_class, uid, FAILURE_CLASS_INSTANCE_CONFLICT))
            else:
                try:
                    ok = (self.root / row["path"]).stat().st_size == row["file_size"]
                except OSError:
                    ok = False
                if ok:
                    committed.append((sop_class, uid))
                else:
                    failed.append((sop_class, uid, FAILURE_PROCESSING))
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
        with self._lock:  # no commit of the same study interleaves (see ``_place``)
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
        from ..net.sopclass.storage import read_part10_header
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
