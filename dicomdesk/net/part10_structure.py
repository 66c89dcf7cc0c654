"""The structure check of a data set (PS3.5 7.1, 7.5): does every value fit in the file?

A walk of element headers that seeks over values (a few reads per element, whatever the
file's size): a storage SCU runs it before it sends a file (a truncated file would make the
peer abort), an archive before it acknowledges a received one. ``part10`` reads headers;
this module checks the rest.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from . import uids
from .inflate import InflateError, InflateLimitExceeded, InflatingReader
from .part10 import (_ITEM, _ITEM_END, _LONG_VRS, _META_TS, _SEQ_END, _UNDEFINED, Part10Error,
                     Part10Header, bare_encoding, encoding_of, read_file_meta)


class _Walker:
    """Walks a data set's element headers, seeking over values (PS3.5 7.1, 7.5).

    Reading only tags and lengths shows whether every value fits in the file, without
    reading any value: the check costs a few reads per element, whatever the file's size.
    """

    def __init__(self, fp: BinaryIO, end: int, implicit: bool, little: bool):
        self.fp, self.end, self.implicit = fp, end, implicit
        self.e = "<" if little else ">"

    def _header(self) -> tuple[int, bytes | None, int]:
        raw = self.fp.read(8)
        if len(raw) < 8:
            raise Part10Error(f"truncated data set: element header cut at byte {self.fp.tell()}")
        group, elem = struct.unpack(self.e + "HH", raw[:4])
        tag = (group << 16) | elem
        if group == 0xFFFE or self.implicit:
            return tag, None, struct.unpack(self.e + "L", raw[4:])[0]
        vr = raw[4:6]
        if not vr.isalpha():
            raise Part10Error(f"element ({group:04X},{elem:04X}) has no VR although the transfer "
                              "syntax is explicit VR (the data set is encoded in implicit VR)")
        if vr in _LONG_VRS:
            more = self.fp.read(4)
            if len(more) < 4:
                raise Part10Error("truncated data set: element header cut")
            return tag, vr, struct.unpack(self.e + "L", more)[0]
        return tag, vr, struct.unpack(self.e + "H", raw[6:])[0]

    def _more(self) -> bool:
        return self.fp.tell() < self.end

    def _skip(self, tag: int, length: int) -> None:
        target = self.fp.tell() + length
        if target > self.end:
            raise Part10Error(f"truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs "
                              f"{length} bytes, the file ends {target - self.end} bytes too early")
        self.fp.seek(target)

    def elements(self, stop: int | None = None, depth: int = 0) -> None:
        """Walk elements until the end (or the delimiter ``stop``)."""
        if depth > 32:
            raise Part10Error("sequences nested too deeply")
        while self._more():
            tag, vr, length = self._header()
            if stop is not None and tag == stop:
                return
            if length != _UNDEFINED:
                self._skip(tag, length)
            elif vr == b"SQ" or vr == b"UN" or vr is None or tag == 0x7FE00010:
                self._items(depth)
            else:
                raise Part10Error(f"undefined length on a {vr.decode('ascii', 'replace')} element")
        if stop is not None:
            raise Part10Error("truncated data set: a sequence or item is not closed")

    def _items(self, depth: int) -> None:
        while True:
            tag, _, length = self._header()
            if tag == _SEQ_END:
                return
            if tag != _ITEM:
                raise Part10Error(f"unexpected ({tag >> 16:04X},{tag & 0xFFFF:04X}) in a sequence")
            if length == _UNDEFINED:
                self.elements(_ITEM_END, depth + 1)
            else:
                self._skip(tag, length)


class _InflatedWalker(_Walker):
    """``_Walker`` over an ``InflatingReader``: forward only, the end is the stream's end."""

    def __init__(self, reader: InflatingReader):
        super().__init__(reader, 0, False, True)  # type: ignore[arg-type]

    def _more(self) -> bool:
        return not self.fp.at_end()

    def _skip(self, tag: int, length: int) -> None:
        skipped = self.fp.skip(length)
        if skipped < length:
            raise Part10Error(f"truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs "
                              f"{length} bytes, the data set ends {length - skipped} bytes too early")


def check_deflated_structure(fp: BinaryIO, data_offset: int, max_inflated_size: int) -> int:
    """The structure check of a deflated data set (PS3.5 A.5), done while it inflates.

    The stream is inflated piece by piece (bounded memory, whatever its size) and its element
    headers walked as ``check_structure`` walks a plain file's. Returns the inflated size.
    Raises ``InflateLimitExceeded`` as soon as more than ``max_inflated_size`` bytes come out
    (a deflate bomb is refused after inflating only that much), ``Part10Error`` for a corrupt
    or truncated stream or a value running past the data set's end.
    """
    fp.seek(data_offset)
    reader = InflatingReader(fp, max_inflated_size)
    try:
        _InflatedWalker(reader).elements()
    except InflateLimitExceeded:
        raise
    except InflateError as exc:
        raise Part10Error(str(exc)) from exc
    return reader.tell()


def check_structure(path: str | os.PathLike[str], header: Part10Header) -> None:
    """Raise ``Part10Error`` when a value runs past the end of the file (a truncated file).

    Deflated data sets are not checked (their structure is only visible once inflated).
    """
    if header.transfer_syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return
    with open(path, "rb") as fp:
        check_structure_of(fp, header)


def check_structure_of(fp: BinaryIO, header: Part10Header, start: int | None = None) -> None:
    """``check_structure`` on a file already open (binary, seekable); moves its position.

    ``start`` (default: the data set's start) lets a caller that has already walked the
    first elements (``Part10Header.stop_offset``) check only the rest.
    """
    if header.transfer_syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return
    end = fp.seek(0, os.SEEK_END)
    fp.seek(header.data_offset if start is None else start)
    implicit, little = encoding_of(header.transfer_syntax)
    _Walker(fp, end, implicit, little).elements()


def check_file_structure(fp: BinaryIO, *, transfer_syntax: str | None = None,
                         data_offset: int | None = None, start: int | None = None) -> None:
    """``check_structure_of`` for a received or imported file (binary, seekable).

    The receiving side of the sender's check (one walker for both): an archive runs it
    before it acknowledges a C-STORE, so a data set that ends inside an element, an item
    or a sequence is refused instead of filed as complete. Without ``transfer_syntax`` and
    ``data_offset`` the File Meta Information says them (a bare data set: PS3.10's
    Implicit VR Little Endian, or what ``bare_encoding`` recognises). Raises ``Part10Error``.
    """
    if transfer_syntax is None or data_offset is None:
        meta = read_file_meta(fp)
        if meta is None:
            transfer_syntax, data_offset = bare_encoding(fp), 0
        else:
            values, data_offset = meta
            transfer_syntax = values.get(_META_TS, "")
            if not transfer_syntax and fp.seek(0, os.SEEK_END) > data_offset:
                transfer_syntax = bare_encoding(fp, data_offset)  # a meta without its TS
    check_structure_of(fp, Part10Header(transfer_syntax, "", "", data_offset), start)

