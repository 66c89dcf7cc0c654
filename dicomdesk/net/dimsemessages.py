"""DIMSE-C and DIMSE-N messages (PS3.7 Sections 9.3 and 10.3) and their fragmentation.

A message is a Command Set (group 0000, PS3.7 6.3.1) and an optional Data Set.  ``encode`` turns it into P-DATA-TF PDUs, one
Presentation Data Value each (PS3.8 9.3.5, Annex E): first the command
fragments, then the data set fragments, each no larger than the peer's
Maximum Length Received allows (PS3.8 D.1).  A data set may be bytes or a
binary file object; a file is streamed in bounded reads, never loaded whole.

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
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, ClassVar

from dicomdesk.net.commandset import (
    COMMAND_KEYWORDS,
    COMMAND_VRS,
    command_dataset,
    encode_command,
    encode_fields,
    normalise_value,
)
from dicomdesk.net.exceptions import DIMSEProcessingError
from dicomdesk.net.pdu import PDataFileRun, PDataTfPDU, PresentationDataValueItem
from dicomdesk.net.statuses import Status

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

# Message Control Header values (PS3.8 E.2): bit 0 command/data, bit 1 last fragment.
DATA_FRAGMENT = 0x00
COMMAND_FRAGMENT = 0x01
LAST_DATA_FRAGMENT = 0x02
LAST_COMMAND_FRAGMENT = 0x03

# Command Data Set Type (0000,0800), PS3.7 Table E.1-1: 0101H means "no data set";
# any other value means a data set follows.
NO_DATA_SET = 0x0101
DATA_SET_PRESENT = 0x0001

# A PDV item costs 4 (item length) + 1 (context ID) + 1 (message control header)
# bytes of the P-DATA-TF variable field that Maximum Length Received bounds (PS3.8
# 9.3.5.1, D.1), so a fragment holds at most max_pdu_length - 6 bytes.
PDV_OVERHEAD = 6
# The message control headers of a whole command set / data set in one PDV (PS3.8 E.2).
_LAST_COMMAND_HEAD = bytes((LAST_COMMAND_FRAGMENT,))
_LAST_DATA_HEAD = bytes((LAST_DATA_FRAGMENT,))
# Fragment size when the peer set no limit (Maximum Length Received 0, PS3.8 D.1).
UNLIMITED_FRAGMENT_SIZE = 1024 * 1024
# Floor of the Maximum Length Received we honour when sending: PS3.8 D.1 sets no lower bound,
# and a tiny one turns each message into many PDUs. DCMTK floors PDU sizes at 4096 bytes
# (ASC_MINIMUMPDUSIZE); a peer announcing less gets P-DATA-TF PDUs of up to 4096 bytes
# (docs/conformance.md says so).
MIN_SEND_PDU_LENGTH = 4096

# Priority (0000,0700), PS3.7 9.1.1.1.3 / Table E.1-1.
PRIORITY_LOW = 0x0002
PRIORITY_MEDIUM = 0x0000
PRIORITY_HIGH = 0x0001


def value_or_none(elem: Any) -> Any:
    """The element's value, or ``None`` when the element is absent."""
    return None if elem is None else elem.value


def is_dataset(obj: Any) -> bool:
    """Is ``obj`` a pydicom ``Dataset``?  Answered without importing pydicom: if pydicom
    was never imported, nothing can be one."""
    module = sys.modules.get('pydicom.dataset')
    return module is not None and isinstance(obj, module.Dataset)


def _element(tag: tuple[int, int] | int) -> int:
    """The element number of a group 0000 tag given as an int or a (group, element) pair."""
    if isinstance(tag, tuple):
        group, element = tag
    else:
        group, element = tag >> 16, tag & 0xFFFF
    if group != 0:
        raise ValueError(f'({group:04X},{element:04X}) is not a command element (group 0000)')
    return element


def _fragment_size(max_pdu_length: int) -> int:
    """Largest fragment a peer with this Maximum Length Received accepts (PS3.8 D.1), but
    never less than ``MIN_SEND_PDU_LENGTH`` allows: a peer announcing 7 bytes would otherwise
    get one-byte PDVs (78 PDUs for a C-ECHO response)."""
    if not max_pdu_length:
        return UNLIMITED_FRAGMENT_SIZE
    return max(max_pdu_length, MIN_SEND_PDU_LENGTH) - PDV_OVERHEAD


def chunks(seq: bytes | bytearray | memoryview, size: int) -> Iterator[tuple[memoryview, bool]]:
    """Split ``seq`` into memoryview chunks of ``size`` bytes (no copies).

    Yields ``(chunk, is_last)``; an empty ``seq`` yields one empty last chunk,
    so an empty value is still sent as one (last) fragment.
    """
    view = memoryview(seq).cast('B') if not isinstance(seq, memoryview) else seq.cast('B')
    total = len(view)
    if total == 0:
        yield view, True
        return
    for start in range(0, total, size):
        end = start + size
        yield view[start:end], end >= total


def fragment(data_set: bytes | bytearray | memoryview, max_pdu_length: int, normal: int,
             last: int) -> Iterator[tuple[memoryview, int]]:
    """Fragment an encoded command or data set into PDV-sized chunks (PS3.8 E.1).

    Yields ``(fragment, code)`` where ``code`` is ``normal`` or, for the final
    fragment, ``last`` (the message control header of PS3.8 E.2).
    """
    size = _fragment_size(max_pdu_length)
    for chunk, is_last in chunks(data_set, size):
        yield chunk, last if is_last else normal


def _read_full(fp: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``fp`` (short reads are retried); return the bytes read."""
    readinto = getattr(fp, 'readinto', None)
    filled = 0
    wanted = len(view)
    while filled < wanted:
        if readinto is not None:
            count = readinto(view[filled:])
        else:
            data = fp.read(wanted - filled)
            count = len(data)
            view[filled:filled + count] = data
        if not count:
            break
        filled += count
    return filled


#: Fragment buffers whose values were sent, by size, for ``_file_values`` to reuse: files
#: sent one after another read into the same few buffers (no allocation or zeroing per
#: fragment). Shared by every thread: a buffer is taken with one atomic ``pop`` and used
#: only if no view of it is left, so two threads never share one.
_SPENT: dict[int, list[bytearray]] = {}
_SPENT_MAX = 8


def _take_buffer(size: int) -> bytearray:
    spent = _SPENT.get(size)
    if spent:
        try:
            buf = spent.pop(0)  # the oldest: its value went out longest ago
        except IndexError:  # another thread took the last one
            buf = None
        if buf is not None:
            if sys.getrefcount(buf) == 2:  # ``buf`` and the call's argument: no view left
                return buf
            _keep(size, buf)  # still being sent (or kept): leave it
    return bytearray(size)


def _keep(size: int, *buffers: bytearray) -> None:
    spent = _SPENT.setdefault(size, [])
    for buf in buffers:
        if len(spent) < _SPENT_MAX:
            spent.append(buf)


def _file_values(fp: IO[bytes], max_pdu_length: int, normal: int,
                 last: int) -> Iterator[memoryview]:
    """Stream a file as complete PDV values: header byte + fragment, read in place.

    Each value is read straight into a buffer after a one-byte slot for the message
    control header, so nothing is copied after the read; one fragment is read ahead to
    know which one is last. Buffers come from ``_SPENT`` and go back to it once yielded;
    memory stays bounded by a few fragments.
    """
    size = _fragment_size(max_pdu_length)
    buf = _take_buffer(size + 1)
    count = _read_full(fp, memoryview(buf)[1:])
    while True:
        if count < size:  # short read: end of file
            buf[0] = last
            yield memoryview(buf)[:count + 1]
            _keep(size + 1, buf)
            return
        following = _take_buffer(size + 1)
        next_count = _read_full(fp, memoryview(following)[1:])
        if next_count == 0:
            buf[0] = last
            yield memoryview(buf)
            _keep(size + 1, buf, following)
            return
        buf[0] = normal
        yield memoryview(buf)
        _keep(size + 1, buf)
        buf, count = following, next_count


class FileRegion:
    """A PDV value whose data stay in a file until the DUL writes them: the message control
    header byte (``head``), then ``length`` bytes at ``offset`` of ``source``'s file.

    The DUL sends the header with the PDU's other headers and the data with
    ``os.sendfile`` — from the page cache to the socket, never through a Python buffer.
    ``bytes()`` reads them (``source.read_region``) where a copy is needed (TLS, ``encode``).
    """

    __slots__ = ('head', 'source', 'offset', 'length')

    def __init__(self, head: bytes, source: Any, offset: int, length: int) -> None:
        self.head, self.source, self.offset, self.length = head, source, offset, length

    def __len__(self) -> int:
        return len(self.head) + self.length

    def __getitem__(self, index: int) -> int:
        if index in (0, -len(self)) and self.head:
            return self.head[0]
        return bytes(self)[index]

    def __bytes__(self) -> bytes:
        return self.head + self.source.read_region(self.offset, self.length)

    def fileno(self) -> int:
        return self.source.fileno()


def _region_values(source: Any, place: tuple[int, int], max_pdu_length: int) -> Iterator[FileRegion]:
    """The data set as ``FileRegion`` PDV values of at most one fragment each."""
    offset, length = place
    size = _fragment_size(max_pdu_length)
    done = 0
    while True:
        count = min(size, length - done)
        last = done + count >= length
        yield FileRegion(bytes((LAST_DATA_FRAGMENT if last else DATA_FRAGMENT,)), source,
                         offset + done, count)
        source.sent(count)
        done += count
        if last:
            return


def fragment_file(fp: IO[bytes], max_pdu_length: int, normal: int,
                  last: int) -> Iterator[tuple[memoryview, int]]:
    """Fragment a data set read from a binary file object, from its current position.

    Reads are bounded by the fragment size (``readinto`` when available); the
    file is never loaded whole.  Yields ``(fragment, code)`` like ``fragment``.
    """
    for value in _file_values(fp, max_pdu_length, normal, last):
        yield value[1:], value[0]


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
        goes as one PDU of two PDVs (the last command fragment, then the last data
        fragment); otherwise each PDU holds one PDV.
        """
        data_set = self.data_set
        if is_dataset(data_set):
            raise TypeError('encode the data set in the transfer syntax of the '
                            'presentation context before encoding the message')
        command = self.set_length()
        if isinstance(data_set, (bytes, bytearray, memoryview)) and \
                len(command) + len(data_set) + 2 * PDV_OVERHEAD <= _fragment_size(max_pdu_length) + PDV_OVERHEAD:
            # Command and data set both whole in one P-DATA-TF (two PDVs, PS3.8 9.3.5.1,
            # E.2): a small message (a C-FIND match) costs its receiver one PDU, not two.
            yield PDataTfPDU([
                PresentationDataValueItem(pc_id, _LAST_COMMAND_HEAD + command),
                PresentationDataValueItem(pc_id, _LAST_DATA_HEAD + data_set)])
            return
        for chunk, code in fragment(command, max_pdu_length, COMMAND_FRAGMENT,
                                    LAST_COMMAND_FRAGMENT):
            yield PDataTfPDU([PresentationDataValueItem(pc_id, bytes((code,)) + chunk)])
        if data_set is None:
            return
        if isinstance(data_set, (bytes, bytearray, memoryview)):
            for chunk, code in fragment(data_set, max_pdu_length, DATA_FRAGMENT,
                                        LAST_DATA_FRAGMENT):
                yield PDataTfPDU([PresentationDataValueItem(pc_id, bytes((code,)) + chunk)])
        else:
            region = getattr(data_set, 'file_region', None)
            place = region() if region is not None else None
            if place is not None:
                for value in _region_values(data_set, place, max_pdu_length):
                    yield PDataTfPDU([PresentationDataValueItem(pc_id, value)])
                return
            for value in _file_values(data_set, max_pdu_length, DATA_FRAGMENT,
                                      LAST_DATA_FRAGMENT):
                yield PDataTfPDU([PresentationDataValueItem(pc_id, value)])


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
        region = None
        if runs and data_set is not None and not isinstance(data_set, (bytes, bytearray, memoryview)) \
                and not is_dataset(data_set):
            region = getattr(data_set, 'file_region', None)
        place = region() if region is not None else None
        if place is None:
            batch: list = []
            size = 0
            for p_data in self.encode(pc_id, max_pdu_length):
                batch.append(p_data)
                size += p_data.pdu_length
                if size >= batch_bytes:
                    yield batch
                    batch, size = [], 0
            if batch:
                yield batch
            return
        batch = [PDataTfPDU([PresentationDataValueItem(pc_id, bytes((code,)) + chunk)])
                 for chunk, code in fragment(self.set_length(), max_pdu_length, COMMAND_FRAGMENT,
                                             LAST_COMMAND_FRAGMENT)]
        size = _fragment_size(max_pdu_length)
        per_batch = max(1, batch_bytes // size) * size
        offset, length = place
        done = 0
        while True:
            count = min(per_batch, length - done)
            last = done + count >= length
            batch.append(PDataFileRun(pc_id, data_set, offset + done, count, size, DATA_FRAGMENT,
                                      LAST_DATA_FRAGMENT if last else DATA_FRAGMENT))
            data_set.sent(count)
            yield batch
            if last:
                return
            batch = []
            done += count


class DIMSERequestMessage(DIMSEMessage):
    """Base of the request messages: they carry a Message ID (PS3.7 9.1.1.1.1)."""

    message_id = dimse_property((0x0000, 0x0110))


class DIMSEResponseMessage(DIMSEMessage):
    """Base of the response messages: they answer a Message ID (PS3.7 9.1.1.1.2)."""

    message_id_being_responded_to = dimse_property((0x0000, 0x0120))


class CEchoRQMessage(DIMSERequestMessage):
    """C-ECHO-RQ (PS3.7 9.3.5.1)."""

    command_field = 0x0030
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageID']


class CEchoRSPMessage(StatusMixin, DIMSEResponseMessage):
    """C-ECHO-RSP (PS3.7 9.3.5.2)."""

    command_field = 0x8030
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status']


class CStoreRQMessage(PriorityMixin, DIMSERequestMessage):
    """C-STORE-RQ (PS3.7 9.3.1.1)."""

    command_field = 0x0001
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageID', 'Priority',
                      'AffectedSOPInstanceUID', 'MoveOriginatorApplicationEntityTitle',
                      'MoveOriginatorMessageID']
    _defaults = {0x00000700: ('US', PRIORITY_MEDIUM)}

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))
    move_originator_aet = dimse_property((0x0000, 0x1030))
    move_originator_message_id = dimse_property((0x0000, 0x1031))


class CStoreRSPMessage(StatusMixin, DIMSEResponseMessage):
    """C-STORE-RSP (PS3.7 9.3.1.2)."""

    command_field = 0x8001
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status',
                      'AffectedSOPInstanceUID']

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))


class CFindRQMessage(PriorityMixin, DIMSERequestMessage):
    """C-FIND-RQ (PS3.7 9.3.2.1)."""

    command_field = 0x0020
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageID', 'Priority']
    _defaults = {0x00000700: ('US', PRIORITY_MEDIUM)}


class CFindRSPMessage(StatusMixin, DIMSEResponseMessage):
    """C-FIND-RSP (PS3.7 9.3.2.2)."""

    command_field = 0x8020
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status']


class _SubOperationsMixin:
    """Sub-operation counters of C-GET/C-MOVE responses (PS3.7 9.3.3.2, 9.3.4.2)."""

    num_of_remaining_sub_ops = dimse_property((0x0000, 0x1020))
    num_of_completed_sub_ops = dimse_property((0x0000, 0x1021))
    num_of_failed_sub_ops = dimse_property((0x0000, 0x1022))
    num_of_warning_sub_ops = dimse_property((0x0000, 0x1023))


class CGetRQMessage(PriorityMixin, DIMSERequestMessage):
    """C-GET-RQ (PS3.7 9.3.3.1)."""

    command_field = 0x0010
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageID', 'Priority']
    _defaults = {0x00000700: ('US', PRIORITY_MEDIUM)}


class CGetRSPMessage(_SubOperationsMixin, StatusMixin, DIMSEResponseMessage):
    """C-GET-RSP (PS3.7 9.3.3.2)."""

    command_field = 0x8010
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status',
                      'NumberOfRemainingSuboperations', 'NumberOfCompletedSuboperations',
                      'NumberOfFailedSuboperations', 'NumberOfWarningSuboperations']


class CMoveRQMessage(PriorityMixin, DIMSERequestMessage):
    """C-MOVE-RQ (PS3.7 9.3.4.1)."""

    command_field = 0x0021
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageID', 'Priority',
                      'MoveDestination']
    _defaults = {0x00000700: ('US', PRIORITY_MEDIUM)}

    move_destination = dimse_property((0x0000, 0x0600))


class CMoveRSPMessage(_SubOperationsMixin, StatusMixin, DIMSEResponseMessage):
    """C-MOVE-RSP (PS3.7 9.3.4.2)."""

    command_field = 0x8021
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status',
                      'NumberOfRemainingSuboperations', 'NumberOfCompletedSuboperations',
                      'NumberOfFailedSuboperations', 'NumberOfWarningSuboperations']


class CCancelRQMessage(DIMSERequestMessage):
    """C-CANCEL-FIND/GET/MOVE-RQ (PS3.7 9.3.2.3, 9.3.3.3, 9.3.4.3).

    It identifies the operation to cancel by Message ID Being Responded To.
    """

    command_field = 0x0FFF
    command_fields = ['CommandGroupLength', 'MessageIDBeingRespondedTo']

    message_id_being_responded_to = dimse_property((0x0000, 0x0120))


class NEventReportRQMessage(DIMSERequestMessage):
    """N-EVENT-REPORT-RQ (PS3.7 10.3.1.1)."""

    command_field = 0x0100
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageID',
                      'AffectedSOPInstanceUID', 'EventTypeID']

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))
    event_type_id = dimse_property((0x0000, 0x1002))


class NEventReportRSPMessage(StatusMixin, DIMSEResponseMessage):
    """N-EVENT-REPORT-RSP (PS3.7 10.3.1.2)."""

    command_field = 0x8100
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status',
                      'AffectedSOPInstanceUID', 'EventTypeID']

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))
    event_type_id = dimse_property((0x0000, 0x1002))


class NGetRQMessage(DIMSERequestMessage):
    """N-GET-RQ (PS3.7 10.3.2.1); its SOP class is the Requested SOP Class UID."""

    command_field = 0x0110
    command_fields = ['CommandGroupLength', 'RequestedSOPClassUID', 'MessageID',
                      'RequestedSOPInstanceUID', 'AttributeIdentifierList']

    sop_class_uid = dimse_property((0x0000, 0x0003))
    requested_sop_instance_uid = dimse_property((0x0000, 0x1001))
    attribute_identifier_list = dimse_property((0x0000, 0x1005))


class NGetRSPMessage(StatusMixin, DIMSEResponseMessage):
    """N-GET-RSP (PS3.7 10.3.2.2)."""

    command_field = 0x8110
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status',
                      'AffectedSOPInstanceUID']

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))


class NSetRQMessage(DIMSERequestMessage):
    """N-SET-RQ (PS3.7 10.3.3.1); its SOP class is the Requested SOP Class UID."""

    command_field = 0x0120
    command_fields = ['CommandGroupLength', 'RequestedSOPClassUID', 'MessageID',
                      'RequestedSOPInstanceUID']

    sop_class_uid = dimse_property((0x0000, 0x0003))
    requested_sop_instance_uid = dimse_property((0x0000, 0x1001))


class NSetRSPMessage(StatusMixin, DIMSEResponseMessage):
    """N-SET-RSP (PS3.7 10.3.3.2)."""

    command_field = 0x8120
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status',
                      'AffectedSOPInstanceUID']

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))


class NActionRQMessage(DIMSERequestMessage):
    """N-ACTION-RQ (PS3.7 10.3.4.1); its SOP class is the Requested SOP Class UID."""

    command_field = 0x0130
    command_fields = ['CommandGroupLength', 'RequestedSOPClassUID', 'MessageID',
                      'RequestedSOPInstanceUID', 'ActionTypeID']

    sop_class_uid = dimse_property((0x0000, 0x0003))
    requested_sop_instance_uid = dimse_property((0x0000, 0x1001))
    action_type_id = dimse_property((0x0000, 0x1008))


class NActionRSPMessage(StatusMixin, DIMSEResponseMessage):
    """N-ACTION-RSP (PS3.7 10.3.4.2)."""

    command_field = 0x8130
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status',
                      'AffectedSOPInstanceUID', 'ActionTypeID']

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))
    action_type_id = dimse_property((0x0000, 0x1008))


class NCreateRQMessage(DIMSERequestMessage):
    """N-CREATE-RQ (PS3.7 10.3.5.1)."""

    command_field = 0x0140
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageID',
                      'AffectedSOPInstanceUID']

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))


class NCreateRSPMessage(StatusMixin, DIMSEResponseMessage):
    """N-CREATE-RSP (PS3.7 10.3.5.2)."""

    command_field = 0x8140
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status',
                      'AffectedSOPInstanceUID']

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))


class NDeleteRQMessage(DIMSERequestMessage):
    """N-DELETE-RQ (PS3.7 10.3.6.1); its SOP class is the Requested SOP Class UID."""

    command_field = 0x0150
    command_fields = ['CommandGroupLength', 'RequestedSOPClassUID', 'MessageID',
                      'RequestedSOPInstanceUID']

    sop_class_uid = dimse_property((0x0000, 0x0003))
    requested_sop_instance_uid = dimse_property((0x0000, 0x1001))


class NDeleteRSPMessage(StatusMixin, DIMSEResponseMessage):
    """N-DELETE-RSP (PS3.7 10.3.6.2)."""

    command_field = 0x8150
    command_fields = ['CommandGroupLength', 'AffectedSOPClassUID', 'MessageIDBeingRespondedTo', 'Status',
                      'AffectedSOPInstanceUID']

    affected_sop_instance_uid = dimse_property((0x0000, 0x1000))


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
