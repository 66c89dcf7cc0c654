"""Writing one batch of PDUs to an association's socket with as few copies and syscalls as
the kernel allows (the DUL's write path; PS3.8 9.3.5 says what is written, not how).

A batch is a list of parts: buffers (PDU headers, command and data fragments),
``fragmentation.FileRegion`` values (a PDV whose bytes stay in a file) and
``pdu.PDataFileRun`` runs (many PDUs of one file region laid out at once). Buffers leave in
gathered ``sendmsg`` calls (at most IOV_MAX buffers each); a file region of SENDFILE_MIN
bytes or more goes with ``os.sendfile`` from the page cache, after its headers sent with
MSG_MORE so the PDU still leaves as full segments; shorter regions and runs of short PDUs
are read with one ``pread``/``preadv`` into the batch's one ``sendmsg``. A TLS socket cannot
gather or sendfile: it gets the bytes joined.

On a non-blocking socket a full send window is waited for with ``poll``, never longer than
the timeout given (then ``socket.timeout``).
"""

from __future__ import annotations

import math
import os
import select
import socket
from typing import Any

from . import pdu

#: File regions at least this long go with ``os.sendfile``; shorter ones (16 KiB PDUs to a
#: DCMTK peer) are read with one ``pread`` per run and join the batch's one ``sendmsg``.
SENDFILE_MIN = 64 * 1024
#: sendmsg takes at most IOV_MAX (1024 on Linux) buffers per call.
IOV_MAX = 1024


def wait_io(sock: socket.socket, writing: bool, timeout: float | None) -> bool:
    """Wait until ``sock`` can be read (or written); False when ``timeout`` s pass first."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT if writing else select.POLLIN)
    return bool(poller.poll(None if timeout is None else math.ceil(timeout * 1000)))


def sendmsg_all(sock: socket.socket, parts: list) -> None:
    """Write all buffers, gathered, with as few syscalls as the kernel allows."""
    parts = _as_buffers(parts)
    if len(parts) == 1:
        sock.sendall(parts[0])
        return
    if not hasattr(sock, "sendmsg") or getattr(sock, "context", None) is not None:
        # TLS sockets cannot gather: one record per PDU instead.
        sock.sendall(b"".join(parts))
        return
    _sendmsg_views(sock, [memoryview(p) for p in parts if len(p)], None, 0)


_BUFFERS = (bytes, bytearray, memoryview)
#: Sending file data with ``os.sendfile`` needs MSG_MORE: the PDU's headers, written first,
#: must wait in the kernel for the file bytes (one segment, no delayed-ACK stall).
_CAN_SENDFILE = hasattr(os, "sendfile") and hasattr(socket, "MSG_MORE")


_MSG_MORE = getattr(socket, "MSG_MORE", 0)


def _inline_short_regions(parts: list) -> list:
    """Parts with every file region shorter than SENDFILE_MIN read into memory: a run of
    adjacent regions of one file (a message's 16 KiB fragments) with one ``pread``, so the
    whole batch leaves in one ``sendmsg`` instead of a ``sendfile`` and a write per PDU."""
    out: list = []
    index, count = 0, len(parts)
    while index < count:
        part = parts[index]
        if isinstance(part, _BUFFERS) or type(part) is pdu.PDataFileRun or part.length >= SENDFILE_MIN:
            out.append(part)
            index += 1
            continue
        # a run of short regions of one source, each starting where the previous ended
        # (the buffers between them, PDU headers, stay in place)
        last = index
        end = part.offset + part.length
        probe = index + 1
        while probe < count:
            other = parts[probe]
            if isinstance(other, _BUFFERS):
                probe += 1
                continue
            if type(other) is pdu.PDataFileRun or other.source is not part.source \
                    or other.offset != end or other.length >= SENDFILE_MIN:
                break
            last = probe
            end = other.offset + other.length
            probe += 1
        data = memoryview(part.source.read_region(part.offset, end - part.offset))
        position = 0
        for i in range(index, last + 1):
            item = parts[i]
            if not isinstance(item, _BUFFERS):
                if item.head:
                    out.append(item.head)
                out.append(data[position:position + item.length])
                position += item.length
            else:
                out.append(item)
        index = last + 1
    return out


def _as_buffers(parts: list) -> list:
    """Parts with every file region (``fragmentation.FileRegion``) read into bytes."""
    return [p if isinstance(p, _BUFFERS) else bytes(p) for p in parts]


class RunScratch:
    """One association's buffer for runs of short P-DATA-TF PDUs (``pdu.PDataFileRun``):
    headers packed and file bytes read (``preadv``) into it, then written from it. Kept
    between batches, so a send of many files faults in no new pages per file; it holds at
    most one batch (``BATCH_BYTES`` and its headers) and is let go when the association ends.
    A second run in the same write gets a buffer of its own (the first is not sent yet)."""

    __slots__ = ("_buffer", "_taken")

    def __init__(self) -> None:
        self._buffer: bytearray | None = None
        self._taken = False

    def take(self, size: int) -> bytearray:
        if self._taken:
            return bytearray(size)
        self._taken = True
        if self._buffer is None or len(self._buffer) < size:
            self._buffer = None  # never resized: a view of the old one may still be alive
            self._buffer = bytearray(size)
        return self._buffer

    def done(self) -> None:
        self._taken = False

    def release(self) -> None:
        self._buffer = None
        self._taken = False


def _read_run(run: Any, scratch: RunScratch | None) -> memoryview:
    """The wire bytes of a run of short PDUs: headers packed, the file region read around
    them with ``preadv`` (IOV_MAX views a call), all in one buffer for one write."""
    size = len(run)
    buffer = scratch.take(size) if scratch is not None else bytearray(size)
    slots = run.layout(buffer)
    fd, offset, left = run.source.fileno(), run.offset, run.length
    start = 0
    while left:
        got = _preadv(fd, slots[start:start + IOV_MAX], offset)
        if not got:  # the PDU lengths are fixed already: the stream cannot go on
            raise OSError(f"the file ended {left} bytes early while sending")
        offset += got
        left -= got
        start = _consume(slots, start, got)
        while start < len(slots) and not len(slots[start]):  # empty fragment views
            start += 1
    return memoryview(buffer)[:size]


def _consume(views: list, start: int, count: int) -> int:
    """Index of the first view not yet done after ``count`` more bytes of ``views[start:]``
    went through (a syscall that took part of a view leaves the rest of it in its place)."""
    total = len(views)
    while count and start < total:
        first = views[start]
        if count >= len(first):
            count -= len(first)
            start += 1
        else:
            views[start] = first[count:]
            count = 0
    return start


def _preadv(fd: int, views: list, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, views, offset)
    total = 0
    for view in views:  # no preadv (old macOS): one pread per view
        data = os.pread(fd, len(view), offset + total)
        view[:len(data)] = data
        total += len(data)
        if len(data) < len(view):
            break
    return total


class _SentRegion:
    """A PDU's headers and the file region after them, for ``sendfile`` (the shape of
    ``fragmentation.FileRegion`` the writer uses)."""

    __slots__ = ("head", "source", "offset", "length")

    def __init__(self, head: bytes, source: Any, offset: int, length: int) -> None:
        self.head, self.source, self.offset, self.length = head, source, offset, length

    def fileno(self) -> int:
        return self.source.fileno()


def _run_parts(run: Any, scratch: RunScratch | None) -> list:
    """A run as the writer's parts: one laid-out buffer when its fragments are short (one
    ``preadv``, one write for the batch), else each PDU's header and its file region for
    ``sendfile`` (a short last fragment read and written with the next headers)."""
    if run.fragment < SENDFILE_MIN:
        return [_read_run(run, scratch)]
    parts: list = []
    for head, offset, length in run.pdus():
        if length >= SENDFILE_MIN:
            parts.append(_SentRegion(head, run.source, offset, length))
        else:
            parts.append(head)
            if length:
                parts.append(run.source.read_region(offset, length))
    return parts


def send_parts_nonblocking(sock: socket.socket, parts: list, timeout: float | None,
                            scratch: RunScratch | None = None) -> None:
    """``sendmsg_all`` on a non-blocking socket, waiting at most ``timeout`` s whenever the
    peer's window is full (then ``socket.timeout``).

    A file region's bytes go from the page cache to the socket (``os.sendfile``); the
    headers before them are written with MSG_MORE, so the PDU still leaves as one stream
    of full segments. A run of short PDUs (``pdu.PDataFileRun``) is laid out in
    ``scratch`` and joins the batch's one ``sendmsg``.
    """
    try:
        if not _CAN_SENDFILE:
            parts = _as_buffers(parts)
        else:
            if any(type(p) is pdu.PDataFileRun for p in parts):
                expanded: list = []
                for part in parts:
                    if type(part) is pdu.PDataFileRun:
                        expanded.extend(_run_parts(part, scratch))
                    else:
                        expanded.append(part)
                parts = expanded
            parts = _inline_short_regions(parts)
        _send_expanded(sock, parts, timeout)
    finally:
        if scratch is not None:
            scratch.done()


def _send_expanded(sock: socket.socket, parts: list, timeout: float | None) -> None:
    pending: list[memoryview] = []
    for part in parts:
        if isinstance(part, _BUFFERS):
            if len(part):
                pending.append(memoryview(part))
            continue
        if part.head:
            pending.append(memoryview(part.head))
        if part.length:
            _sendmsg_views(sock, pending, timeout, socket.MSG_MORE)
            pending = []
            _sendfile_all(sock, part.fileno(), part.offset, part.length, timeout)
    _sendmsg_views(sock, pending, timeout, 0)


def _sendmsg_views(sock: socket.socket, views: list[memoryview], timeout: float | None,
                   flags: int) -> None:
    """Gathered writes of ``views`` until all are sent. On a non-blocking socket a full
    window is waited for (at most ``timeout`` s); a socket with a timeout waits itself."""
    start, total = 0, len(views)
    while start < total:
        more = start + IOV_MAX < total
        try:
            sent = sock.sendmsg(views[start:start + IOV_MAX], [], flags | _MSG_MORE if more else flags)
        except BlockingIOError:
            if not wait_io(sock, True, timeout):
                raise socket.timeout("the peer takes no data") from None
            continue
        start = _consume(views, start, sent)


def _sendfile_all(sock: socket.socket, fd: int, offset: int, count: int, timeout: float | None) -> None:
    out = sock.fileno()
    while count:
        try:
            sent = os.sendfile(out, fd, offset, count)
        except BlockingIOError:
            if not wait_io(sock, True, timeout):
                raise socket.timeout("the peer takes no data") from None
            continue
        if not sent:  # the PDU's length is on the wire already: the stream cannot go on
            raise OSError(f"the file ended {count} bytes early while sending")
        offset += sent
        count -= sent
