"""Query/Retrieve service class (PS3.4 Annex C): C-FIND and C-CANCEL here, and the helpers
C-GET and C-MOVE (``retrieve.py``) share with it.

SCU roles are generators over the responses, so a caller sees each match or progress
count as it arrives; SCP roles call the AE hooks (``on_receive_find``, ``on_receive_get``,
``on_receive_move``) and answer with one *fresh* response message per response: a
response object is never reused, so nothing mutable is shared between responses
(PS3.7 9.3.2.2, 9.3.3.2, 9.3.4.2).

Cancel (PS3.7 9.3.2.3, 9.3.3.3, 9.3.4.3): an SCU given a ``cancel`` event sends one
C-CANCEL-RQ when it is set and keeps reading until the final response (normally FE00);
an SCP checks for a C-CANCEL-RQ between responses and sub-operations and answers FE00,
with the sub-operation counts for C-GET/C-MOVE (PS3.4 C.4.2.3.1, C.4.3.3.1).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator

from .. import dimsemessages, fragmentation, statuses, trace, uids
from ..association import GATHER_MAX_BYTES
from ..dimsemessages import is_dataset
from ..exceptions import DIMSEProcessingError, EventHandlingError, OperationCancelledError
from ..pdu import PDATA_HEAD, PDU_HEADER, PDV_HEAD, PDataTfBytes
from .base import sop_classes

if TYPE_CHECKING:  # pydicom loads on first use: a server answers C-ECHO without it
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

FIND_SOP_CLASSES = (uids.PATIENT_ROOT_FIND_SOP_CLASS, uids.STUDY_ROOT_FIND_SOP_CLASS)
GET_SOP_CLASSES = (uids.PATIENT_ROOT_GET_SOP_CLASS, uids.STUDY_ROOT_GET_SOP_CLASS)
MOVE_SOP_CLASSES = (uids.PATIENT_ROOT_MOVE_SOP_CLASS, uids.STUDY_ROOT_MOVE_SOP_CLASS)

_C_FIND_RSP, _C_CANCEL_RQ = 0x8020, 0x0FFF

#: C000 Unable to process (net/statuses.py names it per command; built here for the one
#: answered: C-FIND, C-GET or C-MOVE).
_UNABLE_TO_PROCESS = int(statuses.C_FIND_UNABLE_TO_PROCESS)


# ---------------------------------------------------------------------------- SCU helpers
def qr_cancel_scu(asce: Any, ctx: Any, msg_id: int) -> None:
    """Send C-CANCEL-RQ for the C-FIND/C-GET/C-MOVE with Message ID ``msg_id``.

    The peer still sends a final response (FE00 Cancel, or the status it reached), so the
    caller keeps reading the operation's responses (PS3.7 9.3.2.3).
    """
    rq = dimsemessages.CCancelRQMessage()
    rq.message_id_being_responded_to = msg_id
    asce.send(rq, ctx.id)


def _response_status(msg: Any, command: str) -> statuses.Status:
    status = msg.status
    if status is None:  # a response without Status is malformed: treat it as a failure
        return statuses.Status(_UNABLE_TO_PROCESS, command)
    return status


class _Responses:
    """Reads the messages of one operation and sends C-CANCEL-RQ once ``cancel`` is set."""

    def __init__(self, asce: Any, ctx: Any, msg_id: int, cancel: Any):
        self.asce, self.ctx, self.msg_id, self.cancel = asce, ctx, msg_id, cancel
        self.cancel_sent = False

    def next(self) -> tuple[Any, int]:
        """The next message; the wait ends at once when ``cancel`` is set (the association
        sleeps in one poll over its socket and a wake descriptor the event rings)."""
        asce = self.asce
        if self.cancel is None or self.cancel_sent:
            return asce.receive()
        try:
            return asce.receive(None, cancel=self.cancel)
        except OperationCancelledError:
            logger.debug("sending C-CANCEL-RQ for message %d", self.msg_id)
            qr_cancel_scu(asce, self.ctx, self.msg_id)
            self.cancel_sent = True
            return asce.receive()

    def is_ours(self, msg: Any, command_field: int) -> bool:
        if (getattr(msg, "command_field", None) == command_field
                and msg.message_id_being_responded_to == self.msg_id):
            return True
        # No asynchronous operations are negotiated: a message that is not a response to this
        # request (PS3.7 9.1) breaks the protocol, and ignoring it would let a peer keep us
        # waiting for ever, each one restarting the timeout. Abort (as DCMTK does).
        responded = getattr(msg, "message_id_being_responded_to", None)
        text = (f"unexpected {type(msg).__name__} (Message ID Being Responded To {responded!r}) "
                f"during Q/R message {self.msg_id}: association aborted")
        logger.warning(text)
        self.asce.abort()
        raise DIMSEProcessingError(text)


def _request(rq_cls: type, ctx: Any, ds: Any, msg_id: int) -> Any:
    rq = rq_cls()
    rq.message_id = msg_id
    rq.sop_class_uid = ctx.sop_class
    rq.data_set = ds
    return rq


# ---------------------------------------------------------------------------- C-FIND
@sop_classes(FIND_SOP_CLASSES)
def qr_find_scu(asce: Any, ctx: Any, ds: Dataset, msg_id: int, cancel: Any = None
                ) -> Iterator[tuple[Any, statuses.Status]]:
    """C-FIND SCU (PS3.4 C.4.1): yield (identifier, status) per response, the final one last.

    Pending responses carry a matching identifier (a Dataset; raw bytes when it could not
    be decoded); the final response has none. ``cancel`` (a ``threading.Event``) sends
    C-CANCEL-FIND-RQ when set; the generator then ends with the peer's final status.
    """
    asce.send(_request(dimsemessages.CFindRQMessage, ctx, ds, msg_id), ctx.id)
    responses = _Responses(asce, ctx, msg_id, cancel)
    # one Status per distinct value: thousands of Pending (FF00) responses share one object
    # instead of a table lookup each (a measurable share of a 10,000-match C-FIND)
    known: dict[int, statuses.Status] = {}
    while True:
        msg, _ = responses.next()
        if not responses.is_ours(msg, _C_FIND_RSP):
            continue
        value = msg.get_command_value(0x0900)  # Status (PS3.7 9.3.2.2)
        status = known.get(value) if value is not None else None
        if status is None:
            status = _response_status(msg, "C-FIND")
            if value is not None:
                known[value] = status
        yield msg.data_set, status
        if not status.is_pending:
            return


def _error_comment(text: Any) -> str | None:
    """Error Comment (0000,0902) is LO: at most 64 characters (PS3.7 C.4)."""
    return str(text)[:64] if text else None


def _send_find_rsp(asce: Any, ctx: Any, rq: Any, status: int, identifier: Any = None,
                   error_comment: str | None = None, *, gather: bool = False) -> None:
    rsp = dimsemessages.CFindRSPMessage()  # a fresh message per response, never shared
    rsp.message_id_being_responded_to = rq.message_id
    rsp.affected_sop_class_uid = rq.sop_class_uid
    rsp.status = int(status)
    comment = error_comment or getattr(status, "error_comment", None)
    if comment and not statuses.Status(int(status)).is_pending:
        rsp.error_comment = _error_comment(comment)
    if is_dataset(identifier):
        # The fast codec gives pydicom's bytes for a flat identifier (None: pydicom encodes).
        from ..dataset_codec import encode_identifier

        encoded = encode_identifier(identifier, _context_syntax(ctx))
        if encoded is not None:
            identifier = encoded
    rsp.data_set = identifier
    if gather:
        asce.send(rsp, ctx.id, gather=True)
    else:
        asce.send(rsp, ctx.id)


def _readiness(results: Any) -> Any:
    """How ``qr_find_scp`` learns whether the hook's next match is there without waiting:
    a list or tuple holds all of them; an iterator may say so itself with ``ready()`` (the
    number of matches it can give at once, 0 when its next step may wait — the archive's
    answer, between two batches of SQLite rows). None: nothing is known, so every match
    is written before the hook is asked for the next one."""
    if isinstance(results, (list, tuple)):
        return _always_ready
    ready = getattr(results, "ready", None)
    return ready if callable(ready) else None


def _always_ready() -> int:
    return 1


def _context_syntax(ctx: Any) -> str:
    ts = ctx.supported_ts
    return str(ts[0] if isinstance(ts, (list, tuple)) else ts)


class _PendingWriter:
    """The pending C-FIND-RSPs of one request whose identifiers are already encoded
    (bytes), written as the PDUs ``CFindRSPMessage.encode`` gives (one P-DATA-TF of two
    PDVs each), laid out here instead: the command set of a pending response is the same
    bytes for every match, so it is encoded once per status and each match costs two
    packed headers (``pdu.PDataTfBytes``). The bytes on the wire are those of the message
    path (tests/net/test_qr_pending_writer.py compares them).

    ``add`` returns False for what it does not take (a trace listening: it shows every
    message; an identifier too large for one PDU at the peer's maximum): the caller sends
    that one as a message, after ``write``. ``write`` writes what was added, after what
    the association gathered before (``asce.flush``), so the order never changes."""

    def __init__(self, asce: Any, ctx: Any, rq: Any) -> None:
        self.asce, self.rq, self.ctx_id = asce, rq, ctx.id
        # A message fits one PDU when its command and identifier PDVs fit the peer's
        # maximum (fragmentation's rule, as DIMSEMessage.encode applies it).
        limit = fragmentation._fragment_size(asce.peer_max_pdu_length) + fragmentation.PDV_OVERHEAD
        self.room = limit - 2 * fragmentation.PDV_OVERHEAD
        self.commands: dict[int, tuple[bytes, int]] = {}
        self.parts: list[bytes] = []
        self.size = 0
        self.count = 0

    def _command(self, status: int) -> tuple[bytes, int]:
        rsp = dimsemessages.CFindRSPMessage()
        rsp.message_id_being_responded_to = self.rq.message_id
        rsp.affected_sop_class_uid = self.rq.sop_class_uid
        rsp.status = status
        rsp.data_set = b""  # an identifier follows (Command Data Set Type: present)
        command = rsp.set_length()
        # the first PDV (the command's only, last fragment) after the PDU header
        head = PDATA_HEAD.pack(4, 0, 0, 2 + len(command), self.ctx_id, 0x03)[6:]
        self.commands[status] = entry = (head + command, len(command))
        return entry

    def add(self, identifier: bytes, status: int) -> bool:
        entry = self.commands.get(status) or self._command(status)
        length = len(identifier)
        if entry[1] + length > self.room or trace.enabled():
            return False
        command_pdv, command_length = entry
        pdu_length = 12 + command_length + length
        self.parts += (PDU_HEADER.pack(4, 0, pdu_length), command_pdv,
                       PDV_HEAD.pack(2 + length, self.ctx_id, 0x02), identifier)
        self.size += 6 + pdu_length
        self.count += 1
        return True

    def write(self) -> None:
        if self.count:
            data = b"".join(self.parts)
            count = self.count
            self.parts, self.size, self.count = [], 0, 0
            self.asce.flush()
            self.asce.dul.send_pdata([PDataTfBytes(data, count)])


@sop_classes(FIND_SOP_CLASSES)
def qr_find_scp(asce: Any, ctx: Any, msg: Any) -> None:
    """C-FIND SCP: one pending response per (identifier, status) of ``on_receive_find``.

    The hook's iterator may end with a non-pending status, which becomes the final
    response; otherwise the final response is Success. A C-CANCEL-RQ between matches ends
    the search with FE00 (PS3.4 C.4.1.3.1). Each identifier is encoded into its own new
    message at once, so the hook may even reuse one Dataset for every match.

    Code written for the reference may yield ``(identifier, SUCCESS)`` for its last match;
    a final response carries no identifier (PS3.4 C.4.1.1.4), so such an identifier is sent
    as one more Pending match, followed by the final status.

    Pending responses are written as soon as the hook's next step might wait: the first
    match at once, the ones after it together while the hook says more are ready
    (``_readiness``: a list, or an iterator with ``ready()`` such as the archive's), in one
    gathered write of at most ``association.GATHER_MAX_BYTES``. A C-CANCEL-RQ is looked
    for before the first match and after every write, so at most one such batch follows it.
    Identifiers the hook gives already encoded (bytes: the archive's) go out through
    ``_PendingWriter``, the same bytes without a message object per match.
    """
    if msg.data_set_over_limit:  # PS3.4 C.4.1.1.4: A700 Refused: Out of Resources
        logger.warning("C-FIND identifier refused: %s", msg.data_set_error)
        _send_find_rsp(asce, ctx, msg, statuses.C_FIND_OUT_OF_RESOURCES,
                       error_comment=msg.data_set_error)
        return
    if msg.data_set_error or not is_dataset(msg.data_set):
        logger.info("C-FIND identifier could not be decoded: %s", msg.data_set_error)
        _send_find_rsp(asce, ctx, msg, statuses.C_FIND_UNABLE_TO_PROCESS)
        return
    final: int = statuses.SUCCESS
    comment: str | None = None
    codes: dict[int, statuses.Status] = {}  # one Status per value, not one per match
    writer = _PendingWriter(asce, ctx, msg)
    try:
        if _cancel_arrived(asce, msg.message_id):  # before the hook's first step
            final = statuses.C_FIND_CANCEL
        else:
            results = asce.ae.on_receive_find(ctx, msg.data_set)
            ready = _readiness(results)
            matches = iter(results)
            first = True
            while True:
                if (writer.count or asce.gathered_bytes) and (ready is None or not ready()):
                    # the hook's next step may wait: nothing made is held
                    writer.write()
                    asce.flush()
                    if _cancel_arrived(asce, msg.message_id):
                        final = statuses.C_FIND_CANCEL
                        break
                try:
                    identifier, status = next(matches)
                except StopIteration:
                    writer.write()
                    if _cancel_arrived(asce, msg.message_id):
                        final = statuses.C_FIND_CANCEL
                    break
                code = codes.get(status) if type(status) is int else None
                if code is None:
                    code = statuses.Status(int(status), "C-FIND")
                    if type(status) is int:
                        codes[status] = code
                if not code.is_pending:
                    writer.write()
                    if identifier is not None:
                        _send_find_rsp(asce, ctx, msg, statuses.C_FIND_PENDING, identifier)
                    final, comment = code, getattr(status, "error_comment", None)
                    break
                # The first match leaves at once; those after it wait for the ones ready
                # with them (one write), at most GATHER_MAX_BYTES.
                if type(identifier) is bytes and writer.add(identifier, int(code)):
                    if first or writer.size >= GATHER_MAX_BYTES:
                        writer.write()
                        written = True
                    else:
                        written = False
                else:
                    writer.write()
                    _send_find_rsp(asce, ctx, msg, code, identifier, gather=not first)
                    written = first or not asce.gathered_bytes
                if written:  # a C-CANCEL-RQ may be there
                    first = False
                    if _cancel_arrived(asce, msg.message_id):
                        final = statuses.C_FIND_CANCEL
                        break
    except EventHandlingError as exc:
        logger.info("on_receive_find refused: %s", exc)
        final, comment = exc.failure_status(statuses.C_FIND_UNABLE_TO_PROCESS), str(exc)
    writer.write()
    _send_find_rsp(asce, ctx, msg, final, error_comment=comment)


def _cancel_arrived(asce: Any, message_id: int) -> bool:
    """Did a C-CANCEL-RQ for ``message_id`` arrive? (never blocks; see cancel_requested)."""
    return asce.cancel_requested(message_id)
