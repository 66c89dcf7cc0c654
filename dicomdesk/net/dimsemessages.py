"""DIMSE-C and DIMSE-N messages (PS3.7 Sections 9.3 and 10.3), declared field by field.

A message is a Command Set (group 0000, PS3.7 6.3.1) and an optional Data Set; each class
names its Command Field and the command elements PS3.7 lists for it, and reads and writes
them as properties. ``encode`` / ``encode_batches`` hand the message to ``fragmentation``,
which lays it out as P-DATA-TF PDUs no larger than the peer accepts (PS3.8 9.3.5, Annex E);
the reference's ``chunks``, ``fragment`` and ``fragment_file`` live there and are importable
from here too.

As in the reference, messages do not validate required and conditional fields.

A message keeps its command set as a plain ``{element number: value}`` dict
(``commandset.encode_fields``/``decode_fields``), so building, sending, receiving and
reading a message needs no pydicom (``dicomdesk echo`` never imports it).  The
reference's ``command_set`` — a pydicom ``Dataset`` — is built from those fields the
first time it is read; from then on that Dataset is the message's command set, and the
properties read and write it, so both views always agree.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from dicomdesk.net.commandset import (COMMAND_KEYWORDS, COMMAND_VRS, command_dataset, encode_command,
                                      encode_fields, normalise_value)
from dicomdesk.net.dataset_encoding import is_dataset
from dicomdesk.net.exceptions import DIMSEProcessingError
from dicomdesk.net.fragmentation import (  # noqa: F401 - chunks, fragment, fragment_file: the reference's names
    batched, chunks, file_region_of, file_run_batches, fragment, fragment_file,
    message_pdus)
from dicomdesk.net.statuses import Status

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from dicomdesk.net.pdu import PDataTfPDU

logger = logging.getLogger(__name__)

# Command Data Set Type (0000,0800), PS3.7 Table E.1-1: 0101H means "no data set";
# any other value means a data set follows.
NO_DATA_SET = 0x0101
DATA_SET_PRESENT = 0x0001

# Priority (0000,0700), PS3.7 9.1.1.1.3 / Table E.1-1.
PRIORITY_LOW = 0x0002
PRIORITY_MEDIUM = 0x0000
PRIORITY_HIGH = 0x0001


def value_or_none(elem: Any) -> Any:
    """The element's value, or ``None`` when the element is absent."""
    return None if elem is None else elem.value


def _require_encoded(data_set: Any) -> None:
    """A pydicom Dataset is encoded by the association before its message is: only the
    association knows the presentation context's transfer syntax."""
    if is_dataset(data_set):
        raise TypeError('encode the data set in the transfer syntax of the '
                        'presentation context before encoding the message')


def _element(tag: tuple[int, int] | int) -> int:
    """The element number of a group 0000 tag given as an int or a (group, element) pair."""
    if isinstance(tag, tuple):
        group, element = tag
    else:
        group, element = tag >> 16, tag & 0xFFFF
    if group != 0:
        raise ValueError(f'({group:04X},{element:04X}) is not a command element (group 0000)')
    return element


def dimse_property(tag: tuple[int, int] | int) -> property:
    """A property that reads and writes one command element (PS3.7 Annex E).

    Setting ``None`` removes the element, so optional fields stay absent.
    """
    element = _element(tag)
    vr = COMMAND_VRS.get(element, 'UN')

    def getter(self: DIMSEMessage) -> Any:
        value = self.get_command_value(element)
        if value is None and self._fresh and element in self._unset_reads_empty():
            return ''  # as the reference: a field of ``command_fields`` never set reads ''
        return value

    def setter(self: DIMSEMessage, value: Any) -> None:
        self.set_command_value(element, value)

    return property(getter, setter, doc=f'Command element (0000,{element:04X}) ({vr}).')


class StatusMixin:
    """The Status (0000,0900) of a response (PS3.7 9.1.1.1.x, Annex C).

    Read as a ``statuses.Status`` that knows the command it answers, so
    0xA700 reads as the C-STORE or C-FIND meaning as appropriate.
    """

    command_field: ClassVar[int]

    @property
    def status(self) -> Status | str | None:
        """The Status as a ``statuses.Status``; ``''`` (as in the reference) when never set."""
        value = self.get_command_value(0x0900)  # type: ignore[attr-defined]
        if value is None:
            fresh = self._fresh and 0x0900 in self._unset_reads_empty()  # type: ignore[attr-defined]
            return '' if fresh else None
        return Status(value, command=self.command_field)

    @status.setter
    def status(self, value: int | None) -> None:
        self.set_command_value(0x0900, None if value is None else int(value))  # type: ignore[attr-defined]

    # Error reporting fields of failure/warning responses (PS3.7 Annex C).
    offending_element = dimse_property((0x0000, 0x0901))
    error_comment = dimse_property((0x0000, 0x0902))
    error_id = dimse_property((0x0000, 0x0903))


class PriorityMixin:
    """The Priority (0000,0700) of a C-STORE/C-FIND/C-GET/C-MOVE request (PS3.7 9.1.1.1.3)."""

    priority = dimse_property((0x0000, 0x0700))


class DIMSEMessage:
    """Base of the DIMSE messages: a command set and an optional data set.

    ``data_set`` is ``None``, encoded ``bytes``, a pydicom ``Dataset`` (decoded
    by the receiver; a sender's association must encode it first, as only it
    knows the transfer syntax) or a binary file object positioned at the data
    set.  ``data_set_error`` is set by the decoder when a received data set
    could not be decoded or stored, so a service can answer with a failure
    status instead of aborting.
    """

    command_field: ClassVar[int | None] = None
    #: The message's command elements by keyword (PS3.7 Sections 9.3 and 10.3), as the
    #: reference lists them: a message built here carries each of them in ``command_set``
    #: (empty when never set, and an empty element is not sent), and its properties read
    #: ``''`` for one never set, where code written for the reference expects it.
    command_fields: ClassVar[list[str]] = []
    #: Set (on the instance) by the decoder when the data set was refused for what decoding
    #: it would cost (``decode_limits``): the service answers "out of resources", not C000.
    data_set_over_limit: bool = False
    #: Set by the decoder when a ``store_in_file`` data set could not be written to its file
    #: (our open or write failed): the service answers "out of resources", not C000.
    data_set_not_stored: bool = False
    # Default command elements of a fresh message, in addition to Command Field.
    _defaults: ClassVar[dict[int, tuple[str, Any]]] = {}
    # Element numbers of ``command_fields``, per class (built on first use).
    _field_elements: ClassVar[frozenset[int] | None] = None

    sop_class_uid = dimse_property((0x0000, 0x0002))
    affected_sop_class_uid = dimse_property((0x0000, 0x0002))
    requested_sop_class_uid = dimse_property((0x0000, 0x0003))

    def __init__(self, command_set: Dataset | None = None):
        # Exactly one of _fields ({element: value}) and _command_set (a Dataset) is set.
        self._fields: dict[int, Any] | None = None
        self._command_set: Dataset | None = None
        # Built here rather than received: as in the reference, its ``command_fields`` are
        # in its command set from the start (empty) and read ''; a received message's
        # command set is what the peer sent, and an absent field reads None.
        self._fresh = command_set is None
        if command_set is None:
            fields = {0x0000: 0, 0x0100: self.command_field, 0x0800: NO_DATA_SET}
            for tag, (_vr, value) in self._defaults.items():
                fields[_element(tag)] = value
            self._fields = fields
        else:
            self._command_set = command_set
        self.data_set: Any = None
        self.data_set_error: str | None = None

    @classmethod
    def _unset_reads_empty(cls) -> frozenset[int]:
        elements = cls.__dict__.get('_field_elements')
        if elements is None:
            elements = frozenset(COMMAND_KEYWORDS[name] for name in cls.command_fields)
            cls._field_elements = elements
        return elements

    @classmethod
    def from_fields(cls, fields: dict[int, Any]) -> DIMSEMessage:
        """A message whose command set is ``fields`` ({element number: value}, group 0000),
        as ``commandset.decode_fields`` returns it; the dict is kept, not copied."""
        msg = cls()
        msg._fields = fields
        msg._fresh = False
        return msg

    @property
    def command_set(self) -> Dataset:
        """The Command Set as a pydicom ``Dataset`` (the reference's attribute).

        Built from the message's fields on first access; from then on this Dataset is
        the message's command set: the properties read and write it, and changes made to
        it directly are sent.
        """
        ds = self._command_set
        if ds is None:
            assert self._fields is not None
            fields = dict(self._fields)
            for element in self._unset_reads_empty() if self._fresh else ():
                if element not in fields:
                    # empty: '' for text VRs, None (pydicom's empty) for numbers and tags
                    fields[element] = '' if COMMAND_VRS[element] in ('AE', 'UI', 'LO') else None
            ds = self._command_set = command_dataset(fields)
            self._fields = None
        return ds

    @command_set.setter
    def command_set(self, ds: Dataset) -> None:
        self._command_set = ds
        self._fields = None

    def get_command_value(self, element: int) -> Any:
        """The value of command element (0000,element), or ``None`` when it is absent."""
        fields = self._fields
        if fields is not None:
            return fields.get(element)
        assert self._command_set is not None
        return value_or_none(self._command_set.get(element))

    def set_command_value(self, element: int, value: Any) -> None:
        """Set command element (0000,element) with its standard VR; ``None`` removes it."""
        if isinstance(value, str) and not value.strip(' \0'):
            value = None  # an empty value is no value: the element is not sent
        fields = self._fields
        if fields is not None:
            if value is None:
                fields.pop(element, None)
            else:
                fields[element] = normalise_value(element, value)
            return
        ds = self._command_set
        assert ds is not None
        if value is None and self._fresh and element in self._unset_reads_empty():
            vr = COMMAND_VRS[element]
            ds.add_new(element, vr, '' if vr in ('AE', 'UI', 'LO') else None)
        elif value is None:
            if element in ds:
                del ds[element]
        else:
            ds.add_new(element, COMMAND_VRS.get(element, 'UN'), value)

    def __repr__(self) -> str:
        return f'<{type(self).__name__} data_set={type(self.data_set).__name__}>'

    @property
    def command_data_set_type(self) -> int | None:
        """Command Data Set Type (0000,0800): 0101H when there is no data set."""
        return self.get_command_value(0x0800)

    @property
    def has_data_set(self) -> bool:
        """True when the command announces a data set (PS3.7 Table E.1-1)."""
        value = self.command_data_set_type
        return value is not None and value != NO_DATA_SET

    def set_length(self) -> bytes:
        """Set Command Group Length (0000,0000) and return the encoded command set."""
        self._set_data_set_type()
        if self._fields is not None:
            encoded = encode_fields(self._fields)
        else:
            assert self._command_set is not None
            encoded = encode_command(self._command_set, skip_empty=True)
        self.set_command_value(0x0000, len(encoded) - 12)
        return encoded

    def _set_data_set_type(self) -> None:
        # PS3.7 Table E.1-1: 0101H means no data set; keep a peer's "present" value.
        if self.data_set is None:
            self.set_command_value(0x0800, NO_DATA_SET)
        elif self.command_data_set_type in (None, NO_DATA_SET):
            self.set_command_value(0x0800, DATA_SET_PRESENT)

    def encode(self, pc_id: int, max_pdu_length: int) -> Iterator[PDataTfPDU]:
        """Yield the message as P-DATA-TF PDUs (PS3.8 9.3.5, Annex E).

        Command fragments come first, then data fragments; a fragment holds at
        most ``max_pdu_length - 6`` bytes (1 MiB when ``max_pdu_length`` is 0).
        A message whose command set and in-memory data set fit in one PDU together
        goes as one PDU of two PDVs (``fragmentation.message_pdus``).
        """
        _require_encoded(self.data_set)
        yield from message_pdus(pc_id, self.set_length(), self.data_set, max_pdu_length)

    def encode_batches(self, pc_id: int, max_pdu_length: int, batch_bytes: int,
                       runs: bool = True) -> Iterator[list]:
        """Yield the message's P-DATA-TF PDUs in batches of about ``batch_bytes`` (each batch
        is one pass through the state machine and one gathered write).

        A data set that streams from a file region (``file_region()``, the storage SCU's
        reader) goes as ``pdu.PDataFileRun`` objects, one per batch, instead of one
        ``PDataTfPDU`` per fragment: the same PDUs on the wire, laid out at once. Anything
        else, or everything with ``runs=False`` (a trace that shows each PDU), is ``encode``
        cut into batches.
        """
        data_set = self.data_set
        place = None
        if runs and data_set is not None and not isinstance(data_set, (bytes, bytearray, memoryview)):
            place = file_region_of(data_set)  # (a pydicom Dataset has none)
        if place is None:
            _require_encoded(data_set)
            yield from batched(message_pdus(pc_id, self.set_length(), data_set, max_pdu_length),
                               batch_bytes)
            return
        yield from file_run_batches(pc_id, self.set_length(), data_set, place, max_pdu_length,
                                    batch_bytes)


class DIMSERequestMessage(DIMSEMessage):
    """Base of the request messages: they carry a Message ID (PS3.7 9.1.1.1.1)."""

    message_id = dimse_property((0x0000, 0x0110))


class DIMSEResponseMessage(DIMSEMessage):
    """Base of the response messages: they answer a Message ID (PS3.7 9.1.1.1.2)."""

    message_id_being_responded_to = dimse_property((0x0000, 0x0120))


class _AffectedInstanceMixin:
    """The Affected SOP Instance UID (0000,1000) of C-STORE and most DIMSE-N messages."""

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))


class _RequestedInstanceMixin:
    """N-GET/N-SET/N-ACTION/N-DELETE requests name their object by Requested SOP Class and
    Instance UID (0000,0003), (0000,1001) (PS3.7 10.3): ``sop_class_uid`` reads the former."""

    sop_class_uid = dimse_property((0x0000, 0x0003))
    requested_sop_instance_uid = dimse_property((0x0000, 0x1001))


class _SubOperationsMixin:
    """Sub-operation counters of C-GET/C-MOVE responses (PS3.7 9.3.3.2, 9.3.4.2)."""

    num_of_remaining_sub_ops = dimse_property((0x0000, 0x1020))
    num_of_completed_sub_ops = dimse_property((0x0000, 0x1021))
    num_of_failed_sub_ops = dimse_property((0x0000, 0x1022))
    num_of_warning_sub_ops = dimse_property((0x0000, 0x1023))


# The command elements PS3.7 lists for a message (Sections 9.3, 10.3), by the reference's
# ``command_fields``: what every request, every response and every DIMSE-N request on a
# requested object starts with; each class adds its own.
_RQ = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageID']
_RSP = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status']
_N_RQ = ['CommandGroupLength', 'RequestedSOPClassUID', 'MessageID', 'RequestedSOPInstanceUID']
_SUB_OPERATIONS = ['NumberOfRemainingSuboperations', 'NumberOfCompletedSuboperations',
                   'NumberOfFailedSuboperations', 'NumberOfWarningSuboperations']
_MEDIUM = {0x00000700: ('US', PRIORITY_MEDIUM)}  # a request's default Priority


class _InstanceResponse(_AffectedInstanceMixin, StatusMixin, DIMSEResponseMessage):
    """A response that names the SOP Instance it is about (C-STORE-RSP, most DIMSE-N)."""

    command_fields = _RSP + ['AffectedSOPInstanceUID']


class _RequestedInstanceRequest(_RequestedInstanceMixin, DIMSERequestMessage):
    """A DIMSE-N request on a requested object (N-GET, N-SET, N-ACTION, N-DELETE)."""

    command_fields = _N_RQ + []


class CEchoRQMessage(DIMSERequestMessage):
    """C-ECHO-RQ (PS3.7 9.3.5.1)."""

    command_field = 0x0030
    command_fields = _RQ + []


class CEchoRSPMessage(StatusMixin, DIMSEResponseMessage):
    """C-ECHO-RSP (PS3.7 9.3.5.2)."""

    command_field = 0x8030
    command_fields = _RSP + []


class CStoreRQMessage(_AffectedInstanceMixin, PriorityMixin, DIMSERequestMessage):
    """C-STORE-RQ (PS3.7 9.3.1.1)."""

    command_field = 0x0001
    command_fields = _RQ + ['Priority', 'AffectedSOPInstanceUID', 'MoveOriginatorApplicationEntityTitle',
                            'MoveOriginatorMessageID']
    _defaults = _MEDIUM

    move_originator_aet = dimse_property((0x0000, 0x1030))
    move_originator_message_id = dimse_property((0x0000, 0x1031))


class CStoreRSPMessage(_InstanceResponse):
    """C-STORE-RSP (PS3.7 9.3.1.2)."""

    command_field = 0x8001


class CFindRQMessage(PriorityMixin, DIMSERequestMessage):
    """C-FIND-RQ (PS3.7 9.3.2.1)."""

    command_field = 0x0020
    command_fields = _RQ + ['Priority']
    _defaults = _MEDIUM


class CFindRSPMessage(StatusMixin, DIMSEResponseMessage):
    """C-FIND-RSP (PS3.7 9.3.2.2)."""

    command_field = 0x8020
    command_fields = _RSP + []


class CGetRQMessage(PriorityMixin, DIMSERequestMessage):
    """C-GET-RQ (PS3.7 9.3.3.1)."""

    command_field = 0x0010
    command_fields = _RQ + ['Priority']
    _defaults = _MEDIUM


class CGetRSPMessage(_SubOperationsMixin, StatusMixin, DIMSEResponseMessage):
    """C-GET-RSP (PS3.7 9.3.3.2)."""

    command_field = 0x8010
    command_fields = _RSP + _SUB_OPERATIONS


class CMoveRQMessage(PriorityMixin, DIMSERequestMessage):
    """C-MOVE-RQ (PS3.7 9.3.4.1)."""

    command_field = 0x0021
    command_fields = _RQ + ['Priority', 'MoveDestination']
    _defaults = _MEDIUM

    move_destination = dimse_property((0x0000, 0x0600))


class CMoveRSPMessage(_SubOperationsMixin, StatusMixin, DIMSEResponseMessage):
    """C-MOVE-RSP (PS3.7 9.3.4.2)."""

    command_field = 0x8021
    command_fields = _RSP + _SUB_OPERATIONS


class CCancelRQMessage(DIMSERequestMessage):
    """C-CANCEL-FIND/GET/MOVE-RQ (PS3.7 9.3.2.3, 9.3.3.3, 9.3.4.3).

    It identifies the operation to cancel by Message ID Being Responded To.
    """

    command_field = 0x0FFF
    command_fields = ['CommandGroupLength', 'MessageIDBeingRespondedTo']

    message_id_being_responded_to = dimse_property((0x0000, 0x0120))


class NEventReportRQMessage(_AffectedInstanceMixin, DIMSERequestMessage):
    """N-EVENT-REPORT-RQ (PS3.7 10.3.1.1)."""

    command_field = 0x0100
    command_fields = _RQ + ['AffectedSOPInstanceUID', 'EventTypeID']

    event_type_id = dimse_property((0x0000, 0x1002))


class NEventReportRSPMessage(_InstanceResponse):
    """N-EVENT-REPORT-RSP (PS3.7 10.3.1.2)."""

    command_field = 0x8100
    command_fields = _RSP + ['AffectedSOPInstanceUID', 'EventTypeID']

    event_type_id = dimse_property((0x0000, 0x1002))


class NGetRQMessage(_RequestedInstanceRequest):
    """N-GET-RQ (PS3.7 10.3.2.1); its SOP class is the Requested SOP Class UID."""

    command_field = 0x0110
    command_fields = _N_RQ + ['AttributeIdentifierList']

    attribute_identifier_list = dimse_property((0x0000, 0x1005))


class NGetRSPMessage(_InstanceResponse):
    """N-GET-RSP (PS3.7 10.3.2.2)."""

    command_field = 0x8110


class NSetRQMessage(_RequestedInstanceRequest):
    """N-SET-RQ (PS3.7 10.3.3.1); its SOP class is the Requested SOP Class UID."""

    command_field = 0x0120


class NSetRSPMessage(_InstanceResponse):
    """N-SET-RSP (PS3.7 10.3.3.2)."""

    command_field = 0x8120


class NActionRQMessage(_RequestedInstanceRequest):
    """N-ACTION-RQ (PS3.7 10.3.4.1); its SOP class is the Requested SOP Class UID."""

    command_field = 0x0130
    command_fields = _N_RQ + ['ActionTypeID']

    action_type_id = dimse_property((0x0000, 0x1008))


class NActionRSPMessage(_InstanceResponse):
    """N-ACTION-RSP (PS3.7 10.3.4.2)."""

    command_field = 0x8130
    command_fields = _RSP + ['AffectedSOPInstanceUID', 'ActionTypeID']

    action_type_id = dimse_property((0x0000, 0x1008))


class NCreateRQMessage(_AffectedInstanceMixin, DIMSERequestMessage):
    """N-CREATE-RQ (PS3.7 10.3.5.1)."""

    command_field = 0x0140
    command_fields = _RQ + ['AffectedSOPInstanceUID']


class NCreateRSPMessage(_InstanceResponse):
    """N-CREATE-RSP (PS3.7 10.3.5.2)."""

    command_field = 0x8140


class NDeleteRQMessage(_RequestedInstanceRequest):
    """N-DELETE-RQ (PS3.7 10.3.6.1); its SOP class is the Requested SOP Class UID."""

    command_field = 0x0150


class NDeleteRSPMessage(_InstanceResponse):
    """N-DELETE-RSP (PS3.7 10.3.6.2)."""

    command_field = 0x8150


MESSAGE_TYPES: dict[int, type[DIMSEMessage]] = {
    cls.command_field: cls for cls in (
        CEchoRQMessage, CEchoRSPMessage, CStoreRQMessage, CStoreRSPMessage,
        CFindRQMessage, CFindRSPMessage, CGetRQMessage, CGetRSPMessage,
        CMoveRQMessage, CMoveRSPMessage, CCancelRQMessage,
        NEventReportRQMessage, NEventReportRSPMessage, NGetRQMessage, NGetRSPMessage,
        NSetRQMessage, NSetRSPMessage, NActionRQMessage, NActionRSPMessage,
        NCreateRQMessage, NCreateRSPMessage, NDeleteRQMessage, NDeleteRSPMessage,
    )
}
"""Message classes by Command Field (PS3.7 Table E.1-1)."""


def _message_class(command_field: Any) -> type[DIMSEMessage]:
    cls = MESSAGE_TYPES.get(command_field) if isinstance(command_field, int) else None
    if cls is None:
        raise DIMSEProcessingError(f'unknown DIMSE Command Field {command_field!r}')
    return cls


def message_from_command(ds: Dataset) -> DIMSEMessage:
    """Wrap a received command set (a pydicom ``Dataset``) in the message class its
    Command Field names.

    Raises ``DIMSEProcessingError`` for a missing or unknown Command Field: the
    peer sent something that is not a DIMSE message (PS3.7 Table E.1-1).
    """
    return _message_class(value_or_none(ds.get(0x00000100)))(ds)


def message_from_fields(fields: dict[int, Any]) -> DIMSEMessage:
    """Like ``message_from_command`` for a command set in the internal form
    (``commandset.decode_fields``); no pydicom is involved."""
    return _message_class(fields.get(0x0100)).from_fields(fields)
