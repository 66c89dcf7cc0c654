"""Reassembly of DIMSE messages from P-DATA-TF PDUs (PS3.7 6.3, PS3.8 9.3.5 and Annex E).

A message arrives as Presentation Data Values: command fragments, then (when
Command Data Set Type (0000,0800) is not 0101H) data set fragments, all on one
presentation context, the last of each marked in the message control header
(PS3.8 E.2).  ``DIMSEDecoder`` checks that order, decodes the command set and
either keeps the data set in memory (decoded with pydicom in the context's
transfer syntax) or, for the SOP classes in ``store_in_file``, writes every
fragment straight to a file the application supplies, so that a large object
never sits whole in memory.

pydicom is imported only when a data set is decoded: a message without one (C-ECHO, most
responses) is reassembled with the pydicom-free command set codec.

A data set that cannot be decoded or stored does not abort the association:
the message keeps what arrived in ``data_set`` and the reason in
``data_set_error``, so the service can answer with a failure status
(e.g. C-STORE 0xC000 "Cannot understand", PS3.4 B.2.3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import IO, TYPE_CHECKING, Any

from dicomdesk.net.commandset import decode_fields
from dicomdesk.net.dataset_encoding import DECODE_REFUSALS, decode_data_set
from dicomdesk.net.decode_limits import DEFAULT_DECODE_LIMITS, DecodeLimits
from dicomdesk.net.dimsemessages import NO_DATA_SET, DIMSEMessage, message_from_fields
from dicomdesk.net.exceptions import DIMSEProcessingError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)


def _context_transfer_syntax(context: Any) -> str:
    """The accepted transfer syntax of an established context (one UID; tolerate a list)."""
    ts = context.supported_ts
    if isinstance(ts, (list, tuple)):
        ts = ts[0]
    return str(ts)


#: A command set is a few hundred bytes (PS3.7 9.3/10.3); more is a peer wasting our memory.
MAX_COMMAND_SET_LENGTH = 64 * 1024

#: Data sets of SOP classes that are not ``store_in_file`` (identifiers, N-ACTION/N-EVENT
#: information) are held in memory: bound them. Storage data sets go to files instead.
MAX_IN_MEMORY_DATA_SET_LENGTH = 64 * 1024 * 1024


class DIMSEDecoder:
    """Reassembles DIMSE messages from P-DATA-TF PDUs (PS3.7 6.3.1, PS3.8 Annex E).

    ``accepted_contexts`` maps presentation context ID to the context
    (``.id``, ``.sop_class``, ``.supported_ts``); ``store_in_file`` is the set of
    SOP class UIDs whose data sets go to a file; ``get_file_cb(context,
    command_set) -> (file, start_offset)`` supplies that file once the command
    set is complete.

    Attributes follow the reference: ``receiving`` (a message is incomplete),
    ``command_set_received``, ``data_set_received``, ``pc_id`` and ``msg``.
    """

    #: Per-decoder bound for in-memory data sets (a subclass or instance may change it).
    max_data_set_length = MAX_IN_MEMORY_DATA_SET_LENGTH
    #: Bounds on what an in-memory data set may decode to (``decode_limits``); None: none.
    decode_limits: DecodeLimits | None = DEFAULT_DECODE_LIMITS

    def __init__(self, accepted_contexts: Mapping[int, Any], store_in_file: Collection[str],
                 get_file_cb: Callable[[Any, Dataset], tuple[IO[bytes], int]] | None, *,
                 message_file_cb: Callable[[Any, DIMSEMessage], tuple[IO[bytes], int]] | None = None):
        self.accepted_contexts = accepted_contexts
        self.store_in_file = store_in_file
        self.get_file_cb = get_file_cb
        # Extension: when set, called instead of ``get_file_cb`` with the message itself, so
        # the AE can read the UIDs from its fields without a pydicom command set per object.
        self.message_file_cb = message_file_cb
        self._reset()

    def _reset(self) -> None:
        self.receiving = False
        self.command_set_received = False
        self.data_set_received = False
        self.pc_id: int | None = None
        self.msg: DIMSEMessage | None = None
        self._command = bytearray()
        self._data = bytearray()
        self._file: IO[bytes] | None = None
        self._file_start = 0
        self._sink_error: str | None = None

    def process(self, p_data: Any) -> list[tuple[DIMSEMessage, int]]:
        """Feed one P-DATA-TF PDU; return the (message, pc_id) pairs it completed.

        Raises ``DIMSEProcessingError`` when the PDVs break PS3.8 Annex E / PS3.7 6.3.1.
        """
        completed = []
        for pdv in p_data.data_value_items:
            done = self._process_pdv(pdv.context_id, pdv.data_value)
            if done is not None:
                completed.append(done)
        return completed

    def _process_pdv(self, pc_id: int, value: bytes | memoryview) -> tuple[DIMSEMessage, int] | None:
        if pc_id not in self.accepted_contexts:
            raise DIMSEProcessingError(f'PDV for presentation context {pc_id}, not accepted')
        if len(value) < 1:
            raise DIMSEProcessingError('PDV without a message control header')
        header = value[0]
        is_command = header & 0x01
        is_last = header & 0x02
        fragment = memoryview(value)[1:]

        if not self.receiving:
            if not is_command:
                raise DIMSEProcessingError('data set fragment before any command set')
            self.receiving = True
            self.pc_id = pc_id
        elif pc_id != self.pc_id:
            # PS3.8 E.2 / PS3.7 6.3.1: all fragments of a message share one context.
            raise DIMSEProcessingError(
                f'PDV on presentation context {pc_id} inside a message on context {self.pc_id}')

        if is_command:
            if self.command_set_received:
                raise DIMSEProcessingError('command fragment while a data set is expected')
            self._command += fragment
            if len(self._command) > MAX_COMMAND_SET_LENGTH:
                raise DIMSEProcessingError(
                    f'command set longer than {MAX_COMMAND_SET_LENGTH} bytes: refused')
            if is_last:
                return self._command_complete()
            return None

        if not self.command_set_received:
            raise DIMSEProcessingError('data set fragment before the command set is complete')
        self._data_fragment(fragment)
        if is_last:
            return self._data_complete()
        return None

    def _command_complete(self) -> tuple[DIMSEMessage, int] | None:
        fields = decode_fields(self._command)
        self._command = bytearray()
        msg = message_from_fields(fields)
        self.msg = msg
        self.command_set_received = True
        if msg.command_data_set_type in (None, NO_DATA_SET):
            return self._finish()
        context = self.accepted_contexts[self.pc_id]
        if context.sop_class in self.store_in_file and self.get_file_cb is not None:
            try:
                if self.message_file_cb is not None:
                    self._file, self._file_start = self.message_file_cb(context, msg)
                else:
                    self._file, self._file_start = self.get_file_cb(context, msg.command_set)
            except OSError as exc:
                logger.warning('cannot open a file for the data set: %s', exc)
                self._sink_error = f'cannot open a file for the data set: {exc}'
        return None

    def _data_fragment(self, fragment: memoryview) -> None:
        if self._file is not None:
            if self._sink_error is None:
                try:
                    self._file.write(fragment)
                except OSError as exc:
                    logger.warning('cannot write the data set: %s', exc)
                    self._sink_error = f'cannot write the data set: {exc}'
        elif self._sink_error is None:
            self._data += fragment
            if len(self._data) > self.max_data_set_length:
                raise DIMSEProcessingError(
                    f'data set held in memory longer than {self.max_data_set_length} bytes: refused '
                    '(only store_in_file SOP classes may receive large data sets)')

    def _data_complete(self) -> tuple[DIMSEMessage, int]:
        self.data_set_received = True
        msg = self.msg
        assert msg is not None
        if self._file is not None:
            try:
                self._file.flush()
                self._file.seek(self._file_start)
            except OSError as exc:
                self._sink_error = self._sink_error or f'cannot write the data set: {exc}'
            msg.data_set = self._file
        elif self._sink_error is None:
            raw = bytes(self._data)
            context = self.accepted_contexts[self.pc_id]
            try:
                msg.data_set = decode_data_set(raw, _context_transfer_syntax(context),
                                               self.decode_limits, self.max_data_set_length)
            except DECODE_REFUSALS as exc:
                # Refused for its size, not its form: the service answers "out of resources"
                # (``data_set_over_limit``); the bytes are dropped now.
                logger.info('data set refused: %s', exc)
                msg.data_set = None
                msg.data_set_error = f'data set refused: {exc}'
                msg.data_set_over_limit = True
            except Exception as exc:  # pydicom/zlib raise many types on malformed data
                logger.debug('undecodable data set kept raw: %r', exc)
                msg.data_set = raw
                msg.data_set_error = f'cannot decode the data set: {exc}'
        if self._sink_error is not None:
            msg.data_set_error = self._sink_error
            msg.data_set_not_stored = True
        return self._finish()

    def _finish(self) -> tuple[DIMSEMessage, int]:
        result = (self.msg, self.pc_id)
        self._reset()
        return result
