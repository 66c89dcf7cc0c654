"""A narrow fast codec for small flat data sets: C-FIND identifiers (PS3.4 C.4.1.1.3).

A 10,000-match C-FIND moves 10,000 identifiers of ten-odd short text elements; pydicom's
general reader and writer, paid once per identifier, cap a pure-Python SCU or SCP far below the
wire (figures in docs/internals.md, "Timings behind design choices"). Data sets stay pydicom ``Dataset`` objects; this module only does the byte
work for the plain cases and answers ``None`` for anything else, so the caller uses pydicom:

- ``decode_identifier`` walks the top-level elements of an Implicit/Explicit VR Little Endian
  data set (PS3.5 7.1.2, 7.1.3) into pydicom ``RawDataElement`` values — what pydicom's own
  reader produces, converted lazily by pydicom on access — with the structural checks a
  receiver needs (tags ascending, defined lengths inside the buffer, a known value
  representation whose conversion cannot fail on the length).
- ``encode_identifier`` writes a Dataset of text and integer elements (PS3.5 6.2 value
  representations, padded to even length, 7.1) and copies canonical raw values as they are.
- ``raw_text_element`` builds a canonical raw element from a text value, so a producer (the
  archive's C-FIND responses) can build a Dataset without pydicom's per-element validation.

Every accepted case gives exactly pydicom's bytes / pydicom's Dataset: tests/net/
test_dataset_codec.py checks that over generated identifiers. Sequences, binary VRs, big
endian, deflate, private or unknown tags (implicit VR), ambiguous VRs and text in character
sets other than the default repertoire, ISO_IR 100 and ISO_IR 192 fall back to pydicom.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

logger = logging.getLogger(__name__)

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

#: Text VRs (PS3.5 6.2); UC, UR and UT have a 4-byte length in explicit VR (PS3.5 7.1.2).
_TEXT_VRS = frozenset(("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"))
_LONG_TEXT_VRS = frozenset(("UC", "UR", "UT"))
#: Text VRs whose values use the Specific Character Set (PS3.5 6.1.2.3); the rest are ASCII.
_CHARSET_VRS = frozenset(("SH", "LO", "LT", "ST", "UT", "UC", "PN"))
#: Text VRs whose value multiplicity is always 1: a backslash is part of the value (PS3.5 6.4).
_SINGLE_VALUE_VRS = frozenset(("LT", "ST", "UT", "UR"))
#: Binary integer VRs with their struct code (PS3.5 6.2: US, SS 2 bytes; UL, SL 4 bytes).
_INT_VRS = {"US": "H", "SS": "h", "UL": "L", "SL": "l"}
_INT_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4}
_PLAIN_VRS = _TEXT_VRS | frozenset(_INT_VRS)
_VR_BYTES = {vr: vr.encode() for vr in _PLAIN_VRS}
_LONG_VR_BYTES = frozenset(_VR_BYTES[vr] for vr in _LONG_TEXT_VRS)
_PLAIN_VR_BYTES = {v: k for k, v in _VR_BYTES.items()}

#: Character sets in which this codec handles text: the default repertoire alone, or
#: ISO_IR 100 (Latin-1) / ISO_IR 192 (UTF-8), single-byte-switch-free (PS3.3 C.12.1.1.2).
_CODECS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}

_UNDEFINED = 0xFFFFFFFF
_CHARSET_TAG = 0x00080005
_CHARSET_BASE_TAG = BaseTag(_CHARSET_TAG)
_HDR_IMPLICIT = struct.Struct("<HHL")
_HDR_EXPLICIT_SHORT = struct.Struct("<HH2sH")
_HDR_EXPLICIT_LONG = struct.Struct("<HH2s2xL")

#: tag -> VR of the data dictionary (or None when unknown, ambiguous or not plain); a cache
#: of immutable facts, so sharing it between threads is harmless.
_DICT_VR: dict[int, str | None] = {}


def _dictionary_vr(tag: int) -> str | None:
    try:
        return _DICT_VR[tag]
    except KeyError:
        pass
    try:
        vr: str | None = dictionary_VR(tag)
    except KeyError:
        vr = None
    if vr not in _PLAIN_VRS:
        vr = None
    _DICT_VR[tag] = vr
    return vr


def transfer_syntax_vr(transfer_syntax: str) -> bool | None:
    """True for Implicit VR LE, False for Explicit VR LE, None for any other syntax."""
    ts = str(transfer_syntax)
    if ts == IMPLICIT_VR_LITTLE_ENDIAN:
        return True
    if ts == EXPLICIT_VR_LITTLE_ENDIAN:
        return False
    return None


def _charset_codec(value: Any) -> str | None:
    """The Python codec of a Specific Character Set (0008,0005) value; None when unhandled."""
    if value is None:
        return "ascii"
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):  # a multi-valued set: code extensions (ISO 2022)
        return None
    return _CODECS.get(value.strip(" \0"))


# ---------------------------------------------------------------------------- decoding
def decode_identifier(raw: bytes, transfer_syntax: str) -> Dataset | None:
    """The Dataset pydicom's reader gives for ``raw``, or None when this walk is not plain.

    Elements stay ``RawDataElement`` (pydicom converts on access, as after ``dcmread``).
    Accepted only: Implicit/Explicit VR Little Endian; ascending tags below (FFFE,xxxx);
    defined lengths inside ``raw`` with nothing left over; explicit VRs that are plain text or
    integer VRs, implicit tags whose dictionary VR is one; integer lengths a multiple of the
    value size; non-ASCII text only after a Specific Character Set of ISO_IR 100 or 192 (and
    valid in it).
    """
    implicit = transfer_syntax_vr(transfer_syntax)
    if implicit is None or not raw:
        return None
    size = len(raw)
    elements: dict[BaseTag, RawDataElement] = {}
    pos, previous = 0, -1
    codec = "ascii"
    while pos < size:
        if pos + 8 > size:
            return None
        if implicit:
            group, elem, length = _HDR_IMPLICIT.unpack_from(raw, pos)
            tag = (group << 16) | elem
            vr = _dictionary_vr(tag)
            if vr is None:
                return None
            pos += 8
        else:
            group, elem, raw_vr, length = _HDR_EXPLICIT_SHORT.unpack_from(raw, pos)
            tag = (group << 16) | elem
            vr = _PLAIN_VR_BYTES.get(raw_vr)
            if vr is None:
                return None
            if raw_vr in _LONG_VR_BYTES:
                if pos + 12 > size:
                    return None
                length = _HDR_EXPLICIT_LONG.unpack_from(raw, pos)[3]
                pos += 12
            else:
                pos += 8
        if tag <= previous or group == 0xFFFE or group == 0x0002 or length == _UNDEFINED \
                or (elem == 0 and group > 6):
            return None
        previous = tag
        end = pos + length
        if end > size:
            return None
        value = raw[pos:end] if length else None
        if value is not None:
            if vr in _INT_SIZE:
                if length % _INT_SIZE[vr]:
                    return None
            elif not value.isascii():
                if codec == "ascii":
                    return None
                try:
                    value.decode(codec)
                except UnicodeDecodeError:
                    return None
            if tag == _CHARSET_TAG:
                codec = _charset_codec(value)
                if codec is None:
                    return None
        btag = _BASE_TAGS.get(tag) or _base_tag(tag)
        elements[btag] = _new_tuple(RawDataElement, (btag, None if implicit else vr, length,
                                                     value, pos, implicit, True, True, False))
        pos = end
    return _new_dataset(elements, implicit)


# ---------------------------------------------------------------------------- fast objects
#: Per-identifier object creation was half of ``decode_identifier``'s time in a 10,000-match
#: C-FIND (cProfile of ``dicomdesk find``): ``Dataset.__init__`` sets ~16 attributes through
#: pydicom's ``__setattr__``, ``RawDataElement(...)`` is a NamedTuple's Python-level ``__new__``
#: and ``BaseTag(tag)`` an int subclass. The results are the same objects, made directly:
#: tests/net/test_dataset_codec.py compares them with pydicom's own.
_new_tuple = tuple.__new__
_new_object = object.__new__


def _fresh_dataset_state() -> tuple[dict[str, Any], tuple[str, ...]]:
    """The instance attributes of a new empty ``Dataset`` and which of them are containers
    (copied for each new Dataset, never shared)."""
    state = dict(Dataset().__dict__)
    state.pop("_dict", None)
    containers = tuple(k for k, v in state.items() if isinstance(v, (dict, list, set)))
    return state, containers


_FRESH_STATE, _FRESH_CONTAINERS = _fresh_dataset_state()
#: tag -> its BaseTag; bounded, so a peer sending ever new tags cannot grow it without end
_BASE_TAGS: dict[int, BaseTag] = {}
_BASE_TAGS_MAX = 4096


def _base_tag(tag: int) -> BaseTag:
    try:
        return _BASE_TAGS[tag]
    except KeyError:
        btag = BaseTag(tag)
        if len(_BASE_TAGS) < _BASE_TAGS_MAX:
            _BASE_TAGS[tag] = btag
        return btag


def _new_dataset(elements: dict[BaseTag, RawDataElement], implicit: bool) -> Dataset:
    """``Dataset(elements)`` followed by ``set_original_encoding(implicit, True, charset)``
    (what pydicom's reader does), without pydicom's per-attribute ``__setattr__``."""
    ds = _new_object(Dataset)
    state = ds.__dict__
    state.update(_FRESH_STATE)
    for name in _FRESH_CONTAINERS:
        state[name] = _FRESH_STATE[name].copy()
    state["_dict"] = elements
    state["_read_implicit"] = implicit
    state["_read_little"] = True
    charset = elements.get(_CHARSET_BASE_TAG)
    if charset is None:
        state["_read_charset"] = default_encoding
    else:
        state["_read_charset"] = _read_charset(ds, charset)
    return ds


#: raw Specific Character Set value -> what pydicom's ``Dataset._character_set`` made of it.
#: Converting the element through pydicom was half of decoding an identifier that carries one
#: (every C-FIND response to a request that asked for it); bounded like ``_BASE_TAGS``.
_READ_CHARSETS: dict[bytes | None, Any] = {}
_READ_CHARSETS_MAX = 64


def _read_charset(ds: Dataset, charset: Any) -> Any:
    """``ds._character_set`` (what pydicom's reader records), remembered per raw value."""
    key = charset.value if type(charset) is RawDataElement and \
        isinstance(charset.value, (bytes, type(None))) else False
    if key is not False:
        known = _READ_CHARSETS.get(key)
        if known is not None:  # a fresh list per Dataset: nothing mutable is shared
            return list(known) if isinstance(known, list) else known
    value = ds._character_set
    if key is not False and len(_READ_CHARSETS) < _READ_CHARSETS_MAX:
        _READ_CHARSETS[key] = list(value) if isinstance(value, list) else value
    return value



def new_dataset(elements: dict, implicit: bool = False) -> Dataset:
    """A Dataset holding these raw elements (tag -> ``RawDataElement``), made the way the
    decoder makes its own (for producers of many identifiers: C-FIND responses)."""
    return _new_dataset({_base_tag(t): e for t, e in elements.items()}, implicit)


# ---------------------------------------------------------------------------- encoding
def _canonical_text(value: bytes, vr: str) -> bool:
    """Does pydicom write these raw text bytes back unchanged after converting them?

    Conservative: even length, printable ASCII, at most the one pad byte (NUL for UI,
    space otherwise, PS3.5 6.2) and no other leading/trailing spaces around any value.
    """
    if len(value) % 2 or not value.isascii():
        return False
    pad = b"\0" if vr == "UI" else b" "
    content = value[:-1] if value.endswith(pad) else value
    if content.endswith(pad):
        return False
    if not content:
        return True
    if not content.decode("ascii").isprintable():
        return False
    for part in content.split(b"\\"):
        if part[:1] == b" " or part[-1:] == b" ":
            return False
    if vr == "UI":  # one UID, or several (UID list matching, PS3.4 C.2.2.2.2)
        return all(c in b"0123456789.\\" for c in content)
    if vr == "PN" and not _pn_canonical(content.decode("ascii")):
        return False
    return b"\0" not in content


def _text_bytes(value: Any, vr: str) -> bytes | None:
    """Unpadded ASCII bytes pydicom writes for a converted text value, or None."""
    if value is None or value == "":
        return b""
    if vr in ("IS", "DS"):
        values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" \
            else [value]
        parts = []
        for v in values:
            if isinstance(v, bool):
                return None
            text = getattr(v, "original_string", None)
            if text is None:
                if not isinstance(v, (str, int)) and type(v).__name__ not in ("IS", "DSfloat"):
                    return None
                text = str(v)
            parts.append(text)
        text = "\\".join(parts)
    elif isinstance(value, str):
        text = value
    elif vr == "PN" and type(value).__name__ == "PersonName":
        text = _person_name_text(value)
        if text is None:
            return None
    elif type(value).__name__ == "MultiValue" or isinstance(value, (list, tuple)):
        parts = []
        for v in value:
            if type(v).__name__ == "PersonName" and vr == "PN":
                v = _person_name_text(v)
            if not isinstance(v, str):
                return None
            parts.append(v)
        if not parts:
            return b""
        text = "\\".join(parts)
    else:
        return None
    if not text.isascii():
        return None
    return text.encode("ascii")


def _pn_canonical(text: str) -> bool:
    """Does pydicom write this PN text unchanged? It drops trailing '^' of each component
    group and trailing '=' (PS3.5 6.2.1.1 allows omitting them), so those are declined."""
    for name in text.split("\\"):
        if name.endswith("=") or any(group.endswith("^") for group in name.split("=")):
            return False
    return True


def _person_name_text(value: Any) -> str | None:
    """The text of a PersonName whose encoding pydicom would write as its ASCII text.

    pydicom keeps the bytes a name was read or last encoded as (``original_string``) and
    writes those; they are used only when they are exactly the name's ASCII text.
    """
    text = str(value)
    if not _pn_canonical(text):
        return None
    original = value.original_string
    if original is not None and not isinstance(original, str):
        if not text.isascii() or original != text.encode("ascii"):
            return None
    return text


def encode_identifier(ds: Dataset, transfer_syntax: str) -> bytes | None:
    """pydicom's encoding of ``ds`` in Implicit/Explicit VR LE, or None to let pydicom do it.

    Handles top-level text and integer elements: ASCII text values (``str``, ``PersonName``,
    IS/DS numbers, multi-values), integers, empty values, and raw elements whose bytes are
    canonical. Group lengths (gggg,0000) with gggg > 0006 are left out, as pydicom does
    (PS3.5 7.2). Sequences, binary VRs, ambiguous VRs and non-ASCII text return None.
    """
    implicit = transfer_syntax_vr(transfer_syntax)
    if implicit is None:
        return None
    if _charset_codec(ds.get("SpecificCharacterSet")) is None:
        return None
    out: list[bytes] = []
    append = out.append
    elements = ds._dict
    for tag in sorted(elements):
        group, elem = tag >> 16, tag & 0xFFFF
        if elem == 0 and group > 6:
            continue
        if group == 0x0002 or group == 0xFFFE:
            return None
        element = elements[tag]
        vr = element.VR
        if element.is_raw:
            if element.length == _UNDEFINED or not element.is_little_endian:
                return None
            if vr is None:
                vr = _dictionary_vr(tag)
            value = element.value
            if vr not in _PLAIN_VRS or isinstance(value, str):
                return None
            if value is None:
                value = b""
            if vr in _INT_SIZE:
                if len(value) % _INT_SIZE[vr]:
                    return None
            elif not _canonical_text(bytes(value), vr):
                return None
            data = bytes(value)
        else:
            if vr not in _PLAIN_VRS:
                return None
            value = element.value
            if vr in _INT_VRS:
                if value is None or value == "":
                    data = b""
                else:
                    values = value if type(value).__name__ == "MultiValue" \
                        or isinstance(value, (list, tuple)) else [value]
                    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                        return None
                    try:
                        data = struct.pack(f"<{len(values)}{_INT_VRS[vr]}", *values)
                    except struct.error:
                        return None
            else:
                data = _text_bytes(value, vr)
                if data is None:
                    return None
                if len(data) % 2:
                    data += b"\0" if vr == "UI" else b" "
        length = len(data)
        if implicit:
            append(_HDR_IMPLICIT.pack(group, elem, length))
        elif vr in _LONG_TEXT_VRS:
            append(_HDR_EXPLICIT_LONG.pack(group, elem, _VR_BYTES[vr], length))
        else:
            if length > 0xFFFF:
                return None
            append(_HDR_EXPLICIT_SHORT.pack(group, elem, _VR_BYTES[vr], length))
        append(data)
    return b"".join(out)


def raw_text_element(tag: int, vr: str, value: str | list[str] | None, codec: str = "ascii"
                     ) -> RawDataElement | None:
    """A raw element holding ``value`` padded to even length, as pydicom would write it.

    For a producer building many data sets (C-FIND responses): pydicom converts it on access
    to the same value ``DataElement(tag, vr, value)`` has; a list is a multi-valued element
    (values joined with ``\\``, PS3.5 6.4). None when the value is empty (pydicom keeps
    ``None`` there, a raw element would convert to ``''``), not canonical (a backslash inside a
    value, leading/trailing spaces, control characters, not encodable: ``codec`` for the VRs
    that use the Specific Character Set, ASCII for the others), a list for a single-valued VR
    (LT, ST, UT, UR) or ``vr`` is not a text VR: the caller then builds the element with pydicom.
    """
    if vr not in _TEXT_VRS or not value:
        return None
    if isinstance(value, str):
        parts = [value]
    elif vr in _SINGLE_VALUE_VRS or len(value) < 2:
        return None
    else:
        parts = value
    for part in parts:
        if not isinstance(part, str) or not part or part[0] == " " or part[-1] in " \0" \
                or "\\" in part or not part.isprintable():
            return None
        if vr == "UI" and not all(c in "0123456789." for c in part):
            return None
        if vr == "PN" and not _pn_canonical(part):
            return None
    text = "\\".join(parts)
    try:
        data = text.encode(codec if vr in _CHARSET_VRS else "ascii")
    except UnicodeEncodeError:
        return None
    if len(data) % 2:
        data += b"\0" if vr == "UI" else b" "
    return RawDataElement(BaseTag(tag), vr, len(data), data, 0, False, True, True, False)
