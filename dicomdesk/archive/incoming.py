"""Incoming files: the temp files received objects are written into, in ``root/.incoming/``.

The network layer writes each received Part-10 file into a temp file on the archive's own file
system (``IncomingFileIO``: it keeps the file's first bytes, so the header is read without
reading the file back); the archive then checks, fsyncs and renames it into place
(``store.py``), or discards it. Temp files are created ahead of need, without a name
(``O_TMPFILE``, ``_TempFilePool``), and named only when taken: a crash leaves at most the named
ones of objects that were arriving, never acknowledged, which ``remove_leftovers`` deletes at
the next start.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..net.part10 import SCAN_BYTES
from .errors import ArchiveError
from .headers import ScannedHeader, scan_bytes

logger = logging.getLogger(__name__)

#: The folder of temp files, under the archive's root.
INCOMING_DIR = ".incoming"


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



class IncomingFileIO(io.FileIO):
    """The temp file a received object is written to, keeping its first bytes in memory.

    The archive indexes a few header elements of every object it receives; reading them
    back from the file cost an open, a read and a close per object. Writes are appends (the
    network layer writes the meta, then the data set as it arrives), so the first
    ``HEAD_BYTES`` written are the file's start; a write after a ``seek`` ends that promise
    and the header is read from the file as before. Unbuffered: fragments are large, and
    every byte goes straight to the kernel as it did through a buffer of 8 KiB.
    """

    HEAD_BYTES = SCAN_BYTES + 8192  # the meta plus what the header scan reads after it

    def __init__(self, name: str, fd: int) -> None:
        super().__init__(name, "w+", opener=lambda _path, _flags: fd)
        self.head = bytearray()
        self.written = 0
        self._appending = True
        self._seeked = False
        self._early: ScannedHeader | None = None

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
                self._early = scan_bytes(self.head, False)
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

    def header(self) -> ScannedHeader | None:
        """The header elements from ``head``, or None (then read them from the file)."""
        if not self._appending:
            return None
        if self._early is not None:
            return self._early
        return scan_bytes(self.head, self.written == len(self.head))


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


class IncomingFolder:
    """The ``.incoming`` folder: hands out temp files, takes back those not kept."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pool: _TempFilePool | None = None

    def open(self) -> IncomingFile:
        """A new temp file for one received object (same file system as the archive)."""
        if self._pool is None:
            self._pool = _TempFilePool(self.directory)
        taken = self._pool.take()
        if taken is None:
            fd, name = tempfile.mkstemp(prefix="in-", suffix=".part", dir=self.directory)
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

    def discard(self, incoming: IncomingFile | BinaryIO) -> None:
        """An aborted transfer: the temp file goes away."""
        incoming = self.as_incoming(incoming)
        if not incoming.fp.closed:
            try:
                incoming.fp.close()
            except OSError:  # e.g. ENOSPC flushing what is being thrown away
                pass
        try:
            incoming.path.unlink()
        except FileNotFoundError:
            pass

    def as_incoming(self, obj: IncomingFile | BinaryIO) -> IncomingFile:
        """Accept the file object itself (what ``get_file`` handed to the network layer)."""
        if isinstance(obj, IncomingFile):
            return obj
        path = Path(getattr(obj, "name", ""))
        if path.parent != self.directory:
            raise ArchiveError(f"{path} is not an incoming file of this archive")
        return IncomingFile(path, obj)

    def remove_leftovers(self) -> int:
        """Delete every temp file (at start: objects a crash cut short, never acknowledged)."""
        removed = 0
        for leftover in self.directory.iterdir():
            if leftover.is_file():
                leftover.unlink()
                removed += 1
        return removed

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
