"""User Information sub-items (PS3.8 Annex D, PS3.7 Annex D.3.3).

The sub-items travel inside the User Information Item (PS3.8 9.3.2.3) of the
A-ASSOCIATE-RQ and -AC PDUs. Each class has ``encode() -> bytes`` and a
``decode(stream)`` classmethod reading from a binary stream positioned at the
sub-item header; ``item_length`` and ``total_length`` are properties (as in
the reference, unlike the PDU items of :mod:`dicomdesk.net.pdu`, whose
``total_length()`` is a method).

Every sub-item shares the 4-byte header of PS3.8 Table 9-16: item type (1),
reserved (1), item length (2, big endian). A decoder never raises anything but
:class:`~dicomdesk.net.exceptions.PDUProcessingError` on the peer's bytes.
Reserved fields are kept but never tested (PS3.8 9.3.1). Sub-item types
without a class here become :class:`GenericUserDataSubItem`, so unknown
negotiation from a peer is skipped rather than refused (PS3.7 D.3.3).

The helpers ``read_item``, ``iter_items``, ``decode_uid``/``encode_uid`` and
``protocol_error`` are shared with :mod:`dicomdesk.net.pdu`.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterable, Iterator
from struct import Struct
from typing import IO, ClassVar

from dicomdesk.net.exceptions import (
    ABORT_REASON_INVALID_PDU_PARAMETER_VALUE,
    ABORT_SOURCE_SERVICE_PROVIDER,
    PDUProcessingError,
)
from dicomdesk.net.records import Record

logger = logging.getLogger(__name__)

# Item header shared by every item and sub-item (PS3.8 Table 9-12 ff.).
ITEM_HEADER = Struct(">BBH")
_U16 = Struct(">H")
_U16_PAIR = Struct(">HH")
_U32 = Struct(">I")
_U8_U8_U16 = Struct(">BBH")

_UID_PADDING = "\x00 "


def protocol_error(message: str, reason: int = ABORT_REASON_INVALID_PDU_PARAMETER_VALUE
                   ) -> PDUProcessingError:
    """The error for a peer's malformed bytes: A-ABORT source 2 (service-provider), PS3.8 9.3.8."""
    return PDUProcessingError(message, ABORT_SOURCE_SERVICE_PROVIDER, reason)


def decode_uid(raw: bytes | memoryview) -> str:
    """A UID from the wire: latin-1 never fails, trailing NUL/space padding sent by
    some devices is stripped (PS3.8 9.3.2.2.1 says UIDs are not padded; be tolerant)."""
    return bytes(raw).decode("latin-1").rstrip(_UID_PADDING)


def encode_uid(uid: str) -> bytes:
    """A UID for the wire, unpadded (PS3.8 9.3.2.2.1, PS3.5 9.1)."""
    return str(uid).encode("latin-1")


def read_exact(stream: IO[bytes], size: int) -> bytes:
    """Read exactly ``size`` bytes or refuse: a short read means a length field
    that overruns its parent (PS3.8 9.3.1)."""
    data = stream.read(size) if size else b""
    if data is None or len(data) != size:
        raise protocol_error(f"item truncated: {size} bytes declared, "
                             f"{0 if data is None else len(data)} available")
    return bytes(data)


def read_item(stream: IO[bytes]) -> tuple[int, int, bytes] | None:
    """Read one item (type, reserved, body) from ``stream``; None at a clean end of stream."""
    header = stream.read(ITEM_HEADER.size)
    if not header:
        return None
    if len(header) != ITEM_HEADER.size:
        raise protocol_error("item header truncated")
    item_type, reserved, length = ITEM_HEADER.unpack(header)
    return item_type, reserved, read_exact(stream, length)


def iter_items(buffer: bytes | memoryview) -> Iterator[tuple[int, int, bytes]]:
    """Split a buffer into consecutive items (type, reserved, body); an item that
    overruns the buffer, or leftover bytes shorter than a header, is an error."""
    end = len(buffer)
    offset = 0
    unpack_from = ITEM_HEADER.unpack_from
    while offset < end:
        if end - offset < ITEM_HEADER.size:
            raise protocol_error("trailing bytes shorter than an item header")
        item_type, reserved, length = unpack_from(buffer, offset)
        start = offset + ITEM_HEADER.size
        offset = start + length
        if offset > end:
            raise protocol_error(f"item 0x{item_type:02X} length {length} overruns its parent")
        yield item_type, reserved, bytes(buffer[start:offset])


def _header(item_type: int, reserved: int, length: int) -> bytes:
    if length > 0xFFFF:
        raise ValueError(f"item 0x{item_type:02X} too long: {length} bytes (max 65535)")
    return ITEM_HEADER.pack(item_type, reserved, length)


def _uid_with_length(body: bytes, offset: int, what: str) -> tuple[str, int]:
    """A 2-byte length followed by a UID (PS3.7 Tables D.3-9 ff.); returns (uid, next offset)."""
    if len(body) < offset + 2:
        raise protocol_error(f"{what} length missing")
    (length,) = _U16.unpack_from(body, offset)
    start = offset + 2
    if start + length > len(body):
        raise protocol_error(f"{what} length {length} overruns its sub-item")
    return decode_uid(body[start:start + length]), start + length


def _as_text(value: str | bytes | bytearray | memoryview, encoding: str = "latin-1") -> str:
    """A text field given as bytes becomes ``str``, as decoding gives it back (so an item
    built from bytes equals the item its encoding decodes to)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode(encoding, "surrogateescape")
    return value


def _as_binary(value: str | bytes | bytearray | memoryview) -> bytes:
    """A binary field given as ``str`` becomes UTF-8 bytes, as it goes on the wire."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)


class _SubItem(Record):
    """Shared decode(stream): read the header, check the type, build from the body."""

    item_type: ClassVar[int]

    @classmethod
    def decode(cls, stream: IO[bytes]):
        """Decode one sub-item of this class from ``stream`` (positioned at its header)."""
        item = read_item(stream)
        if item is None:
            raise protocol_error(f"end of data where sub-item 0x{cls.item_type:02X} expected")
        item_type, reserved, body = item
        if item_type != cls.item_type:
            raise protocol_error(f"sub-item type 0x{item_type:02X} where 0x{cls.item_type:02X} expected")
        return cls.from_body(body, reserved)

    @classmethod
    def from_body(cls, body: bytes, reserved: int):  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def total_length(self) -> int:
        """Sub-item length including its 4-byte header."""
        return self.item_length + ITEM_HEADER.size

    def encode(self) -> bytes:
        """Encode the sub-item (header and value) for the wire."""
        body = self._body()
        return _header(self.item_type, self.reserved, len(body)) + body

    @property
    def item_length(self) -> int:
        """Length of the sub-item value, excluding the header."""
        return len(self._body())

    def _body(self) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError


class MaximumLengthSubItem(_SubItem):
    """Maximum Length sub-item (PS3.8 D.1): the largest P-DATA-TF variable field the
    sender will receive; 0 means no limit. Used in both RQ and AC."""

    item_type: ClassVar[int] = 0x51
    item_length = 4  # fixed by PS3.8 Table D.1-1 (a field: the property's place)
    _fields = ("maximum_length_received", "reserved", "item_length")

    def __init__(self, maximum_length_received: int, reserved: int = 0, item_length: int = 4) -> None:
        self.maximum_length_received = maximum_length_received
        self.reserved = reserved
        self.item_length = item_length

    @property
    def total_length(self) -> int:
        """Always 8: a fixed-length sub-item."""
        return 8

    def encode(self) -> bytes:
        """Encode the sub-item (its length field is always 4)."""
        return ITEM_HEADER.pack(self.item_type, self.reserved, 4) + _U32.pack(self.maximum_length_received)

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> MaximumLengthSubItem:
        if len(body) != 4:
            raise protocol_error(f"maximum length sub-item length {len(body)}, must be 4")
        return cls(_U32.unpack(body)[0], reserved, 4)


class ImplementationClassUIDSubItem(_SubItem):
    """Implementation Class UID sub-item (PS3.7 D.3.3.2), identifies the peer's software."""

    item_type: ClassVar[int] = 0x52
    _fields = ("implementation_class_uid", "reserved")

    def __init__(self, implementation_class_uid: str, reserved: int = 0) -> None:
        self.implementation_class_uid = _as_text(implementation_class_uid)
        self.reserved = reserved

    def _body(self) -> bytes:
        return encode_uid(self.implementation_class_uid)

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> ImplementationClassUIDSubItem:
        return cls(decode_uid(body), reserved)


class AsynchronousOperationsWindowSubItem(_SubItem):
    """Asynchronous Operations Window sub-item (PS3.7 D.3.3.3); 0 means unlimited."""

    item_type: ClassVar[int] = 0x53
    item_length = 4  # fixed by PS3.7 Table D.3-7 (a field: the property's place)
    _fields = ("max_num_ops_invoked", "max_num_ops_performed", "reserved", "item_length")

    def __init__(self, max_num_ops_invoked: int, max_num_ops_performed: int, reserved: int = 0,
                 item_length: int = 4) -> None:
        self.max_num_ops_invoked = max_num_ops_invoked
        self.max_num_ops_performed = max_num_ops_performed
        self.reserved = reserved
        self.item_length = item_length

    @property
    def total_length(self) -> int:
        """Always 8: a fixed-length sub-item."""
        return 8

    def encode(self) -> bytes:
        """Encode the sub-item (its length field is always 4)."""
        return (ITEM_HEADER.pack(self.item_type, self.reserved, 4)
                + _U16_PAIR.pack(self.max_num_ops_invoked, self.max_num_ops_performed))

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> AsynchronousOperationsWindowSubItem:
        if len(body) != 4:
            raise protocol_error(f"asynchronous operations window length {len(body)}, must be 4")
        invoked, performed = _U16_PAIR.unpack(body)
        return cls(invoked, performed, reserved, 4)


class ScpScuRoleSelectionSubItem(_SubItem):
    """SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4): 1 = role supported, 0 = not."""

    item_type: ClassVar[int] = 0x54
    _fields = ("sop_class_uid", "scu_role", "scp_role", "reserved")

    def __init__(self, sop_class_uid: str, scu_role: int, scp_role: int, reserved: int = 0) -> None:
        self.sop_class_uid = _as_text(sop_class_uid)
        self.scu_role = scu_role
        self.scp_role = scp_role
        self.reserved = reserved

    def _body(self) -> bytes:
        uid = encode_uid(self.sop_class_uid)
        return _U16.pack(len(uid)) + uid + bytes((self.scu_role, self.scp_role))

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> ScpScuRoleSelectionSubItem:
        uid, offset = _uid_with_length(body, 0, "role selection SOP class UID")
        if len(body) != offset + 2:
            raise protocol_error("role selection sub-item: SCU/SCP role bytes missing or extra bytes")
        return cls(uid, body[offset], body[offset + 1], reserved)


class ImplementationVersionNameSubItem(_SubItem):
    """Implementation Version Name sub-item (PS3.7 D.3.3.2), 1 to 16 characters."""

    item_type: ClassVar[int] = 0x55
    _fields = ("implementation_version_name", "reserved")

    def __init__(self, implementation_version_name: str, reserved: int = 0) -> None:
        self.implementation_version_name = _as_text(implementation_version_name)
        self.reserved = reserved

    def _body(self) -> bytes:
        return str(self.implementation_version_name).encode("latin-1")

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> ImplementationVersionNameSubItem:
        return cls(body.decode("latin-1").rstrip(_UID_PADDING), reserved)


class SOPClassExtendedNegotiationSubItem(_SubItem):
    """SOP Class Extended Negotiation sub-item (PS3.7 D.3.3.5): service-class specific
    application information, kept as bytes."""

    item_type: ClassVar[int] = 0x56
    _fields = ("sop_class_uid", "app_info", "reserved")

    def __init__(self, sop_class_uid: str, app_info: bytes, reserved: int = 0) -> None:
        self.sop_class_uid = _as_text(sop_class_uid)
        self.app_info = _as_binary(app_info)
        self.reserved = reserved

    def _body(self) -> bytes:
        uid = encode_uid(self.sop_class_uid)
        return _U16.pack(len(uid)) + uid + bytes(self.app_info)

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> SOPClassExtendedNegotiationSubItem:
        uid, offset = _uid_with_length(body, 0, "extended negotiation SOP class UID")
        return cls(uid, body[offset:], reserved)


class SOPClassCommonExtendedNegotiationSubItem(_SubItem):
    """SOP Class Common Extended Negotiation sub-item (PS3.7 D.3.3.6): the service class
    of a (specialised) SOP class and its related general SOP classes. ``reserved`` is
    the sub-item version field (0)."""

    item_type: ClassVar[int] = 0x57
    _fields = ("sop_class_uid", "service_class_uid", "related_general_sop_class_uids", "reserved")

    def __init__(self, sop_class_uid: str, service_class_uid: str,
                 related_general_sop_class_uids: Iterable[str] = (), reserved: int = 0) -> None:
        self.sop_class_uid = _as_text(sop_class_uid)
        self.service_class_uid = _as_text(service_class_uid)
        self.related_general_sop_class_uids = [_as_text(uid) for uid in related_general_sop_class_uids]
        self.reserved = reserved

    def _body(self) -> bytes:
        sop = encode_uid(self.sop_class_uid)
        service = encode_uid(self.service_class_uid)
        related = b"".join(_U16.pack(len(u)) + u
                           for u in map(encode_uid, self.related_general_sop_class_uids))
        return (_U16.pack(len(sop)) + sop + _U16.pack(len(service)) + service
                + _U16.pack(len(related)) + related)

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> SOPClassCommonExtendedNegotiationSubItem:
        sop, offset = _uid_with_length(body, 0, "common extended negotiation SOP class UID")
        service, offset = _uid_with_length(body, offset, "common extended negotiation service class UID")
        if len(body) < offset + 2:
            raise protocol_error("related general SOP class identification length missing")
        (related_length,) = _U16.unpack_from(body, offset)
        offset += 2
        if offset + related_length != len(body):
            raise protocol_error("related general SOP class identification length mismatch")
        related_body = body[offset:]
        related: list[str] = []
        position = 0
        while position < len(related_body):
            uid, position = _uid_with_length(related_body, position, "related general SOP class UID")
            related.append(uid)
        return cls(sop, service, related, reserved)


# PS3.7 Table D.3-14: user identity types whose fields are text.
_TEXT_IDENTITY_TYPES = frozenset({1, 2})


def _identity_bytes(value: str | bytes | bytearray | memoryview) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)


class UserIdentityNegotiationSubItem(_SubItem):
    """User Identity sub-item of the A-ASSOCIATE-RQ, type 0x58 (PS3.7 D.3.3.7.1).

    ``user_identity_type``: 1 username, 2 username and passcode, 3 Kerberos ticket,
    4 SAML assertion, 5 JSON Web Token. Decoded fields are ``str`` (UTF-8; undecodable
    bytes kept via surrogateescape) for types 1 and 2, ``bytes`` otherwise; either
    type is accepted when encoding. The secondary field is written even when empty
    (its length is always present). The passcode is never shown in ``repr``.
    """

    item_type: ClassVar[int] = 0x58
    _fields = ("primary_field", "secondary_field", "user_identity_type", "positive_response_req",
               "reserved")
    _repr_fields = ("primary_field", "user_identity_type", "positive_response_req", "reserved")

    def __init__(self, primary_field: str | bytes, secondary_field: str | bytes = "",
                 user_identity_type: int = 2, positive_response_req: int = 0, reserved: int = 0) -> None:
        self.user_identity_type = user_identity_type
        self.positive_response_req = positive_response_req
        self.reserved = reserved
        # Fields take the type decoding gives them back in: text for types 1 and 2,
        # bytes for the binary types (PS3.7 Table D.3-14).
        if user_identity_type in _TEXT_IDENTITY_TYPES:
            self.primary_field = _as_text(primary_field, "utf-8")
            self.secondary_field = _as_text(secondary_field, "utf-8")
        else:
            self.primary_field = _as_binary(primary_field)
            self.secondary_field = _as_binary(secondary_field)

    def _body(self) -> bytes:
        primary = _identity_bytes(self.primary_field)
        secondary = _identity_bytes(self.secondary_field)
        return (_U8_U8_U16.pack(self.user_identity_type, self.positive_response_req, len(primary))
                + primary + _U16.pack(len(secondary)) + secondary)

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> UserIdentityNegotiationSubItem:
        if len(body) < 4:
            raise protocol_error("user identity sub-item too short")
        identity_type, response_req, primary_length = _U8_U8_U16.unpack_from(body)
        primary_end = 4 + primary_length
        if primary_end + 2 > len(body):
            raise protocol_error("user identity primary field overruns its sub-item")
        (secondary_length,) = _U16.unpack_from(body, primary_end)
        secondary_start = primary_end + 2
        if secondary_start + secondary_length != len(body):
            raise protocol_error("user identity secondary field length mismatch")
        primary: str | bytes = body[4:primary_end]
        secondary: str | bytes = body[secondary_start:]
        if identity_type in _TEXT_IDENTITY_TYPES:
            primary = primary.decode("utf-8", "surrogateescape")
            secondary = secondary.decode("utf-8", "surrogateescape")
        return cls(primary, secondary, identity_type, response_req, reserved)


class UserIdentityNegotiationSubItemAc(_SubItem):
    """User Identity sub-item of the A-ASSOCIATE-AC, type 0x59 (PS3.7 D.3.3.7.2): the
    server response (Kerberos ticket, SAML response or JWT; empty for types 1/2).
    Sent only when the request asked for a positive response."""

    item_type: ClassVar[int] = 0x59
    _fields = ("server_response", "reserved")

    def __init__(self, server_response: bytes, reserved: int = 0) -> None:
        # Binary whatever the identity type (PS3.7 D.3.3.7.2): a str is sent as UTF-8 and
        # held as those bytes, so encode -> decode gives back an equal item.
        self.server_response = _as_binary(server_response)
        self.reserved = reserved

    def _body(self) -> bytes:
        response = _identity_bytes(self.server_response)
        return _U16.pack(len(response)) + response

    @classmethod
    def from_body(cls, body: bytes, reserved: int) -> UserIdentityNegotiationSubItemAc:
        if len(body) < 2:
            raise protocol_error("user identity response sub-item too short")
        (length,) = _U16.unpack_from(body)
        if 2 + length != len(body):
            raise protocol_error("user identity server response length mismatch")
        return cls(body[2:], reserved)


class GenericUserDataSubItem(_SubItem):
    """Any sub-item without a class here (PS3.7 D.3.3: unknown sub-items are ignored by
    the negotiation): the value is kept as bytes, uninterpreted."""

    _fields = ("item_type", "user_data", "reserved")

    def __init__(self, item_type: int, user_data: bytes, reserved: int = 0) -> None:
        self.item_type = item_type
        self.user_data = _as_binary(user_data)
        self.reserved = reserved

    def _body(self) -> bytes:
        return bytes(self.user_data)

    @classmethod
    def decode(cls, stream: IO[bytes]) -> GenericUserDataSubItem:
        """Decode a sub-item of any type, keeping its value as bytes."""
        item = read_item(stream)
        if item is None:
            raise protocol_error("end of data where a user information sub-item was expected")
        item_type, reserved, body = item
        return cls(item_type, body, reserved)


SUB_ITEM_TYPES: types.MappingProxyType[int, type[_SubItem]] = types.MappingProxyType({
    cls.item_type: cls
    for cls in (MaximumLengthSubItem, ImplementationClassUIDSubItem,
                AsynchronousOperationsWindowSubItem, ScpScuRoleSelectionSubItem,
                ImplementationVersionNameSubItem, SOPClassExtendedNegotiationSubItem,
                SOPClassCommonExtendedNegotiationSubItem, UserIdentityNegotiationSubItem,
                UserIdentityNegotiationSubItemAc)
})
"""Sub-item classes by item type; other types decode as GenericUserDataSubItem."""


def sub_item_from_body(item_type: int, reserved: int, body: bytes) -> _SubItem:
    """Build the sub-item of ``item_type`` from its value (the registry dispatch)."""
    cls = SUB_ITEM_TYPES.get(item_type)
    if cls is None:
        logger.debug("unknown user information sub-item 0x%02X kept as generic", item_type)
        return GenericUserDataSubItem(item_type, body, reserved)
    return cls.from_body(body, reserved)
