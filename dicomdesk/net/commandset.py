"""Command Set codec: group 0000 in Implicit VR Little Endian (PS3.7 6.3.1, Annex E).

Every DIMSE message starts with a Command Set, always encoded in Implicit VR
Little Endian whatever the presentation context's transfer syntax, and led by
Command Group Length (0000,0000) (PS3.7 6.3.1 and E.1).  It is on the hot path
of every message, so this is a small codec that knows the few value
representations of the command group (Table E.1-1 and the retired E.2-1)
rather than pydicom's general reader; its output is byte-for-byte what pydicom
writes, and its decoded datasets equal pydicom's.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from pydicom import config as _pydicom_config
from pydicom.dataelem import DataElement
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dicomdesk.net.exceptions import DIMSEProcessingError

logger = logging.getLogger(__name__)

COMMAND_GROUP_LENGTH = 0x00000000

# VR of each command element, keyed by element number (group 0000): PS3.7
# Table E.1-1 (current) and E.2-1 (retired), as pydicom's data dictionary holds them.
COMMAND_VRS: dict[int, str] = {
    tag & 0xFFFF: entry[0] for tag, entry in DicomDictionary.items() if tag >> 16 == 0
}

_NUMERIC = {'US': 'H', 'UL': 'I', 'SS': 'h', 'SL': 'i'}
_NUMERIC_STRUCT = {vr: struct.Struct('<' + code) for vr, code in _NUMERIC.items()}
# Text VRs that do not allow multiple values (PS3.5 6.2: LT, ST, UT keep backslashes).
_SINGLE_TEXT = {'LT', 'ST', 'UT'}
_HEADER = struct.Struct('<HHI')
_TAG = struct.Struct('<HH')
# pydicom's default character repertoire (ISO-IR 6, written as ISO 8859-1).
_ENCODING = 'latin-1'
_IGNORE = _pydicom_config.IGNORE


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
            tag = Tag(tag)
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


def encode_command(ds: Dataset) -> bytes:
    """Encode a Command Set with a freshly computed Command Group Length (PS3.7 6.3.1).

    Any (0000,0000) already in ``ds`` is ignored and ``ds`` is not changed.
    Raises ``ValueError`` if ``ds`` holds an element outside group 0000: a
    command set is only the command group (PS3.7 6.3.1).
    """
    parts = []
    length = 0
    for elem in ds:
        tag = elem.tag
        if tag >> 16:
            raise ValueError(f'{tag} is not a command element (group 0000)')
        element = tag & 0xFFFF
        if element == 0:
            continue
        value = _encode_value(elem.VR, elem.value)
        parts.append(_HEADER.pack(0, element, len(value)))
        parts.append(value)
        length += 8 + len(value)
    return b''.join([_HEADER.pack(0, 0, 4), struct.pack('<I', length)] + parts)


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
        tags = [Tag(g, e) for g, e in _TAG.iter_unpack(raw)]
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


def decode_command(data: bytes | bytearray | memoryview) -> Dataset:
    """Decode a Command Set (Implicit VR Little Endian, group 0000 only).

    Raises ``DIMSEProcessingError`` for anything malformed: a truncated
    element, an element outside group 0000, an undefined length, tags out of
    order, a value whose length does not fit its VR, or a Command Group Length
    that disagrees with the data (PS3.7 6.3.1).
    """
    raw = bytes(data)
    size = len(raw)
    ds = Dataset()
    elements = ds._dict  # direct insert: tags are checked in ascending order below
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
        vr = COMMAND_VRS.get(element, 'UN')
        value = _decode_value(vr, value_bytes)
        if element == 0:
            if not isinstance(value, int):
                raise DIMSEProcessingError('invalid Command Group Length')
            group_length = value
            if group_length != size - offset:
                raise DIMSEProcessingError(
                    f'Command Group Length {group_length} but {size - offset} bytes follow')
        tag = Tag(0, element)
        elements[tag] = DataElement(tag, vr, value, validation_mode=_IGNORE)
    if group_length is None:
        raise DIMSEProcessingError('command set without Command Group Length (0000,0000)')
    return ds
