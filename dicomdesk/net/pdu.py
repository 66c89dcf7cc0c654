"""Protocol Data Units of the DICOM upper layer (PS3.8 9.3) and their items.

Pure code: ``encode() -> bytes`` and ``decode()`` classmethods, plus a framer that
cuts a byte stream into whole PDUs and refuses an oversize length from the 6-byte
header before any body byte is buffered (PS3.8 9.3.1, D.1).

Decoding a peer's bytes raises only :class:`~dicomdesk.net.exceptions.PDUProcessingError`
(source 2, service-provider; reason 1 for an unknown PDU type, 4 for an unknown item,
5 for an item in the wrong PDU, 6 for a malformed value), so the upper layer can
answer with the matching A-ABORT (PS3.8 9.3.8). Reserved fields are kept and never
tested (PS3.8 9.3.1). AE titles are ``str`` without padding in memory and 16 bytes
padded with spaces on the wire (PS3.8 Table 9-11); UIDs are unpadded on the wire and
stripped of trailing NUL/space padding on decode.

PDUs decode from ``bytes``/``memoryview`` of the whole PDU (header included); items
decode from a binary stream positioned at the item header.
"""

from __future__ import annotations

import logging
import sys
from struct import Struct
from typing import IO, ClassVar, Union

from dicomdesk.net.exceptions import (
    ABORT_REASON_UNEXPECTED_PDU_PARAMETER,
    ABORT_REASON_UNRECOGNIZED_PDU,
    ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER,
    PDUProcessingError,
)
from dicomdesk.net.userdataitems import (
    ITEM_HEADER,
    decode_uid,
    encode_uid,
    iter_items,
    protocol_error,
    read_exact,
    read_item,
    sub_item_from_body,
)
from dicomdesk.net.records import Record

logger = logging.getLogger(__name__)

MAX_CONTROL_PDU_LENGTH = 1024 * 1024
"""Largest length accepted for a PDU other than P-DATA-TF (an A-ASSOCIATE-RQ with
hundreds of contexts is a few tens of KiB; anything above is refused unread)."""

PDU_HEADER = Struct(">BBI")  # PDU type, reserved, PDU length (PS3.8 9.3.1)
_ASSOCIATE_FIXED = Struct(">BBIHH16s16s32s")  # PS3.8 Table 9-11 up to the variable items
_FIXED_FOUR = Struct(">BBIBBBB")  # A-ASSOCIATE-RJ (Table 9-21), A-ABORT (Table 9-26)
_RELEASE = Struct(">BBII")  # A-RELEASE-RQ/RP (Tables 9-24, 9-25)
_PDV_HEADER = Struct(">IB")  # PDV item length, presentation context ID (Table 9-23)
_CONTEXT_FIXED = Struct(">BBBB")  # context ID and reserved/result bytes (Tables 9-13, 9-18)
_PDV_LENGTH = Struct(">I")
_RESERVED3 = Struct(">8I")

_AE_TITLE_LENGTH = 16
_FIXED_PDU_LENGTH = 4


def _encode_ae_title(title: str) -> bytes:
    """16 bytes padded with spaces, never NUL (PS3.8 Table 9-11, PS3.5 AE VR)."""
    raw = str(title).encode("latin-1")
    if len(raw) > _AE_TITLE_LENGTH:
        raise ValueError(f"AE title {title!r} longer than 16 characters")
    return raw.ljust(_AE_TITLE_LENGTH, b" ")


def _decode_ae_title(raw: bytes) -> str:
    """Trailing spaces (and the NULs some devices send) are not significant."""
    return raw.decode("latin-1").rstrip("\x00 ")


def _check_header(raw: bytes | memoryview, pdu_type: int) -> tuple[memoryview, int, int]:
    """Return (view, reserved, length) of a whole PDU of ``pdu_type``; the buffer must
    hold exactly the header and the declared length."""
    view = memoryview(raw)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if len(view) < PDU_HEADER.size:
        raise protocol_error("PDU shorter than its 6-byte header")
    found_type, reserved, length = PDU_HEADER.unpack_from(view)
    if found_type != pdu_type:
        raise protocol_error(f"PDU type 0x{found_type:02X} where 0x{pdu_type:02X} expected")
    if len(view) != PDU_HEADER.size + length:
        raise protocol_error(f"PDU length {length} does not match the {len(view) - 6} bytes received")
    return view, reserved, length


class _Item(Record):
    """Shared decode(stream) of the items of PS3.8 9.3.2-9.3.3 (4-byte item header)."""

    item_type: ClassVar[int]

    @classmethod
    def decode(cls, stream: IO[bytes]):
        """Decode one item of this class from ``stream`` positioned at its header."""
        item = read_item(stream)
        if item is None:
            raise protocol_error(f"end of data where item 0x{cls.item_type:02X} expected")
        item_type, reserved, body = item
        if item_type != cls.item_type:
            raise protocol_error(f"item type 0x{item_type:02X} where 0x{cls.item_type:02X} expected")
        return cls.from_body(body, reserved)

    @classmethod
    def from_body(cls, body: bytes, reserved: int):  # pragma: no cover - overridden
        raise NotImplementedError

    def _body(self) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def item_length(self) -> int:
        """Item length, excluding the 4-byte header."""
        return len(self._body())

    def total_length(self) -> int:
        """Item length including the 4-byte header."""
        return self.item_length + ITEM_HEADER.size

    def encode(self) -> bytes:
        """Encode the item (header and value) for the wire."""
        body = self._body()
        if len(body) > 0xFFFF:
            raise ValueError(f"item 0x{self.item_type:02X} too long: {len(body)} bytes")
        return ITEM_HEADER.pack(self.item_type, self._header_reserved(), len(body)) + body

    def _header_reserved(self) -> int:
        return self.reserved


class ApplicationContextItem(_Item):
    """Application Context Item (PS3.8 9.3.2.1); DICOM defines one name, 1.2.840.10008.3.1.1.1."""

    item_type: ClassVar[int] = 0x10
    _fields = ("context_name", "reserved")

    def __init__(self, context_name: str, reserved: int = 0) -> None:
        self.context_name = context_name
        self.reserved = reserved

    def _body(self) -> bytes:
        return encode_uid(self.context_name)

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> ApplicationContextItem:
        return cls(decode_uid(body), reserved)


class AbstractSyntaxSubItem(_Item):
    """Abstract Syntax Sub-Item (PS3.8 9.3.2.2.1): the SOP class UID of a context."""

    item_type: ClassVar[int] = 0x30
    _fields = ("name", "reserved")

    def __init__(self, name: str, reserved: int = 0) -> None:
        self.name = name
        self.reserved = reserved

    def _body(self) -> bytes:
        return encode_uid(self.name)

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> AbstractSyntaxSubItem:
        return cls(decode_uid(body), reserved)


class TransferSyntaxSubItem(_Item):
    """Transfer Syntax Sub-Item (PS3.8 9.3.2.2.2)."""

    item_type: ClassVar[int] = 0x40
    _fields = ("name", "reserved")

    def __init__(self, name: str, reserved: int = 0) -> None:
        self.name = name
        self.reserved = reserved

    def _body(self) -> bytes:
        return encode_uid(self.name)

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> TransferSyntaxSubItem:
        return cls(decode_uid(body), reserved)


class PresentationContextItemRQ(_Item):
    """Presentation Context Item of the A-ASSOCIATE-RQ (PS3.8 9.3.2.2): one abstract
    syntax and the transfer syntaxes proposed for it. ``reserved1`` is the header's
    reserved byte, ``reserved2``-``reserved4`` follow the context ID."""

    item_type: ClassVar[int] = 0x20
    _fields = ("context_id", "abs_sub_item", "ts_sub_items", "reserved1", "reserved2", "reserved3",
               "reserved4")

    def __init__(self, context_id: int, abs_sub_item: AbstractSyntaxSubItem,
                 ts_sub_items: list[TransferSyntaxSubItem] | None = None, reserved1: int = 0,
                 reserved2: int = 0, reserved3: int = 0, reserved4: int = 0) -> None:
        self.context_id = context_id
        self.abs_sub_item = abs_sub_item
        self.ts_sub_items = [] if ts_sub_items is None else ts_sub_items
        self.reserved1 = reserved1
        self.reserved2 = reserved2
        self.reserved3 = reserved3
        self.reserved4 = reserved4

    def _header_reserved(self) -> int:
        return self.reserved1

    def _body(self) -> bytes:
        parts = [_CONTEXT_FIXED.pack(self.context_id, self.reserved2, self.reserved3, self.reserved4),
                 self.abs_sub_item.encode()]
        parts.extend(ts.encode() for ts in self.ts_sub_items)
        return b"".join(parts)

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> PresentationContextItemRQ:
        if len(body) < _CONTEXT_FIXED.size:
            raise protocol_error("presentation context item too short")
        context_id, reserved2, reserved3, reserved4 = _CONTEXT_FIXED.unpack_from(body)
        abstract: AbstractSyntaxSubItem | None = None
        transfer: list[TransferSyntaxSubItem] = []
        for item_type, sub_reserved, sub_body in iter_items(memoryview(body)[_CONTEXT_FIXED.size:]):
            if item_type == AbstractSyntaxSubItem.item_type:
                if abstract is not None:
                    raise protocol_error(f"presentation context {context_id}: two abstract syntaxes")
                abstract = AbstractSyntaxSubItem.from_body(sub_body, sub_reserved)
            elif item_type == TransferSyntaxSubItem.item_type:
                transfer.append(TransferSyntaxSubItem.from_body(sub_body, sub_reserved))
            else:
                raise protocol_error(f"presentation context {context_id}: unknown sub-item "
                                     f"0x{item_type:02X}", ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER)
        if abstract is None:
            raise protocol_error(f"presentation context {context_id}: no abstract syntax sub-item")
        return cls(context_id, abstract, transfer, reserved, reserved2, reserved3, reserved4)


class PresentationContextItemAC(_Item):
    """Presentation Context Item of the A-ASSOCIATE-AC (PS3.8 9.3.3.2).

    ``result_reason``: 0 acceptance, 1 user-rejection, 2 no-reason, 3 abstract syntax
    not supported, 4 transfer syntaxes not supported. ``ts_sub_item`` is the single
    accepted :class:`TransferSyntaxSubItem`; when the context is rejected the field is
    not significant and not tested, so it may be ``None`` (absent or unreadable).
    """

    item_type: ClassVar[int] = 0x21
    _fields = ("context_id", "result_reason", "ts_sub_item", "reserved1", "reserved2", "reserved3")

    def __init__(self, context_id: int, result_reason: int, ts_sub_item: TransferSyntaxSubItem | None,
                 reserved1: int = 0, reserved2: int = 0, reserved3: int = 0) -> None:
        self.context_id = context_id
        self.result_reason = result_reason
        self.ts_sub_item = ts_sub_item
        self.reserved1 = reserved1
        self.reserved2 = reserved2
        self.reserved3 = reserved3

    def _header_reserved(self) -> int:
        return self.reserved1

    def _body(self) -> bytes:
        fixed = _CONTEXT_FIXED.pack(self.context_id, self.reserved2, self.result_reason, self.reserved3)
        if self.ts_sub_item is None:
            return fixed
        return fixed + self.ts_sub_item.encode()

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> PresentationContextItemAC:
        if len(body) < _CONTEXT_FIXED.size:
            raise protocol_error("presentation context item too short")
        context_id, reserved2, result, reserved3 = _CONTEXT_FIXED.unpack_from(body)
        try:
            ts_items = []
            for item_type, sub_reserved, sub_body in iter_items(memoryview(body)[_CONTEXT_FIXED.size:]):
                if item_type != TransferSyntaxSubItem.item_type:
                    raise protocol_error(f"presentation context {context_id}: unexpected sub-item "
                                         f"0x{item_type:02X}", ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER)
                ts_items.append(TransferSyntaxSubItem.from_body(sub_body, sub_reserved))
            if len(ts_items) > 1:
                raise protocol_error(f"presentation context {context_id}: more than one transfer syntax")
        except PDUProcessingError:
            if result == 0:
                raise
            # PS3.8 9.3.3.2: not significant and not tested when the context is rejected.
            ts_items = []
        if result == 0 and not ts_items:
            raise protocol_error(f"accepted presentation context {context_id} has no transfer syntax")
        return cls(context_id, result, ts_items[0] if ts_items else None, reserved, reserved2, reserved3)


class UserInformationItem(_Item):
    """User Information Item (PS3.8 9.3.2.3): Maximum Length (PS3.8 D.1) and the
    sub-items of :mod:`dicomdesk.net.userdataitems`, in ``user_data``."""

    item_type: ClassVar[int] = 0x50
    _fields = ("user_data", "reserved")

    def __init__(self, user_data: list | None = None, reserved: int = 0) -> None:
        self.user_data = [] if user_data is None else user_data
        self.reserved = reserved

    def _body(self) -> bytes:
        return b"".join(item.encode() for item in self.user_data)

    @property
    def item_length(self) -> int:
        """Item length, excluding the header: the sum of the sub-items' total lengths."""
        return sum(item.total_length for item in self.user_data)

    @staticmethod
    def sub_items(stream: IO[bytes]):
        """Yield the sub-items read from ``stream`` until its end (PS3.8 D, PS3.7 D.3.3);
        unknown types come as GenericUserDataSubItem.

        :raises exceptions.PDUProcessingError: a truncated or malformed sub-item
        """
        while True:
            item = read_item(stream)
            if item is None:
                return
            item_type, reserved, body = item
            yield sub_item_from_body(item_type, reserved, body)

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> UserInformationItem:
        return cls([sub_item_from_body(t, r, b) for t, r, b in iter_items(body)], reserved)

    def get(self, item_class: type):
        """The first sub-item of ``item_class``, or None (e.g. ``get(MaximumLengthSubItem)``)."""
        for item in self.user_data:
            if isinstance(item, item_class):
                return item
        return None

    def get_all(self, item_class: type) -> list:
        """Every sub-item of ``item_class`` (e.g. the role selections), in order."""
        return [item for item in self.user_data if isinstance(item, item_class)]


class PresentationDataValueItem(Record):
    """Presentation Data Value Item (PS3.8 9.3.5.1).

    ``data_value`` includes the message control header byte (PS3.8 E.2: bit 0 set for a
    command fragment, bit 1 set for the last fragment), so ``item_length`` is
    ``1 + len(data_value)``. It may be any bytes-like object when encoding (a
    memoryview of a file buffer is written without a copy by
    :meth:`PDataTfPDU.encode_parts`); decoding gives ``bytes``. ``repr`` shows only
    the length: data values carry patient data.
    """

    _fields = ("context_id", "data_value")

    def __init__(self, context_id: int, data_value: bytes) -> None:
        self.context_id = context_id
        self.data_value = data_value

    def __repr__(self) -> str:
        return (f"PresentationDataValueItem(context_id={self.context_id}, "
                f"data_value=<{len(self.data_value)} bytes>)")

    @property
    def item_length(self) -> int:
        """Item length, excluding the 4-byte length field."""
        return 1 + len(self.data_value)

    def total_length(self) -> int:
        """Item length including the 4-byte length field."""
        return 5 + len(self.data_value)

    @property
    def is_command(self) -> bool:
        """Message control header bit 0 (PS3.8 E.2)."""
        return bool(self.data_value[0] & 0x01)

    @property
    def is_last(self) -> bool:
        """Message control header bit 1 (PS3.8 E.2)."""
        return bool(self.data_value[0] & 0x02)

    def encode(self) -> bytes:
        """Encode the item for the wire."""
        return _PDV_HEADER.pack(1 + len(self.data_value), self.context_id) + bytes(self.data_value)

    @classmethod
    def decode(cls, stream: IO[bytes]) -> PresentationDataValueItem:
        """Decode one PDV from ``stream``; its value is left raw for the DIMSE layer."""
        (length,) = _PDV_LENGTH.unpack(read_exact(stream, 4))
        if length < 2:
            raise protocol_error(f"PDV item length {length}: no message control header")
        body = read_exact(stream, length)
        return cls(body[0], body[1:])


class _PDU(Record):
    """Shared total_length() of the PDUs."""

    pdu_type: ClassVar[int]

    def total_length(self) -> int:
        """PDU length including the 6-byte header."""
        return PDU_HEADER.size + self.pdu_length


class AAssociatePDUBase(_PDU):
    """Base of A-ASSOCIATE-RQ and -AC (PS3.8 Tables 9-11 and 9-17, identical layouts).

    ``reserved1`` is the byte after the PDU type, ``reserved2`` the two bytes after the
    protocol version, ``reserved3`` the 32 reserved bytes (``None``: zeros; a sequence of
    eight 4-byte ints is accepted as in the reference, stored as 32 bytes).
    """

    pdu_type: ClassVar[int] = 0
    _context_item: ClassVar[type] = PresentationContextItemRQ
    _other_context_item: ClassVar[type] = PresentationContextItemAC
    _fields = ("called_ae_title", "calling_ae_title", "variable_items", "protocol_version",
               "reserved1", "reserved2", "reserved3")

    def __init__(self, called_ae_title: str, calling_ae_title: str, variable_items: list | None = None,
                 protocol_version: int = 1, reserved1: int = 0, reserved2: int = 0,
                 reserved3: bytes | None = None) -> None:
        self.called_ae_title = called_ae_title
        self.calling_ae_title = calling_ae_title
        self.variable_items = [] if variable_items is None else variable_items
        self.protocol_version = protocol_version
        self.reserved1 = reserved1
        self.reserved2 = reserved2
        if reserved3 is None:
            reserved3 = bytes(32)
        elif not isinstance(reserved3, (bytes, bytearray, memoryview)):
            reserved3 = _RESERVED3.pack(*reserved3)
        else:
            reserved3 = bytes(reserved3)
        if len(reserved3) != 32:
            raise ValueError("reserved3 must be 32 bytes")
        self.reserved3 = reserved3

    @property
    def pdu_length(self) -> int:
        """PDU length without the header."""
        return _ASSOCIATE_FIXED.size - PDU_HEADER.size + sum(i.total_length() for i in self.variable_items)

    def encode(self) -> bytes:
        """Encode the PDU for the wire."""
        items = b"".join(item.encode() for item in self.variable_items)
        fixed = _ASSOCIATE_FIXED.pack(
            self.pdu_type, self.reserved1, _ASSOCIATE_FIXED.size - PDU_HEADER.size + len(items),
            self.protocol_version, self.reserved2, _encode_ae_title(self.called_ae_title),
            _encode_ae_title(self.calling_ae_title), self.reserved3)
        return fixed + items

    @classmethod
    def decode(cls, raw_bytes: bytes | memoryview):
        """Decode a whole A-ASSOCIATE-RQ/AC PDU (header included)."""
        view, _reserved, _length = _check_header(raw_bytes, cls.pdu_type)
        if len(view) < _ASSOCIATE_FIXED.size:
            raise protocol_error("A-ASSOCIATE PDU shorter than its fixed fields")
        (_, reserved1, _, version, reserved2, called, calling,
         reserved3) = _ASSOCIATE_FIXED.unpack_from(view)
        items = []
        for item_type, reserved, body in iter_items(view[_ASSOCIATE_FIXED.size:]):
            if item_type == ApplicationContextItem.item_type:
                items.append(ApplicationContextItem.from_body(body, reserved))
            elif item_type == cls._context_item.item_type:
                items.append(cls._context_item.from_body(body, reserved))
            elif item_type == UserInformationItem.item_type:
                items.append(UserInformationItem.from_body(body, reserved))
            elif item_type == cls._other_context_item.item_type:
                raise protocol_error(f"item 0x{item_type:02X} not allowed in this PDU",
                                     ABORT_REASON_UNEXPECTED_PDU_PARAMETER)
            else:
                raise protocol_error(f"unknown item 0x{item_type:02X}",
                                     ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER)
        return cls(_decode_ae_title(called), _decode_ae_title(calling), items, version,
                   reserved1, reserved2, reserved3)

    @property
    def application_context(self) -> ApplicationContextItem | None:
        """The Application Context Item, or None if the peer sent none."""
        return next((i for i in self.variable_items if isinstance(i, ApplicationContextItem)), None)

    @property
    def presentation_contexts(self) -> list:
        """The Presentation Context Items, in order."""
        return [i for i in self.variable_items if isinstance(i, self._context_item)]

    @property
    def user_information(self) -> UserInformationItem | None:
        """The User Information Item, or None if the peer sent none."""
        return next((i for i in self.variable_items if isinstance(i, UserInformationItem)), None)


class AAssociateRqPDU(AAssociatePDUBase):
    """A-ASSOCIATE-RQ PDU (PS3.8 9.3.2)."""

    pdu_type: ClassVar[int] = 1
    _context_item: ClassVar[type] = PresentationContextItemRQ
    _other_context_item: ClassVar[type] = PresentationContextItemAC


class AAssociateAcPDU(AAssociatePDUBase):
    """A-ASSOCIATE-AC PDU (PS3.8 9.3.3). The AE titles are those of the RQ, returned
    but not tested (PS3.8 Table 9-17)."""

    pdu_type: ClassVar[int] = 2
    _context_item: ClassVar[type] = PresentationContextItemAC
    _other_context_item: ClassVar[type] = PresentationContextItemRQ


class _FixedPDU(_PDU):
    """PDUs whose length is always 4 (PS3.8 9.3.4, 9.3.6-9.3.8)."""

    pdu_length: ClassVar[int] = _FIXED_PDU_LENGTH

    @staticmethod
    def total_length() -> int:
        """Always 10: a fixed-length PDU."""
        return PDU_HEADER.size + _FIXED_PDU_LENGTH


class AAssociateRjPDU(_FixedPDU):
    """A-ASSOCIATE-RJ PDU (PS3.8 9.3.4): result 1 permanent / 2 transient, source and
    reason/diag as in exceptions.REJECT_REASONS. ``reserved1`` follows the PDU type,
    ``reserved2`` the length."""

    pdu_type: ClassVar[int] = 3
    _fields = ("result", "source", "reason_diag", "reserved1", "reserved2")

    def __init__(self, result: int, source: int, reason_diag: int, reserved1: int = 0,
                 reserved2: int = 0) -> None:
        self.result = result
        self.source = source
        self.reason_diag = reason_diag
        self.reserved1 = reserved1
        self.reserved2 = reserved2

    def encode(self) -> bytes:
        """Encode the PDU for the wire."""
        return _FIXED_FOUR.pack(self.pdu_type, self.reserved1, _FIXED_PDU_LENGTH, self.reserved2,
                                self.result, self.source, self.reason_diag)

    @classmethod
    def decode(cls, rawstring: bytes | memoryview) -> AAssociateRjPDU:
        """Decode a whole A-ASSOCIATE-RJ PDU."""
        view, _, length = _check_header(rawstring, cls.pdu_type)
        if length != _FIXED_PDU_LENGTH:
            raise protocol_error(f"A-ASSOCIATE-RJ length {length}, must be 4")
        _, reserved1, _, reserved2, result, source, reason = _FIXED_FOUR.unpack_from(view)
        return cls(result, source, reason, reserved1, reserved2)


class AReleasePDUBase(_FixedPDU):
    """Base of A-RELEASE-RQ/RP (PS3.8 9.3.6, 9.3.7): ``reserved1`` follows the PDU
    type, ``reserved2`` is the 4-byte field after the length."""

    pdu_type: ClassVar[int] = 0
    _fields = ("reserved1", "reserved2")

    def __init__(self, reserved1: int = 0, reserved2: int = 0) -> None:
        self.reserved1 = reserved1
        self.reserved2 = reserved2

    def encode(self) -> bytes:
        """Encode the PDU for the wire."""
        return _RELEASE.pack(self.pdu_type, self.reserved1, _FIXED_PDU_LENGTH, self.reserved2)

    @classmethod
    def decode(cls, rawstring: bytes | memoryview):
        """Decode a whole A-RELEASE-RQ/RP PDU."""
        view, _, length = _check_header(rawstring, cls.pdu_type)
        if length != _FIXED_PDU_LENGTH:
            raise protocol_error(f"A-RELEASE length {length}, must be 4")
        _, reserved1, _, reserved2 = _RELEASE.unpack_from(view)
        return cls(reserved1, reserved2)


class AReleaseRqPDU(AReleasePDUBase):
    """A-RELEASE-RQ PDU (PS3.8 9.3.6)."""

    pdu_type: ClassVar[int] = 5


class AReleaseRpPDU(AReleasePDUBase):
    """A-RELEASE-RP PDU (PS3.8 9.3.7)."""

    pdu_type: ClassVar[int] = 6


class AAbortPDU(_FixedPDU):
    """A-ABORT PDU (PS3.8 9.3.8): source 0 service-user / 2 service-provider, reason/diag
    meaningful for source 2 (exceptions.ABORT_REASONS). ``reserved1`` follows the PDU
    type; ``reserved2`` and ``reserved3`` are the two bytes after the length."""

    pdu_type: ClassVar[int] = 7
    _fields = ("source", "reason_diag", "reserved1", "reserved2", "reserved3")

    def __init__(self, source: int, reason_diag: int, reserved1: int = 0, reserved2: int = 0,
                 reserved3: int = 0) -> None:
        self.source = source
        self.reason_diag = reason_diag
        self.reserved1 = reserved1
        self.reserved2 = reserved2
        self.reserved3 = reserved3

    def encode(self) -> bytes:
        """Encode the PDU for the wire."""
        return _FIXED_FOUR.pack(self.pdu_type, self.reserved1, _FIXED_PDU_LENGTH, self.reserved2,
                                self.reserved3, self.source, self.reason_diag)

    @classmethod
    def decode(cls, rawstring: bytes | memoryview) -> AAbortPDU:
        """Decode a whole A-ABORT PDU."""
        view, _, length = _check_header(rawstring, cls.pdu_type)
        if length != _FIXED_PDU_LENGTH:
            raise protocol_error(f"A-ABORT length {length}, must be 4")
        _, reserved1, _, reserved2, reserved3, source, reason = _FIXED_FOUR.unpack_from(view)
        return cls(source, reason, reserved1, reserved2, reserved3)


#: P-DATA-TF PDUs of at most this many bytes of values are handed on as one joined buffer.
_JOIN_BELOW = 1024


class PDataTfPDU(_PDU):
    """P-DATA-TF PDU (PS3.8 9.3.5): one or more PresentationDataValueItems.

    The hot path: :meth:`decode` walks the PDVs with precompiled structs over a
    memoryview and copies each value once; :meth:`encode_parts` hands the driver
    the headers and the values themselves, so a large value is never copied to send.
    """

    pdu_type: ClassVar[int] = 4
    _fields = ("data_value_items", "reserved")

    def __init__(self, data_value_items: list[PresentationDataValueItem] | None = None,
                 reserved: int = 0) -> None:
        self.data_value_items = [] if data_value_items is None else data_value_items
        self.reserved = reserved

    @property
    def pdu_length(self) -> int:
        """PDU length without the header."""
        return sum(5 + len(pdv.data_value) for pdv in self.data_value_items)

    def encode_parts(self) -> list[bytes | memoryview]:
        """Buffers whose concatenation is :meth:`encode`, for one ``sendmsg`` without copying
        the values; a short PDU (a C-FIND response) is one buffer: copying a few hundred
        bytes costs less than a gathered write's entry for each of its five pieces."""
        pack = _PDV_HEADER.pack
        length = self.pdu_length
        parts: list[bytes | memoryview] = [PDU_HEADER.pack(self.pdu_type, self.reserved, length)]
        for pdv in self.data_value_items:
            parts.append(pack(1 + len(pdv.data_value), pdv.context_id))
            parts.append(pdv.data_value)
        if length <= _JOIN_BELOW and all(type(p) is bytes for p in parts):
            return [b"".join(parts)]
        return parts

    def encode(self) -> bytes:
        """Encode the PDU for the wire (a value that is not a buffer, such as a
        ``fragmentation.FileRegion``, gives its bytes)."""
        return b"".join(p if isinstance(p, (bytes, bytearray, memoryview)) else bytes(p)
                        for p in self.encode_parts())

    @classmethod
    def decode(cls, rawstring: bytes | bytearray | memoryview, copy: bool = True) -> PDataTfPDU:
        """Decode a whole P-DATA-TF PDU; each PDV must fit inside the PDU and hold at
        least its message control header (PS3.8 9.3.5.1, E.2).

        Extension: ``copy=False`` leaves each ``data_value`` a memoryview of ``rawstring``
        instead of ``bytes`` — the DUL's receive path, whose buffer is fresh per PDU and
        whose DIMSE decoder writes or copies each fragment at once (one pass over the data
        fewer per PDU)."""
        view, reserved, length = _check_header(rawstring, cls.pdu_type)
        end = len(view)
        offset = PDU_HEADER.size
        unpack_from = _PDV_HEADER.unpack_from
        items = []
        append = items.append
        while offset < end:
            if end - offset < _PDV_HEADER.size:
                raise protocol_error("P-DATA-TF: trailing bytes shorter than a PDV header")
            item_length, context_id = unpack_from(view, offset)
            start = offset + _PDV_HEADER.size
            offset += 4 + item_length
            if item_length < 2:
                raise protocol_error(f"PDV item length {item_length}: no message control header")
            if offset > end:
                raise protocol_error(f"PDV item length {item_length} overruns the P-DATA-TF PDU")
            append(PresentationDataValueItem(context_id, bytes(view[start:offset]) if copy
                                             else view[start:offset]))
        return cls(items, reserved)


#: The 12 bytes before each value of a ``PDataFileRun``: PDU type, reserved, PDU length, PDV
#: item length, presentation context ID, message control header (PS3.8 9.3.5, E.2).
_RUN_PDU_HEADER = Struct(">BBIIBB")


class PDataFileRun:
    """Consecutive P-DATA-TF PDUs of one message, one PDV each, whose values are the
    fragments of one region of a file: what 33 ``PDataTfPDU`` objects are for a 0.5 MB
    data set at a peer's 16 KiB maximum, as one object.

    Why: built PDU by PDU, a message costs a few Python objects and calls per PDU before a
    byte moves; a run is laid out at once (``layout``), its headers packed in place and the
    file's bytes read around them by the DUL (one ``preadv``) or sent with ``sendfile``
    (``pdus``), so the cost per file no longer grows with the number of PDUs. The state
    machine sees it as the P-DATA request it is (``pdu_type`` 4); ``encode_parts`` hands the
    run itself to the writer; ``bytes()`` is its wire encoding (TLS, a trace).

    ``source`` has ``fileno()`` and ``read_region(offset, length)`` (the storage SCU's data
    set reader); ``fragment`` is the value size of every PDU but the last; ``normal`` and
    ``final`` are the message control headers of the PDUs and of the run's last PDU
    (``final`` marks the data set's last fragment when the run ends the message).
    """

    __slots__ = ("context_id", "source", "offset", "length", "fragment", "normal", "final")

    pdu_type: ClassVar[int] = 4

    def __init__(self, context_id: int, source: object, offset: int, length: int, fragment: int,
                 normal: int, final: int) -> None:
        if fragment <= 0:
            raise ValueError("a run needs a positive fragment size")
        self.context_id, self.source, self.offset, self.length = context_id, source, offset, length
        self.fragment, self.normal, self.final = fragment, normal, final

    def __repr__(self) -> str:
        return (f"PDataFileRun(context_id={self.context_id}, {self.count} PDUs, "
                f"{self.length} bytes at {self.offset})")

    @property
    def count(self) -> int:
        """Number of PDUs (an empty region is one PDU with an empty fragment)."""
        return max(1, -(-self.length // self.fragment))

    def __len__(self) -> int:
        """Bytes on the wire: the data and 12 header bytes per PDU."""
        return self.length + _RUN_PDU_HEADER.size * self.count

    def pdus(self) -> list[tuple[bytes, int, int]]:
        """(12 header bytes, file offset, length) of each PDU, in order."""
        out = []
        pack = _RUN_PDU_HEADER.pack
        offset, left, last = self.offset, self.length, self.count - 1
        for index in range(last + 1):
            size = min(self.fragment, left)
            code = self.final if index == last else self.normal
            out.append((pack(4, 0, 6 + size, 2 + size, self.context_id, code), offset, size))
            offset += size
            left -= size
        return out

    def layout(self, buffer: bytearray | memoryview) -> list[memoryview]:
        """Pack every PDU's header into ``buffer`` (at least ``len(self)`` bytes) and return
        the views between them, in order, where the file's bytes go (from ``offset`` on,
        one after the other): a ``preadv`` of the region into these views completes the
        run's wire encoding in ``buffer[:len(self)]``."""
        view = memoryview(buffer)
        pack_into = _RUN_PDU_HEADER.pack_into
        head = _RUN_PDU_HEADER.size
        slots = []
        position, left, last = 0, self.length, self.count - 1
        for index in range(last + 1):
            size = min(self.fragment, left)
            pack_into(buffer, position, 4, 0, 6 + size, 2 + size, self.context_id,
                      self.final if index == last else self.normal)
            position += head
            slots.append(view[position:position + size])
            position += size
            left -= size
        return slots

    def encode_parts(self) -> list:
        """The run is one part for the writer (which knows how to fill it)."""
        return [self]

    def encode(self) -> bytes:
        return bytes(self)

    def __bytes__(self) -> bytes:
        data = memoryview(self.source.read_region(self.offset, self.length))
        buffer = bytearray(len(self))
        position = 0
        for slot in self.layout(buffer):
            slot[:] = data[position:position + len(slot)]
            position += len(slot)
        return bytes(buffer)


#: The 12 bytes before the value of a PDV that a P-DATA-TF PDU begins with, and the 6 before
#: each further PDV's value (PS3.8 9.3.5, E.2): see ``PDataTfBytes``.
PDATA_HEAD = _RUN_PDU_HEADER
PDV_HEAD = Struct(">IBB")


class PDataTfBytes:
    """P-DATA-TF PDUs already encoded, one after the other in one buffer: what many small
    ``PDataTfPDU`` objects are (a C-FIND SCP's pending responses, each one PDU of two PDVs,
    ``PDATA_HEAD`` and ``PDV_HEAD`` packed by the sender), as one object and one buffer.

    Why: a C-FIND answers thousands of responses whose command sets are the same bytes;
    built as a message and a PDU object each, their objects cost more than the row they
    carry (issue 14). The state machine sees the P-DATA request it is (``pdu_type`` 4) and
    the writer one buffer; ``count`` PDUs are in it."""

    __slots__ = ("data", "count")

    pdu_type: ClassVar[int] = 4

    def __init__(self, data: bytes, count: int) -> None:
        self.data, self.count = data, count

    def __repr__(self) -> str:
        return f"PDataTfBytes({self.count} PDUs, {len(self.data)} bytes)"

    def __len__(self) -> int:
        return len(self.data)

    def total_length(self) -> int:
        return len(self.data)

    def encode_parts(self) -> list[bytes]:
        return [self.data]

    def encode(self) -> bytes:
        return self.data

    def __bytes__(self) -> bytes:
        return self.data


PDU = Union[AAssociateRqPDU, AAssociateAcPDU, AAssociateRjPDU, PDataTfPDU,
            AReleaseRqPDU, AReleaseRpPDU, AAbortPDU]

PDU_TYPES: dict[int, type] = {cls.pdu_type: cls for cls in (
    AAssociateRqPDU, AAssociateAcPDU, AAssociateRjPDU, PDataTfPDU, AReleaseRqPDU,
    AReleaseRpPDU, AAbortPDU)}
"""PDU classes by PDU type (PS3.8 Table 9-1 ff.)."""

_FIXED_LENGTH_TYPES = frozenset({3, 5, 6, 7})
_ASSOCIATE_TYPES = frozenset({1, 2})


def parse_pdu_header(header: bytes | memoryview) -> tuple[int, int]:
    """(pdu_type, length) of the 6-byte PDU header (PS3.8 9.3.1)."""
    if len(header) < PDU_HEADER.size:
        raise protocol_error("PDU header shorter than 6 bytes")
    pdu_type, _reserved, length = PDU_HEADER.unpack_from(header)
    return pdu_type, length


def check_pdu_length(pdu_type: int, length: int, max_pdu_length: int) -> None:
    """Refuse a PDU from its header alone, before its body is read.

    ``max_pdu_length`` is our Maximum Length Received (PS3.8 D.1: the limit of the
    P-DATA-TF variable field; 0 means no limit). Other PDUs are capped at
    :data:`MAX_CONTROL_PDU_LENGTH`; RJ, release and abort must have length 4.

    :raises exceptions.PDUProcessingError: reason 1 for an unknown PDU type, 6 otherwise
    """
    if pdu_type not in PDU_TYPES:
        raise protocol_error(f"unrecognized PDU type 0x{pdu_type:02X}", ABORT_REASON_UNRECOGNIZED_PDU)
    if pdu_type == PDataTfPDU.pdu_type:
        if max_pdu_length and length > max_pdu_length:
            raise protocol_error(f"P-DATA-TF length {length} above our maximum {max_pdu_length}")
    elif pdu_type in _FIXED_LENGTH_TYPES:
        if length != _FIXED_PDU_LENGTH:
            raise protocol_error(f"PDU type {pdu_type} length {length}, must be 4")
    elif length > MAX_CONTROL_PDU_LENGTH:
        raise protocol_error(f"PDU type {pdu_type} length {length} above {MAX_CONTROL_PDU_LENGTH}")
    elif length < _ASSOCIATE_FIXED.size - PDU_HEADER.size:
        raise protocol_error(f"A-ASSOCIATE length {length} shorter than its fixed fields")


def decode_pdu(raw: bytes | memoryview) -> PDU:
    """Decode any whole PDU by its type byte.

    :raises exceptions.PDUProcessingError: reason 1 for an unknown PDU type,
        4/5/6 for a malformed PDU
    """
    if len(raw) < PDU_HEADER.size:
        raise protocol_error("PDU shorter than its 6-byte header")
    cls = PDU_TYPES.get(raw[0])
    if cls is None:
        raise protocol_error(f"unrecognized PDU type 0x{raw[0]:02X}", ABORT_REASON_UNRECOGNIZED_PDU)
    return cls.decode(raw)


#: The framer's buffer starts this size and grows, once, to the longest PDU received.
FRAMER_BUFFER_START = 64 * 1024
#: P-DATA-TF PDUs at least this long are handed on as a view of the framer's buffer (no
#: copy); shorter PDUs, and every other PDU, get bytes of their own.
FRAMER_VIEW_MIN = 64 * 1024


class PDUFramer:
    """Cut a byte stream into whole raw PDUs (PS3.8 9.3.1): the one framer of the stack.

    The header is checked with :func:`check_pdu_length` as soon as its 6 bytes are
    buffered, so an oversize or unknown PDU is refused before its body is read;
    after such an error the framer keeps refusing (the association must be aborted).

    Bytes arrive either with :meth:`feed` (a copy) or straight from the transport:
    :meth:`recv_buffer` gives the free space of the framer's one buffer, the driver
    ``recv_into``-s it and reports the count with :meth:`advance`. The buffer grows once
    to the longest PDU and is then reused; a long P-DATA-TF (``FRAMER_VIEW_MIN``) is handed
    on as a view of it, no allocation or copy per PDU. A view stays valid while somebody
    holds it: the buffer is written again only when no view of it is alive (else the
    unframed bytes move to a fresh buffer).
    """

    def __init__(self, max_pdu_length: int = 0) -> None:
        self.max_pdu_length = max_pdu_length
        self._buffer = bytearray(FRAMER_BUFFER_START)
        self._start = 0  # unframed bytes are _buffer[_start:_end]
        self._end = 0
        self._expected: int | None = None  # total length of the PDU being buffered
        self._error: PDUProcessingError | None = None

    # -- input
    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the transport."""
        data = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
        size = len(data)
        if not size:
            return
        self._make_room(size)
        self._buffer[self._end:self._end + size] = data
        self._end += size

    def recv_buffer(self, min_size: int = 1) -> memoryview:
        """Free space at the end of the buffer (at least ``min_size`` bytes, and room for
        the whole PDU once its header is known) for the transport to read into."""
        have = self._end - self._start
        # Room for the rest of the PDU whose header is known (never more: a buffer grows
        # only to the longest PDU), else ``min_size`` for the next header and more.
        self._make_room(max(self._expected - have, 1) if self._expected is not None
                        else max(min_size, PDU_HEADER.size - have))
        if self._expected is not None and self._expected >= FRAMER_VIEW_MIN \
                and self._start + self._expected >= self._end + min_size:
            # a long PDU's body: read exactly to its end, so that it is not moved later
            return memoryview(self._buffer)[self._end:self._start + self._expected]
        return memoryview(self._buffer)[self._end:]

    def _make_room(self, want: int) -> None:
        """At least ``want`` free bytes after the unframed ones (compact or grow once)."""
        self._reclaim()
        have = self._end - self._start
        if self._start + have + want > len(self._buffer):
            total = have + want
            if total > len(self._buffer):
                fresh = bytearray(max(total, FRAMER_BUFFER_START))
                fresh[:have] = self._buffer[self._start:self._end]
                self._buffer = fresh
            else:
                self._buffer[:have] = self._buffer[self._start:self._end]
            self._start, self._end = 0, have

    def advance(self, count: int) -> None:
        """``count`` bytes were written into the last :meth:`recv_buffer`."""
        self._end += count

    def _reclaim(self) -> None:
        """Write into the buffer only when no view of it is alive (a PDU somebody kept:
        the protocol trace, a test); otherwise move the unframed bytes to a buffer of their own."""
        if sys.getrefcount(self._buffer) > 2:  # the attribute and the call's argument
            have = self._end - self._start
            fresh = bytearray(max(FRAMER_BUFFER_START, have))
            fresh[:have] = self._buffer[self._start:self._end]
            self._buffer, self._start, self._end = fresh, 0, have

    # -- state
    @property
    def buffered(self) -> int:
        """Bytes held that are not yet part of a returned PDU."""
        return self._end - self._start

    @property
    def bytes_needed(self) -> int:
        """How many more bytes complete the current header or PDU (a hint for recv)."""
        have = self._end - self._start
        if self._expected is None:
            return max(PDU_HEADER.size - have, 0) or 1
        return max(self._expected - have, 1)

    @property
    def expected_length(self) -> int | None:
        """Total length of the PDU whose header is buffered, else None."""
        return self._expected

    def discard(self) -> None:
        """Drop every buffered byte (after a refused PDU nothing can be framed again)."""
        self._start = self._end = 0
        self._expected = None

    def close(self) -> None:
        """Let go of the buffer (the association ended); the framer stays usable."""
        self.discard()
        self._buffer = bytearray()

    # -- output
    def next_pdu(self) -> bytes | memoryview | None:
        """The next whole raw PDU (header included), or None until more data arrives.

        A long P-DATA-TF comes as a view of the buffer, every other PDU as bytes.

        :raises exceptions.PDUProcessingError: the header announces a PDU that is
            unknown or longer than allowed
        """
        if self._error is not None:
            raise self._error
        start, have = self._start, self._end - self._start
        if self._expected is None:
            if have < PDU_HEADER.size:
                return None
            pdu_type, _reserved, length = PDU_HEADER.unpack_from(self._buffer, start)
            try:
                check_pdu_length(pdu_type, length, self.max_pdu_length)
            except PDUProcessingError as exc:
                self._error = exc
                raise
            self._expected = PDU_HEADER.size + length
        total = self._expected
        if have < total:
            return None
        end = start + total
        if end == self._end:
            self._start = self._end = 0
        else:
            self._start = end
        self._expected = None
        if total >= FRAMER_VIEW_MIN and self._buffer[start] == PDataTfPDU.pdu_type:
            return memoryview(self._buffer)[start:end]
        return bytes(self._buffer[start:end])
