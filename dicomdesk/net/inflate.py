"""Bounded inflation of deflated data sets (PS3.5 A.5, Deflated Explicit VR Little Endian).

A deflated data set is a raw RFC 1951 stream; a few MB of it can inflate to gigabytes (a
"deflate bomb": 1 MB of wire bytes, 1 GiB of zeros). Nothing here inflates more than it is
asked for: ``inflate_bytes`` refuses a stream whose output passes a limit *while* inflating
(``zlib.decompressobj`` with ``max_length``), and ``InflatingReader`` hands out the inflated
bytes of a file piece by piece, with a bounded buffer, so a header can be read, or the whole
structure walked, without the inflated data set ever being in memory.

Pure: zlib and the file object it is given, no sockets, no time.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

#: The default bound on a deflated data set's inflated size (``--max-inflated-size``).
#: Real deflated objects (structured reports, small images) inflate to a few MB; a bound far
#: above them still keeps the CPU a bomb costs to a fraction of a second per object.
DEFAULT_MAX_INFLATED_SIZE = 256 * 1024 * 1024

#: Deflated bytes read from a file per step, and inflated bytes produced per step.
_CHUNK = 64 * 1024


class InflateError(ValueError):
    """The deflated stream is corrupt or ends before its last block (a truncated object)."""


class InflateLimitExceeded(InflateError):
    """The stream inflates to more than ``limit`` bytes; inflation stopped at the limit."""

    def __init__(self, limit: int):
        super().__init__(f"the deflated data set inflates to more than {limit} bytes")
        self.limit = limit


def inflate_bytes(raw: bytes | bytearray | memoryview, limit: int) -> bytes:
    """The inflated bytes of a whole raw deflate stream held in memory, at most ``limit``.

    Raises ``InflateLimitExceeded`` as soon as the output would pass ``limit`` (no more than
    ``limit + 1`` bytes are ever produced) and ``InflateError`` for a corrupt stream.
    Trailing bytes after the stream's end are tolerated (PS3.5 A.5 pads to an even length).
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
        if len(out) <= limit and not inflater.eof and not inflater.unconsumed_tail:
            out += inflater.flush()
    except zlib.error as exc:
        raise InflateError(f"corrupt deflated data set: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise InflateLimitExceeded(limit)
    return out


class InflatingReader:
    """The inflated bytes of the raw deflate stream that starts at ``fp``'s position.

    ``read(n)`` returns exactly ``n`` bytes unless the stream ends first; ``skip(n)``
    discards; ``tell()`` counts inflated bytes; ``at_end()`` says whether the stream is
    exhausted. At most ``limit`` inflated bytes are produced: past them ``InflateLimitExceeded``
    is raised. The buffer holds at most one inflated step (64 KiB) beyond what a ``read`` asks.
    A stream that ends (end of file) before its final block raises ``InflateError``.
    """

    def __init__(self, fp: BinaryIO, limit: int):
        self._fp = fp
        self._limit = limit
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._pending = b""  # deflated input not consumed yet
        self._buffer = bytearray()
        self._produced = 0  # inflated bytes produced so far
        self._position = 0  # inflated bytes handed out (read or skipped)
        self._done = False

    def _fill(self) -> bool:
        """Inflate one more step into the buffer; False when the stream has ended."""
        while not self._done:
            if not self._pending:
                self._pending = self._fp.read(_CHUNK)
                if not self._pending:
                    if self._inflater.eof:
                        self._done = True
                        return False
                    try:
                        tail = self._inflater.flush()
                    except zlib.error as exc:
                        raise InflateError(f"corrupt deflated data set: {exc}") from exc
                    self._done = True
                    if tail:
                        self._take(tail)
                        return True
                    raise InflateError("the deflated data set ends before its last block "
                                       "(the object is truncated)")
            if self._inflater.eof:
                self._done = True  # bytes after the stream's end: PS3.5 A.5 padding
                return False
            try:
                out = self._inflater.decompress(self._pending, _CHUNK)
            except zlib.error as exc:
                raise InflateError(f"corrupt deflated data set: {exc}") from exc
            self._pending = self._inflater.unconsumed_tail
            if self._inflater.eof:
                self._pending = b""
                self._done = True
            if out:
                self._take(out)
                return True
        return False

    def _take(self, out: bytes) -> None:
        self._produced += len(out)
        if self._produced > self._limit:
            raise InflateLimitExceeded(self._limit)
        self._buffer += out

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size and self._fill():
            pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._position += len(data)
        return data

    def skip(self, size: int) -> int:
        """Discard ``size`` inflated bytes (fewer only when the stream ends); the count skipped."""
        skipped = 0
        while True:
            take = min(size - skipped, len(self._buffer))
            del self._buffer[:take]
            skipped += take
            if skipped >= size or not self._fill():
                break
        self._position += skipped
        return skipped

    def tell(self) -> int:
        return self._position

    def at_end(self) -> bool:
        return not self._buffer and not self._fill()


def inflated_head(fp: BinaryIO, size: int, limit: int) -> bytes:
    """The first ``size`` inflated bytes of the stream at ``fp``'s position (fewer when it is
    shorter); the rest of the stream is not inflated."""
    return InflatingReader(fp, limit).read(size)
