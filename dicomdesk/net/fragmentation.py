"""A DIMSE message as P-DATA-TF PDUs: fragments no larger than the peer accepts (PS3.8 9.3.5, E).

A message goes as Presentation Data Values: the command set's fragments, then the data set's,
each value a message control header byte (PS3.8 E.2) and at most the peer's Maximum Length
Received minus 6 bytes (PS3.8 D.1). This module lays them out, and only that; which message
carries which fields is ``dimsemessages``' job, sending the PDUs is the DUL's.

A data set comes as bytes (sliced into memoryviews, never copied), as a binary file object
(read in bounded pieces into a few reused buffers, never loaded whole) or as a region of a
file the storage SCU has planned (``file_region()``): then its values are ``FileRegion``
objects, and a batch of them one ``pdu.PDataFileRun``, which the DUL writes with
``os.sendfile`` from the page cache without the bytes passing through Python.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from dicomdesk.net.pdu import PDataFileRun, PDataTfPDU, PresentationDataValueItem

# Message Control Header values (PS3.8 E.2): bit 0 command/data, bit 1 last fragment.
DATA_FRAGMENT = 0x00
COMMAND_FRAGMENT = 0x01
LAST_DATA_FRAGMENT = 0x02
LAST_COMMAND_FRAGMENT = 0x03

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


def file_region_of(data_set: Any) -> tuple[int, int] | None:
    """(offset, length) of a data set that stays in a file until it is sent (the storage
    SCU's reader answers ``file_region()``), or None: it is read, or it is in memory."""
    region = getattr(data_set, 'file_region', None)
    return region() if region is not None else None


def message_pdus(pc_id: int, command: bytes, data_set: Any,
                 max_pdu_length: int) -> Iterable[PDataTfPDU]:
    """The P-DATA-TF PDUs of one message: its encoded command set, then ``data_set`` (None,
    bytes, or a binary file object positioned at the data set).

    A command set and an in-memory data set that fit in one PDU together go as one PDU of two
    PDVs (the last command fragment, then the last data fragment), returned at once: that is
    every C-FIND match, thousands a second. Otherwise each PDU holds one PDV, made as they are
    iterated.
    """
    if isinstance(data_set, (bytes, bytearray, memoryview)) and \
            len(command) + len(data_set) + 2 * PDV_OVERHEAD <= _fragment_size(max_pdu_length) + PDV_OVERHEAD:
        # Command and data set both whole in one P-DATA-TF (two PDVs, PS3.8 9.3.5.1,
        # E.2): a small message (a C-FIND match) costs its receiver one PDU, not two.
        return (PDataTfPDU([
            PresentationDataValueItem(pc_id, _LAST_COMMAND_HEAD + command),
            PresentationDataValueItem(pc_id, _LAST_DATA_HEAD + data_set)]),)
    return _fragmented_pdus(pc_id, command, data_set, max_pdu_length)


def _fragmented_pdus(pc_id: int, command: bytes, data_set: Any,
                     max_pdu_length: int) -> Iterator[PDataTfPDU]:
    """``message_pdus`` one PDV per PDU: the command's fragments, then the data set's."""
    yield from _command_pdus(pc_id, command, max_pdu_length)
    if data_set is None:
        return
    if isinstance(data_set, (bytes, bytearray, memoryview)):
        for chunk, code in fragment(data_set, max_pdu_length, DATA_FRAGMENT,
                                    LAST_DATA_FRAGMENT):
            yield PDataTfPDU([PresentationDataValueItem(pc_id, bytes((code,)) + chunk)])
        return
    place = file_region_of(data_set)
    if place is not None:
        for value in _region_values(data_set, place, max_pdu_length):
            yield PDataTfPDU([PresentationDataValueItem(pc_id, value)])
        return
    for value in _file_values(data_set, max_pdu_length, DATA_FRAGMENT, LAST_DATA_FRAGMENT):
        yield PDataTfPDU([PresentationDataValueItem(pc_id, value)])


def _command_pdus(pc_id: int, command: bytes, max_pdu_length: int) -> Iterator[PDataTfPDU]:
    """The command set's fragments, one PDV per PDU."""
    for chunk, code in fragment(command, max_pdu_length, COMMAND_FRAGMENT, LAST_COMMAND_FRAGMENT):
        yield PDataTfPDU([PresentationDataValueItem(pc_id, bytes((code,)) + chunk)])


def batched(pdus: Iterable[PDataTfPDU], batch_bytes: int) -> Iterator[list]:
    """``pdus`` in lists of about ``batch_bytes`` (each list one pass through the state
    machine and one gathered write)."""
    batch: list = []
    size = 0
    for p_data in pdus:
        batch.append(p_data)
        size += p_data.pdu_length
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def file_run_batches(pc_id: int, command: bytes, source: Any, place: tuple[int, int],
                     max_pdu_length: int, batch_bytes: int) -> Iterator[list]:
    """A message whose data set stays in a file region, in batches: the command PDUs, then
    one ``pdu.PDataFileRun`` per batch — the same PDUs on the wire as ``message_pdus``
    yields, laid out at once instead of one object per fragment."""
    batch: list = list(_command_pdus(pc_id, command, max_pdu_length))
    size = _fragment_size(max_pdu_length)
    per_batch = max(1, batch_bytes // size) * size
    offset, length = place
    done = 0
    while True:
        count = min(per_batch, length - done)
        last = done + count >= length
        batch.append(PDataFileRun(pc_id, source, offset + done, count, size, DATA_FRAGMENT,
                                  LAST_DATA_FRAGMENT if last else DATA_FRAGMENT))
        source.sent(count)
        yield batch
        if last:
            return
        batch = []
        done += count
