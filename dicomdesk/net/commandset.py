"""Command Set codec: group 0000 in Implicit VR Little Endian (PS3.7 6.3.1, Annex E).

Every DIMSE message starts with a Command Set, always encoded in Implicit VR
Little Endian whatever the presentation context's transfer syntax, and led by
Command Group Length (0000,0000) (PS3.7 6.3.1 and E.1).  It is on the hot path
of every message, so this is a small codec that knows the few value
representations of the command group (Table E.1-1 and the retired E.2-1)
rather than pydicom's general reader; its output is byte-for-byte what pydicom
writes, and its decoded datasets equal pydicom's.

Two representations are supported.  The internal one, used by ``dimsemessages``,
is a plain ``dict`` of element number (the low 16 bits of the tag) to value
(``encode_fields``/``decode_fields``); it needs no pydicom, so ``dicomdesk echo``
never imports it.  The public one is a pydicom ``Dataset`` (``encode_command``,
``decode_command``, ``command_dataset``); pydicom is imported only when one is built.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dicomdesk.net.exceptions import DIMSEProcessingError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

COMMAND_GROUP_LENGTH = 0x00000000

#: VR of each command element, keyed by element number (group 0000): PS3.7 Table E.1-1
#: (current) and E.2-1 (retired); a test checks it equals pydicom's data dictionary.
COMMAND_VRS: dict[int, str] = {
    0x0000: 'UL',  # Command Group Length
    0x0001: 'UL',  # Command Length to End (retired)
    0x0002: 'UI',  # Affected SOP Class UID
    0x0003: 'UI',  # Requested SOP Class UID
    0x0010: 'SH',  # Command Recognition Code (retired)
    0x0100: 'US',  # Command Field
    0x0110: 'US',  # Message ID
    0x0120: 'US',  # Message ID Being Responded To
    0x0200: 'AE',  # Initiator (retired)
    0x0300: 'AE',  # Receiver (retired)
    0x0400: 'AE',  # Find Location (retired)
    0x0600: 'AE',  # Move Destination
    0x0700: 'US',  # Priority
    0x0800: 'US',  # Command Data Set Type
    0x0850: 'US',  # Number of Matches (retired)
    0x0860: 'US',  # Response Sequence Number (retired)
    0x0900: 'US',  # Status
    0x0901: 'AT',  # Offending Element
    0x0902: 'LO',  # Error Comment
    0x0903: 'US',  # Error ID
    0x1000: 'UI',  # Affected SOP Instance UID
    0x1001: 'UI',  # Requested SOP Instance UID
    0x1002: 'US',  # Event Type ID
    0x1005: 'AT',  # Attribute Identifier List
    0x1008: 'US',  # Action Type ID
    0x1020: 'US',  # Number of Remaining Sub-operations
    0x1021: 'US',  # Number of Completed Sub-operations
    0x1022: 'US',  # Number of Failed Sub-operations
    0x1023: 'US',  # Number of Warning Sub-operations
    0x1030: 'AE',  # Move Originator Application Entity Title
    0x1031: 'US',  # Move Originator Message ID
    0x4000: 'LT',  # Dialog Receiver (retired)
    0x4010: 'LT',  # Terminal Type (retired)
    0x5010: 'SH',  # Message Set ID (retired)
    0x5020: 'SH',  # End Message ID (retired)
    0x5110: 'LT',  # Display Format (retired)
    0x5120: 'LT',  # Page Position ID (retired)
    0x5130: 'CS',  # Text Format ID (retired)
    0x5140: 'CS',  # Normal Reverse (retired)
    0x5150: 'CS',  # Add Gray Scale (retired)
    0x5160: 'CS',  # Borders (retired)
    0x5170: 'IS',  # Copies (retired)
    0x5180: 'CS',  # Command Magnification Type (retired)
    0x5190: 'CS',  # Erase (retired)
    0x51A0: 'CS',  # Print (retired)
    0x51B0: 'US',  # Overlays (retired)
}

#: Keyword of each current command element (PS3.7 Table E.1-1), the names the reference's
#: messages list in ``command_fields``; a test checks them against pydicom's dictionary.
COMMAND_KEYWORDS: dict[str, int] = {
    'CommandGroupLength': 0x0000, 'AffectedSOPClassUID': 0x0002,
    'RequestedSOPClassUID': 0x0003, 'CommandField': 0x0100, 'MessageID': 0x0110,
    'MessageIDBeingRespondedTo': 0x0120, 'MoveDestination': 0x0600, 'Priority': 0x0700,
    'CommandDataSetType': 0x0800, 'Status': 0x0900, 'OffendingElement': 0x0901,
    'ErrorComment': 0x0902, 'ErrorID': 0x0903, 'AffectedSOPInstanceUID': 0x1000,
    'RequestedSOPInstanceUID': 0x1001, 'EventTypeID': 0x1002,
    'AttributeIdentifierList': 0x1005, 'ActionTypeID': 0x1008,
    'NumberOfRemainingSuboperations': 0x1020, 'NumberOfCompletedSuboperations': 0x1021,
    'NumberOfFailedSuboperations': 0x1022, 'NumberOfWarningSuboperations': 0x1023,
    'MoveOriginatorApplicationEntityTitle': 0x1030, 'MoveOriginatorMessageID': 0x1031,
}

_NUMERIC = {'US': 'H', 'UL': 'I', 'SS': 'h', 'SL': 'i'}
_NUMERIC_STRUCT = {vr: struct.Struct('<' + code) for vr, code in _NUMERIC.items()}
# Text VRs that do not allow multiple values (PS3.5 6.2: LT, ST, UT keep backslashes).
_SINGLE_TEXT = {'LT', 'ST', 'UT'}
_HEADER = struct.Struct('<HHI')
_TAG = struct.Struct('<HH')
_GROUP_LENGTH_ELEMENT = struct.Struct('<HHII')
# pydicom's default character repertoire (ISO-IR 6, written as ISO 8859-1).
_ENCODING = 'latin-1'


def command_vr(element: int) -> str:
    """The VR of command element (0000,element); UN for one the standard does not define."""
    return COMMAND_VRS.get(element, 'UN')


def _as_tag(value: Any) -> int:
    """An AT value as a 32-bit tag: an int, a (group, element) pair, or (with pydicom) a keyword."""
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return (value[0] << 16) | value[1]
    from pydicom.tag import Tag  # keywords and the other forms pydicom's Tag() accepts

    return Tag(value)


def normalise_value(element: int, value: Any) -> Any:
    """A value set on command element (0000,element), in the form the internal
    representation keeps and pydicom would read back: a one-item list is its item; AT
    values are tag ints (a ``(group, element)`` pair is one tag, a list holds several).
    Anything else is kept as given."""
    if value is None:
        return None
    is_at = COMMAND_VRS.get(element) == 'AT'
    if isinstance(value, list) or (isinstance(value, tuple) and not is_at):
        if len(value) == 1:
            value = value[0]
        elif is_at:
            return [_as_tag(v) for v in value]
        else:
            return value
    return _as_tag(value) if is_at else value


def _encode_value(vr: str, value: Any) -> bytes:
    """Encode one element value as pydicom does for Implicit VR Little Endian."""
    if value is None or value == '' or (isinstance(value, (list, tuple)) and not value
                                        and vr != 'AT'):
        return b''
    multi = isinstance(value, (list, tuple)) or (
        hasattr(value, '__iter__') and not isinstance(value, (str, bytes, int)))
    if vr in _NUMERIC:
        code = _NUMERIC[vr]
        values = list(value) if multi else [value]
        return struct.pack('<%d%s' % (len(values), code), *values)
    if vr == 'AT':
        values = list(value) if multi else [value]
        out = bytearray()
        for tag in values:
            tag = _as_tag(tag)
            out += _TAG.pack(tag >> 16, tag & 0xFFFF)
        return bytes(out)
    if isinstance(value, bytes):  # OB/UN or a raw value a caller kept
        raw = value
        pad = b'\x00'
    else:
        text = '\\'.join(str(v) for v in value) if multi else str(value)
        raw = text.encode(_ENCODING, errors='replace')
        pad = b'\x00' if vr == 'UI' else b' '
    if len(raw) % 2:
        raw += pad
    return raw


def _encode_elements(elements: Iterable[tuple[int, str, Any]]) -> bytes:
    """Encode (element, VR, value) triples, in the given order, after a fresh group length."""
    parts = []
    length = 0
    pack_header = _HEADER.pack
    for element, vr, value in elements:
        if element == 0:
            continue
        value = _encode_value(vr, value)
        parts.append(pack_header(0, element, len(value)))
        parts.append(value)
        length += 8 + len(value)
    parts.insert(0, _GROUP_LENGTH_ELEMENT.pack(0, 0, 4, length))
    return b''.join(parts)


#: The command sets of one operation repeat (every pending C-FIND-RSP of a request is the same
#: bytes; so is every C-STORE-RSP Success but for its UID): the last few encodings and
#: decodings are remembered. Bounded in count and in length, so a peer sending ever new
#: command sets only churns them; immutable values only (bytes; decoded dicts are copied).
_MEMO_MAX = 64
_MEMO_MAX_BYTES = 512
_ENCODED: dict[tuple, bytes] = {}
_DECODED: dict[bytes, dict[int, Any]] = {}


def _remember(memo: dict, key: Any, value: Any) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


#: How ``encode_plain`` packs each element: 'H' (US) or 'I' (UL) for an ``int``, the
#: padding byte of a text VR for an ASCII ``str`` (PS3.5 6.2); elements not here are not plain.
_PLAIN_KIND: dict[int, Any] = {
    element: {'US': 'H', 'UL': 'I', 'UI': b'\x00'}.get(vr, b' ')
    for element, vr in COMMAND_VRS.items() if vr in ('US', 'UL', 'UI', 'AE', 'LO', 'SH', 'LT', 'CS')}
_PLAIN_LIMIT = {'H': 0xFFFF, 'I': 0xFFFFFFFF}
#: One ``struct.Struct`` per command-set shape (element numbers and value lengths), packing
#: the whole command set in one call; bounded as the memos are.
_PLAIN_SHAPES: dict[tuple, struct.Struct] = {}


def encode_plain(fields: Mapping[int, Any]) -> bytes | None:
    """``_encode_elements`` of a command set whose values are all plain — an ``int`` of a
    US/UL element, an ASCII ``str`` of a text element — in one ``struct`` pack per shape;
    None for anything else (the generic encoder then decides). The fast path of every
    message's command set: a C-STORE-RSP differs from the last one only in its UIDs (its
    storage SCP calls this directly: a command set seen once is not worth remembering)."""
    shape: list[Any] = []
    values: list[Any] = []
    length = 0
    kinds = _PLAIN_KIND
    for element in sorted(fields):
        if not element:
            continue
        value = fields[element]
        kind = kinds.get(element)
        if type(value) is int:
            if kind not in _PLAIN_LIMIT or not 0 <= value <= _PLAIN_LIMIT[kind]:
                return None
            shape.append(kind)
            values += (0, element, 2 if kind == 'H' else 4, value)
            length += 10 if kind == 'H' else 12
        elif type(value) is str and type(kind) is bytes and value.isascii():
            raw = value.encode('ascii')
            if len(raw) % 2:
                raw += kind
            shape.append(len(raw))
            values += (0, element, len(raw), raw)
            length += 8 + len(raw)
        else:
            return None
    key = tuple(shape)
    packer = _PLAIN_SHAPES.get(key)
    if packer is None:
        packer = struct.Struct('<HHII' + ''.join('HHI' + (f'{item}s' if type(item) is int else item)
                                                 for item in shape))
        _remember(_PLAIN_SHAPES, key, packer)
    return packer.pack(0, 0, 4, length, *values)


def encode_fields(fields: Mapping[int, Any]) -> bytes:
    """Encode a Command Set held as ``{element number: value}`` (the internal form).

    The VRs come from ``COMMAND_VRS``; elements are written in ascending order with a
    freshly computed Command Group Length (PS3.7 6.3.1); any element 0 in ``fields``
    is ignored and ``fields`` is not changed.  The bytes equal ``encode_command`` of
    the equivalent data set. A command set seen lately is remembered; one of plain
    values is packed by ``encode_plain``; only the rest takes the generic encoder.
    """
    try:
        key: tuple | None = tuple(fields.items())
        encoded = _ENCODED.get(key)  # type: ignore[arg-type]
    except TypeError:  # a list value (AT lists): not remembered
        key = encoded = None
    if encoded is None:
        encoded = encode_plain(fields) if key is not None else None
        if encoded is None:
            encoded = _encode_elements((element, command_vr(element), fields[element])
                                       for element in sorted(fields))
        if key is not None and len(encoded) <= _MEMO_MAX_BYTES:
            _remember(_ENCODED, key, encoded)
    return encoded


def encode_command(ds: Dataset, *, skip_empty: bool = False) -> bytes:
    """Encode a Command Set with a freshly computed Command Group Length (PS3.7 6.3.1).

    Any (0000,0000) already in ``ds`` is ignored and ``ds`` is not changed.
    Raises ``ValueError`` if ``ds`` holds an element outside group 0000: a
    command set is only the command group (PS3.7 6.3.1). ``skip_empty`` leaves out
    elements without a value: a message's ``command_set`` lists every field of its
    ``command_fields``, empty where never set, and an empty field means "absent".
    """
    def elements() -> Iterable[tuple[int, str, Any]]:
        for elem in ds:
            tag = elem.tag
            if tag >> 16:
                raise ValueError(f'{tag} is not a command element (group 0000)')
            if skip_empty and tag and elem.is_empty:
                continue
            yield tag & 0xFFFF, elem.VR, elem.value

    return _encode_elements(elements())


def _decode_value(vr: str, raw: bytes) -> Any:
    """Decode one value the way pydicom's reader converts it (pydicom.values)."""
    if vr in _NUMERIC_STRUCT:
        size = _NUMERIC_STRUCT[vr].size
        if not raw:
            return None
        if len(raw) % size:
            raise DIMSEProcessingError(f'{vr} value of odd length {len(raw)}')
        values = struct.unpack('<%d%s' % (len(raw) // size, _NUMERIC[vr]), raw)
        return values[0] if len(values) == 1 else list(values)
    if vr == 'AT':
        if not raw:
            return None
        if len(raw) % 4:
            raise DIMSEProcessingError(f'AT value of length {len(raw)}')
        tags = [(g << 16) | e for g, e in _TAG.iter_unpack(raw)]
        return tags[0] if len(tags) == 1 else tags
    if vr in ('OB', 'UN', 'OW'):
        return raw
    text = raw.decode(_ENCODING)
    if vr == 'AE':
        values = [v.strip() for v in text.split('\\')]
        return values[0] if len(values) == 1 else values
    if vr == 'UI':
        values = text.rstrip(' \x00').split('\\')
        return values[0] if len(values) == 1 else values
    if vr in _SINGLE_TEXT:
        return text.rstrip('\x00 ')
    values = [v.rstrip('\x00 ') for v in text.split('\\')]
    return values[0] if len(values) == 1 else values


def decode_fields(data: bytes | bytearray | memoryview) -> dict[int, Any]:
    """Decode a Command Set (Implicit VR Little Endian, group 0000 only) to the internal
    form: ``{element number: value}`` in ascending element order, values as pydicom's
    reader converts them except that UIDs are ``str`` and AT values ``int``.

    Raises ``DIMSEProcessingError`` for anything malformed: a truncated
    element, an element outside group 0000, an undefined length, tags out of
    order, a value whose length does not fit its VR, or a Command Group Length
    that disagrees with the data (PS3.7 6.3.1).
    """
    raw = bytes(data)
    size = len(raw)
    known = _DECODED.get(raw) if size <= _MEMO_MAX_BYTES else None
    if known is not None:
        return dict(known)
    fields: dict[int, Any] = {}
    offset = 0
    previous = -1
    group_length = None
    unpack_header = _HEADER.unpack_from
    while offset < size:
        if size - offset < 8:
            raise DIMSEProcessingError('truncated command element header')
        group, element, length = unpack_header(raw, offset)
        offset += 8
        if group != 0:
            raise DIMSEProcessingError(f'element ({group:04X},{element:04X}) in a command set')
        if element <= previous:
            raise DIMSEProcessingError('command elements out of order or repeated')
        previous = element
        if length > size - offset:
            raise DIMSEProcessingError(f'command element (0000,{element:04X}) overruns the data')
        value_bytes = raw[offset:offset + length]
        offset += length
        value = _decode_value(COMMAND_VRS.get(element, 'UN'), value_bytes)
        if element == 0:
            if not isinstance(value, int):
                raise DIMSEProcessingError('invalid Command Group Length')
            group_length = value
            if group_length != size - offset:
                raise DIMSEProcessingError(
                    f'Command Group Length {group_length} but {size - offset} bytes follow')
        fields[element] = value
    if group_length is None:
        raise DIMSEProcessingError('command set without Command Group Length (0000,0000)')
    if size <= _MEMO_MAX_BYTES and not any(type(v) is list for v in fields.values()):
        _remember(_DECODED, raw, dict(fields))
    return fields


def command_dataset(fields: Mapping[int, Any]) -> Dataset:
    """The pydicom ``Dataset`` of a Command Set held as ``{element number: value}``.

    Elements get their ``COMMAND_VRS`` VR (UN for unknown ones); AT values become
    pydicom tags.  Values are not validated (a peer's command set is what it is).
    """
    from pydicom import config
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    ds = Dataset()
    elements = ds._dict  # direct insert, in ascending tag order
    for element in sorted(fields):
        value = fields[element]
        vr = COMMAND_VRS.get(element, 'UN')
        if vr == 'AT' and value is not None:
            value = [Tag(v) for v in value] if isinstance(value, list) else Tag(value)
        tag = Tag(0, element)
        elements[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)
    return ds


def decode_command(data: bytes | bytearray | memoryview) -> Dataset:
    """Decode a Command Set (Implicit VR Little Endian, group 0000 only) to a ``Dataset``.

    Raises ``DIMSEProcessingError`` for anything malformed: a truncated
    element, an element outside group 0000, an undefined length, tags out of
    order, a value whose length does not fit its VR, or a Command Group Length
    that disagrees with the data (PS3.7 6.3.1).
    """
    return command_dataset(decode_fields(data))
