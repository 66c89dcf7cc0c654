"""The archive's journal of acknowledged objects, and the reserve that lets a full disk index them.

Why a journal: a received object's index row is written just after its C-STORE response, by
the index's helper thread, several rows per transaction (``write_behind.py``): the sender
does not wait for SQLite. So between the response and that transaction, the file on disk is
the only record of an acknowledged object. Before the response, the archive hard-links the
complete, fsynced temp file into ``.journal/`` under a sequence number and fsyncs that one
folder; once the object's row is committed (and the study/series folders it was renamed into
are fsynced), the link is removed. A crash in between leaves the link, and ``recover`` — at
the next start — indexes exactly the objects the journal names: recovery is bounded by the
objects in flight (a few per association), never by the size of the archive. The link is
the same inode as the placed file (no copy, no data written twice); it also survives a
power loss that forgets the rename into the study folder (``recover`` links it back).

Why a reserve: on a full disk an object's file may still fit while SQLite cannot grow its
write-ahead log, so the row fails after the response (or the index cannot even be opened at
the next start). ``Reserve`` keeps a small preallocated file in the journal folder; freeing
it gives SQLite room to write the rows the journal names, and while it is freed the archive
refuses new objects (0xA700) until the space is back.

Pure file-system work, no SQLite: the archive (``placement.py``, ``recovery.py``) decides when
to call each step.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from ..durable import fsync_directory

logger = logging.getLogger(__name__)

JOURNAL_DIR = ".journal"
ENTRY_SUFFIX = ".ack"
RESERVE_NAME = "reserve"
#: The reserve's size: rows for thousands of objects (an index row with its WAL frames costs
#: a few KiB), but never more than 1/64 of a small file system.
RESERVE_BYTES = 4 << 20


class Journal:
    """``.journal/<sequence>.ack``: hard links of acknowledged objects not yet indexed for sure.

    Sequence numbers follow the order of the renames (callers add entries under their own
    lock), so a replay sees replacements of one SOP Instance in the order they arrived.
    """

    def __init__(self, directory: Path, *, durable: bool) -> None:
        self.directory = Path(directory)
        self.durable = durable
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only, as the archive
        self._text = str(self.directory)
        self._lock = threading.Lock()
        entries = self.entries()
        self._last = int(entries[-1].name[:-len(ENTRY_SUFFIX)]) if entries else 0

    def entries(self) -> list[Path]:
        """Entries in arrival order (their names are zero-padded sequence numbers)."""
        return sorted(p for p in self.directory.iterdir()
                      if p.name.endswith(ENTRY_SUFFIX) and p.name[:-len(ENTRY_SUFFIX)].isdigit())

    def add(self, source: str) -> str:
        """Link ``source`` (a complete file) as the next entry; returns the entry's path.

        Time-based numbers keep the order across restarts and processes; a number is never
        reused within this journal (``max`` with the last one)."""
        while True:
            with self._lock:
                self._last = max(time.time_ns(), self._last + 1)
                name = os.path.join(self._text, f"{self._last:020d}{ENTRY_SUFFIX}")
            try:
                os.link(source, name)
                return name
            except FileExistsError:  # another process on the same archive took the number
                continue

    def sync(self) -> None:
        """Make the entries added so far durable (one fsync of the folder)."""
        if self.durable:
            fsync_directory(self.directory)

    def remove(self, entries: Iterable[str | Path]) -> None:
        for entry in entries:
            try:
                os.unlink(entry)
            except FileNotFoundError:
                pass


class Reserve:
    """A preallocated file whose space is given back to the index when the disk is full."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:  # the journal is made later
            folder = folder.parent
        try:
            total = shutil.disk_usage(folder).total
        except OSError:
            total = RESERVE_BYTES * 64
        self.size = max(4096, min(RESERVE_BYTES, total // 64) // 4096 * 4096)

    def room(self, held: bool | None = None) -> bool:
        """Whether the disk has room beyond the reserve (and for it, when it is not held):
        below that, new objects are refused before the index could run out of space.
        ``held`` when the caller knows (one ``statvfs`` per received object, no ``stat``)."""
        return self.headroom(held) >= 0

    def headroom(self, held: bool | None = None) -> int:
        """Free bytes beyond what ``room`` asks for (negative: no room; -1 when the file
        system cannot be asked)."""
        try:
            free = os.statvfs(self.path.parent)
        except OSError:
            return -1
        if held is None:
            held = self.held
        return free.f_bavail * free.f_frsize - (self.size if held else 2 * self.size)

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Create the reserve if it is missing; False when the disk has no room for it."""
        if self.held:
            return True
        size = self.size
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            logger.warning("cannot create the disk reserve %s: %s", self.path, exc.strerror)
            return False
        try:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.ftruncate(fd, 0)  # no fallocate here (some file systems): write it
                for _ in range(size // 65536):
                    os.write(fd, bytes(65536))
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                logger.warning("cannot create the disk reserve %s: %s", self.path, exc.strerror)
            os.close(fd)
            fd = -1
            self.release()
            return False
        finally:
            if fd >= 0:
                os.close(fd)

    def release(self) -> bool:
        """Give the space back; True if there was a reserve to give."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        logger.warning("disk full: the archive's reserve (%s) is released for the index", self.path)
        return True
