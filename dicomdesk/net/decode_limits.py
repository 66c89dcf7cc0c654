"""Bounds on what a received in-memory data set may make us build (PS3.5 7.1, 7.5).

pydicom builds a ``Dataset`` per sequence item and an element object per data element: a
data set costs 17-68 times its wire size once decoded (a 28 MB storage-commitment request
with 400,000 references took 1.9 GB and 50 s of CPU). The wire size is bounded by the DIMSE
decoder; this module bounds the *decoded* size, before pydicom decodes anything:
``check_decode_limits`` walks the element and item headers of the raw bytes (skipping every
value, never building an object) and raises ``DataSetLimitExceeded`` as soon as the data set
holds more elements, more items in one sequence or deeper nesting than ``DecodeLimits``
allow. The walk stops at the first bound crossed, so refusing costs at most that many steps.

The walk reads the encoding the way pydicom's reader does (the VR check of each data set's
first element, UN or undefined-length sequences read as implicit VR sequences, PS3.5 6.2.2;
undefined-length values up to their Sequence Delimitation Item). Where it cannot follow the
bytes (they are malformed) it stops and leaves the verdict to pydicom — after one last
bound that cannot be dodged by malformed framing: the number of Item tags in the bytes.

Pure: ``struct`` and pydicom's data dictionary only.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from .records import FrozenRecord

_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
#: Explicit VRs with a 4-byte length after 2 reserved bytes (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})


class DecodeLimits(FrozenRecord):
    """What one received in-memory data set may hold (docs/security.md, "Memory bounds").

    Items count as elements. The defaults keep a decoded data set under ~100 MB and ~5 s
    of CPU while admitting every real identifier and a storage-commitment request of 10,000
    references (a large CT study; PS3.4 J.3 sets no bound, so an SCP chooses one).
    """

    _fields = ("max_elements", "max_items_per_sequence", "max_depth")

    def __init__(self, max_elements: int = 50_000, max_items_per_sequence: int = 10_000,
                 max_depth: int = 16) -> None:
        self._assign(max_elements, max_items_per_sequence, max_depth)

    def could_exceed(self, size: int) -> bool:
        """Whether ``size`` bytes could hold too many elements or items (each element or
        item header takes at least 8 bytes). Smaller data sets need no walk, so the common
        small identifier costs nothing; their nesting is bounded by pydicom's recursion
        (a deeper data set fails to decode and is answered as undecodable)."""
        return size >= 8 * min(self.max_elements, self.max_items_per_sequence)


#: The bounds the DIMSE decoder applies unless its owner sets others.
DEFAULT_DECODE_LIMITS = DecodeLimits()


class DataSetLimitExceeded(ValueError):
    """A data set holds more than ``DecodeLimits`` admit; the message says which bound."""


class _Unfollowable(Exception):
    """The walk cannot follow the bytes (malformed): pydicom decides."""


@lru_cache(maxsize=4096)
def _sequence_vr(tag: int) -> bool:
    """Whether the data dictionary says ``tag`` is a sequence (implicit VR, or UN, which
    pydicom replaces by the dictionary's VR)."""
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


class _Walk:
    def __init__(self, buf: bytes | bytearray, little: bool, limits: DecodeLimits):
        e = "<" if little else ">"
        self.buf = buf
        self.limits = limits
        self.elements = 0
        self.tag = struct.Struct(e + "HH").unpack_from
        self.ul = struct.Struct(e + "L").unpack_from
        self.us = struct.Struct(e + "H").unpack_from
        self.seq_end = struct.pack(e + "HHL", 0xFFFE, 0xE0DD, 0)

    def _count(self) -> None:
        self.elements += 1
        if self.elements > self.limits.max_elements:
            raise DataSetLimitExceeded(
                f"the data set holds more than {self.limits.max_elements} elements and items")

    def dataset(self, pos: int, end: int, implicit: bool, depth: int, in_item: bool) -> int:
        """Walk a data set's elements from ``pos``; the position after it (after the Item
        Delimitation Item when ``in_item`` is an undefined-length item)."""
        buf = self.buf
        if pos + 6 <= end and self.tag(buf, pos)[0] != 0xFFFE:
            vr = buf[pos + 4:pos + 6]  # pydicom's check: the first element decides (filereader)
            implicit = not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)
        while pos < end:
            if pos + 8 > end:
                raise _Unfollowable
            group, elem = self.tag(buf, pos)
            tag = (group << 16) | elem
            if group == 0xFFFE:
                if tag == _ITEM_END and in_item:
                    return pos + 8
                raise _Unfollowable
            self._count()
            if implicit:
                vr, length, pos = None, self.ul(buf, pos + 4)[0], pos + 8
            else:
                vr = bytes(buf[pos + 4:pos + 6])
                if vr in _LONG_VRS:
                    if pos + 12 > end:
                        raise _Unfollowable
                    length, pos = self.ul(buf, pos + 8)[0], pos + 12
                elif vr.isalpha() and vr.isupper():
                    length, pos = self.us(buf, pos + 6)[0], pos + 8
                else:
                    raise _Unfollowable
            if length == _UNDEFINED:
                if tag != _PIXEL_DATA and (vr in (b"SQ", b"UN") or (vr is None and (
                        _sequence_vr(tag) or self._starts_with_item(pos, end)))):
                    pos = self.sequence(pos, end, implicit or vr == b"UN", depth + 1, None)
                else:  # an undefined-length value (encapsulated pixel data): up to SQ end
                    found = buf.find(self.seq_end, pos, end)
                    if found < 0:
                        raise _Unfollowable
                    pos = found + 8
                continue
            if pos + length > end:
                raise _Unfollowable
            if length and (vr == b"SQ" or (vr in (None, b"UN") and (
                    _sequence_vr(tag) or self._starts_with_item(pos, pos + length)))):
                try:
                    self.sequence(pos, pos + length, implicit or vr == b"UN", depth + 1, length)
                except _Unfollowable:
                    if vr == b"SQ":
                        raise
                    # a UN or implicit value that only looked like a sequence: bytes to pydicom
            pos += length
        if in_item:
            raise _Unfollowable
        return pos

    def _starts_with_item(self, pos: int, end: int) -> bool:
        return pos + 4 <= end and self.tag(self.buf, pos) == (0xFFFE, 0xE000)

    def sequence(self, pos: int, end: int, implicit: bool, depth: int, length: int | None) -> int:
        """Walk the items of a sequence at ``pos`` (``length`` None: undefined length, up to
        its Sequence Delimitation Item); the position after it."""
        if depth > self.limits.max_depth:
            raise DataSetLimitExceeded(f"sequences nested deeper than {self.limits.max_depth} levels")
        buf = self.buf
        items = 0
        while length is None or pos < end:
            if pos + 8 > end:
                raise _Unfollowable
            group, elem = self.tag(buf, pos)
            tag = (group << 16) | elem
            item_length = self.ul(buf, pos + 4)[0]
            pos += 8
            if tag == _SEQ_END and length is None:
                return pos
            if tag != _ITEM:
                raise _Unfollowable
            items += 1
            if items > self.limits.max_items_per_sequence:
                raise DataSetLimitExceeded(
                    f"a sequence holds more than {self.limits.max_items_per_sequence} items")
            self._count()
            if item_length == _UNDEFINED:
                pos = self.dataset(pos, end, implicit, depth, True)
            else:
                if pos + item_length > end:
                    raise _Unfollowable
                self.dataset(pos, pos + item_length, implicit, depth, False)
                pos += item_length
        return pos


def check_decode_limits(raw: bytes | bytearray | memoryview, implicit: bool, little: bool,
                        limits: DecodeLimits = DEFAULT_DECODE_LIMITS) -> None:
    """Raise ``DataSetLimitExceeded`` when the data set ``raw`` (already inflated, in the
    given encoding) holds more than ``limits`` admit; None otherwise (or when the bytes are
    malformed in a way only pydicom can judge — then their Item tags are bounded). A caller
    may skip data sets too small to exceed them (``DecodeLimits.could_exceed``)."""
    if isinstance(raw, memoryview):
        raw = raw.tobytes()
    walk = _Walk(raw, little, limits)
    try:
        walk.dataset(0, len(raw), implicit, 0, False)
    except _Unfollowable:
        item = struct.pack("<HH" if little else ">HH", 0xFFFE, 0xE000)
        if raw.count(item) > limits.max_items_per_sequence:
            raise DataSetLimitExceeded(
                f"the data set holds more than {limits.max_items_per_sequence} items") from None
    except RecursionError:
        raise DataSetLimitExceeded("sequences nested too deeply") from None
