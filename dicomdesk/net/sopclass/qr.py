"""Query/Retrieve service class (PS3.4 Annex C): C-FIND, C-GET, C-MOVE and C-CANCEL.

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
import os
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .. import dimsemessages, statuses, trace, uids
from ..asceprovider import GATHER_MAX_BYTES
from ..exceptions import (AssociationError, DIMSEProcessingError, EventHandlingError,
                          NetDICOMError, OperationCancelledError)
from ..pdu import PDATA_HEAD, PDU_HEADER, PDV_HEAD, PDataTfBytes
from ..printable import printable
from ..dimsemessages import is_dataset
from ..records import FrozenRecord, Record
from .base import sop_classes

if TYPE_CHECKING:  # pydicom loads on first use: a server answers C-ECHO without it
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

FIND_SOP_CLASSES = (uids.PATIENT_ROOT_FIND_SOP_CLASS, uids.STUDY_ROOT_FIND_SOP_CLASS)
GET_SOP_CLASSES = (uids.PATIENT_ROOT_GET_SOP_CLASS, uids.STUDY_ROOT_GET_SOP_CLASS)
MOVE_SOP_CLASSES = (uids.PATIENT_ROOT_MOVE_SOP_CLASS, uids.STUDY_ROOT_MOVE_SOP_CLASS)

_C_FIND_RSP, _C_GET_RSP, _C_MOVE_RSP, _C_STORE_RQ, _C_CANCEL_RQ = 0x8020, 0x8010, 0x8021, 0x0001, 0x0FFF

# Status values by meaning, from net/statuses.py (named there per command; the code below
# builds each for the command it answers: C-FIND, C-GET or C-MOVE, and C-STORE sub-operations).
_SUCCESS = int(statuses.SUCCESS)                                                  # 0000
_PENDING = int(statuses.PENDING)                                                  # FF00
_CANCEL = int(statuses.CANCEL)                                                    # FE00
_UNABLE_TO_PROCESS = int(statuses.C_FIND_UNABLE_TO_PROCESS)                       # C000
_OUT_OF_RESOURCES_MATCHES = int(statuses.C_MOVE_OUT_OF_RESOURCES_MATCHES)         # A701
_OUT_OF_RESOURCES_SUB_OPERATIONS = int(statuses.C_MOVE_OUT_OF_RESOURCES_SUB_OPERATIONS)  # A702
_SUB_OPERATIONS_WARNING = int(statuses.C_MOVE_WARNING)                            # B000
_STORE_OUT_OF_RESOURCES = int(statuses.C_STORE_OUT_OF_RESOURCES)                  # A700
_STORE_CANNOT_UNDERSTAND = int(statuses.C_STORE_CANNOT_UNDERSTAND)                # C000
_STORE_SOP_CLASS_NOT_SUPPORTED = int(statuses.C_STORE_SOP_CLASS_NOT_SUPPORTED)    # 0122


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
        # maximum (dimsemessages.DIMSEMessage.encode's rule).
        limit = dimsemessages._fragment_size(asce.peer_max_pdu_length) + dimsemessages.PDV_OVERHEAD
        self.room = limit - 2 * dimsemessages.PDV_OVERHEAD
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
    gathered write of at most ``asceprovider.GATHER_MAX_BYTES``. A C-CANCEL-RQ is looked
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


# ---------------------------------------------------------------------------- C-GET / C-MOVE SCU
@sop_classes(GET_SOP_CLASSES)
def qr_get_scu(asce: Any, ctx: Any, ds: Dataset, msg_id: int, cancel: Any = None
               ) -> Iterator[tuple[statuses.Status, Any]]:
    """C-GET SCU (PS3.4 C.4.3): yield (status, C-GET-RSP) per response, the final one last.

    The peer sends the matching instances as C-STORE sub-operations on this association,
    over the storage contexts we proposed with the SCP role (PS3.7 D.3.3.4). Each is given
    to ``asce.ae.on_receive_store(context, data)`` — ``data`` is the file object of
    ``ae.get_file`` for ``store_in_file`` classes, else a Dataset — and answered with the
    status the hook returns. A file object is closed once the hook returns.
    """
    asce.send(_request(dimsemessages.CGetRQMessage, ctx, ds, msg_id), ctx.id)
    responses = _Responses(asce, ctx, msg_id, cancel)
    while True:
        msg, pc_id = responses.next()
        if getattr(msg, "command_field", None) == _C_STORE_RQ:
            _answer_store(asce, msg, pc_id)
            continue
        if not responses.is_ours(msg, _C_GET_RSP):
            continue
        status = _response_status(msg, "C-GET")
        yield status, msg
        if not status.is_pending:
            return


def _answer_store(asce: Any, rq: Any, pc_id: int) -> None:
    """Hand a C-STORE sub-operation of a C-GET to the AE and answer it (PS3.4 C.4.3.2)."""
    data = rq.data_set
    try:
        if rq.data_set_error:
            logger.info("C-STORE data set of %s not usable: %s", rq.affected_sop_instance_uid,
                        rq.data_set_error)
            status = int(statuses.C_STORE_CANNOT_UNDERSTAND)
            failed = getattr(asce.ae, "on_receive_store_failed", None)
            if failed is not None:  # the same extension hook storage_scp calls
                failed(asce.context(pc_id), data, rq.data_set_error)
        else:
            status = int(asce.ae.on_receive_store(asce.context(pc_id), data))
    except EventHandlingError as exc:
        logger.info("on_receive_store refused: %s", exc)
        status = int(statuses.C_STORE_CANNOT_UNDERSTAND)
    except Exception:  # a failing hook fails this sub-operation, not the association
        logger.exception("on_receive_store failed")
        status = int(statuses.C_STORE_OUT_OF_RESOURCES)
    finally:
        close = getattr(data, "close", None)
        if close is not None and not getattr(data, "closed", True):
            close()
    rsp = dimsemessages.CStoreRSPMessage()
    rsp.message_id_being_responded_to = rq.message_id
    rsp.affected_sop_class_uid = rq.affected_sop_class_uid
    rsp.affected_sop_instance_uid = rq.affected_sop_instance_uid
    rsp.status = status
    asce.send(rsp, pc_id)


@sop_classes(MOVE_SOP_CLASSES)
def qr_move_scu(asce: Any, ctx: Any, ds: Dataset, dest_ae: str, msg_id: int, cancel: Any = None
                ) -> Iterator[tuple[statuses.Status, Any]]:
    """C-MOVE SCU (PS3.4 C.4.2): yield (status, C-MOVE-RSP) per response, the final one last.

    The peer stores the matches to ``dest_ae`` on associations of its own; the pending
    responses carry the sub-operation counts for progress.
    """
    rq = _request(dimsemessages.CMoveRQMessage, ctx, ds, msg_id)
    rq.move_destination = dest_ae
    asce.send(rq, ctx.id)
    responses = _Responses(asce, ctx, msg_id, cancel)
    while True:
        msg, _ = responses.next()
        if not responses.is_ours(msg, _C_MOVE_RSP):
            continue
        status = _response_status(msg, "C-MOVE")
        yield status, msg
        if not status.is_pending:
            return


# ---------------------------------------------------------------------------- C-GET / C-MOVE SCP
class SubOperations(Record):
    """Counts of a retrieve's C-STORE sub-operations (PS3.7 9.3.3.2 / 9.3.4.2)."""

    _fields = ("remaining", "completed", "failed", "warning", "failed_uids")

    def __init__(self, remaining: int, completed: int = 0, failed: int = 0, warning: int = 0,
                 failed_uids: list | None = None) -> None:
        self.remaining = remaining
        self.completed = completed
        self.failed = failed
        self.warning = warning
        self.failed_uids = [] if failed_uids is None else failed_uids

    def record(self, status: int, sop_instance_uid: str | None) -> None:
        """Count one finished sub-operation by its C-STORE status (PS3.4 C.4.2.3.1)."""
        code = statuses.Status(int(status), "C-STORE")
        if code.is_success:
            self.completed += 1
        elif code.is_warning:
            self.warning += 1
        else:
            self.failed += 1
            if sop_instance_uid:
                self.failed_uids.append(sop_instance_uid)
        self.remaining = max(self.remaining - 1, 0)

    def final_status(self, command: str) -> statuses.Status:
        """0000 when all succeeded; A702 when none did; B000 otherwise (PS3.4 C.4.2.1.5)."""
        if self.failed == 0 and self.warning == 0:
            return statuses.Status(_SUCCESS, command)
        if self.completed == 0 and self.warning == 0:
            return statuses.Status(_OUT_OF_RESOURCES_SUB_OPERATIONS, command)
        return statuses.Status(_SUB_OPERATIONS_WARNING, command)

    def identifier(self) -> Dataset | None:
        """The final response's identifier: Failed SOP Instance UID List (0008,0058)."""
        if not self.failed_uids:
            return None
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.FailedSOPInstanceUIDList = list(self.failed_uids)
        return ds


def _send_retrieve_rsp(asce: Any, ctx: Any, rq: Any, rsp_cls: type, status: int,
                       counts: SubOperations | None, *, final: bool,
                       error_comment: str | None = None) -> None:
    rsp = rsp_cls()  # a fresh message per response, never shared
    rsp.message_id_being_responded_to = rq.message_id
    rsp.affected_sop_class_uid = rq.sop_class_uid
    rsp.status = int(status)
    if error_comment:
        rsp.error_comment = _error_comment(error_comment)
    if counts is not None:
        # Remaining is sent with Pending and Cancel only (PS3.7 Table 9.3-5 / 9.3-7 notes).
        if not final or statuses.Status(int(status)).is_cancel:
            rsp.num_of_remaining_sub_ops = counts.remaining
        rsp.num_of_completed_sub_ops = counts.completed
        rsp.num_of_failed_sub_ops = counts.failed
        rsp.num_of_warning_sub_ops = counts.warning
        if final:
            rsp.data_set = counts.identifier()
    asce.send(rsp, ctx.id)


class _Item(FrozenRecord):
    """One instance to send: what to send, and what the context must be. ``payload``: a
    Dataset or a file path; ``transfer_syntax`` None: any uncompressed syntax will do."""

    _fields = ("payload", "sop_class", "sop_instance", "transfer_syntax")

    def __init__(self, payload: Any, sop_class: str, sop_instance: str,
                 transfer_syntax: str | None) -> None:
        self._assign(payload, sop_class, sop_instance, transfer_syntax)


def describe_item(item: Any) -> _Item:
    """SOP class/instance and transfer syntax of a Dataset or a file name (header only)."""
    if is_dataset(item):
        meta = getattr(item, "file_meta", None)
        ts = meta.get("TransferSyntaxUID") if meta is not None else None
        if ts is None or ts in uids.UNCOMPRESSED_TRANSFER_SYNTAXES:
            ts = None  # an in-memory data set is encoded in whatever syntax the context has
        return _Item(item, str(item.SOPClassUID), str(item.SOPInstanceUID), ts and str(ts))
    from .storage import read_part10_header

    path = os.fspath(item)
    header = read_part10_header(path)
    return _Item(path, header.sop_class_uid, header.sop_instance_uid, header.transfer_syntax)


def choose_context(contexts: Iterable[Any], item: _Item) -> Any | None:
    """The context to store ``item`` on: its own transfer syntax, else an uncompressed one
    when the item is uncompressed (it is then re-encoded); None when nothing fits."""
    candidates = [c for c in contexts if c.sop_class == item.sop_class]
    for ctx in candidates:
        if item.transfer_syntax is not None and ctx.supported_ts == item.transfer_syntax:
            return ctx
    if item.transfer_syntax is None or item.transfer_syntax in uids.UNCOMPRESSED_TRANSFER_SYNTAXES:
        for ctx in candidates:
            if ctx.supported_ts in uids.UNCOMPRESSED_TRANSFER_SYNTAXES:
                return ctx
    return None


def _run_sub_operations(asce: Any, ctx: Any, rq: Any, rsp_cls: type, command: str,
                        count: int, items: Iterable, store: Any) -> None:
    """Send each item with ``store(item) -> status``, a pending response after each, then
    the final one; a C-CANCEL-RQ stops it with FE00 and the counts (PS3.4 C.4.2.3.1)."""
    counts = SubOperations(remaining=max(int(count), 0))
    iterator = iter(items)
    while True:
        if _cancel_arrived(asce, rq.message_id):
            logger.info("%s %d cancelled by the peer", command, rq.message_id)
            _send_retrieve_rsp(asce, ctx, rq, rsp_cls, statuses.Status(_CANCEL, command), counts,
                               final=True)
            return
        try:
            raw = next(iterator)
        except StopIteration:
            break
        uid = None
        try:
            item = describe_item(raw)
            uid = item.sop_instance
            status = store(item)
        except AssociationError as exc:
            if not asce.association_established:  # this association ended: nothing can follow
                raise
            logger.info("%s sub-operation failed: %s", command, exc)  # a C-MOVE sub-association
            status = _STORE_OUT_OF_RESOURCES
        except (NetDICOMError, OSError, ValueError, AttributeError, KeyError,
                _invalid_dicom_error()) as exc:
            logger.info("%s sub-operation failed: %s", command, exc)
            status = _STORE_OUT_OF_RESOURCES if isinstance(exc, (NetDICOMError, OSError)) \
                else _STORE_CANNOT_UNDERSTAND
        counts.record(status, uid)
        _send_retrieve_rsp(asce, ctx, rq, rsp_cls, statuses.Status(_PENDING, command), counts,
                           final=False)
    counts.remaining = 0
    _send_retrieve_rsp(asce, ctx, rq, rsp_cls, counts.final_status(command), counts, final=True)


def _invalid_dicom_error() -> type:
    """pydicom's InvalidDicomError, for an ``except`` clause (evaluated only when something
    was raised): by then pydicom is loaded, or the error is not one of its own."""
    from pydicom.errors import InvalidDicomError

    return InvalidDicomError


def _storage_scu() -> Any:
    from .storage import storage_scu  # the Storage service (PS3.4 B) does the sub-operations

    return storage_scu


def _identifier_refused(asce: Any, ctx: Any, msg: Any, rsp_cls: type, command: str) -> bool:
    """Answer a C-GET/C-MOVE whose identifier was not decoded; True when it was answered.

    Refused for its decoded size (``data_set_over_limit``): A701 Refused: Out of Resources –
    Unable to calculate number of matches (PS3.4 C.4.2.1.5, C.4.3.1.4), with the reason as
    Error Comment; undecodable: C000 Unable to process."""
    if msg.data_set_over_limit:
        logger.warning("%s identifier refused: %s", command, msg.data_set_error)
        _send_retrieve_rsp(asce, ctx, msg, rsp_cls, statuses.Status(_OUT_OF_RESOURCES_MATCHES, command), None,
                           final=True, error_comment=msg.data_set_error)
        return True
    if msg.data_set_error or not is_dataset(msg.data_set):
        _send_retrieve_rsp(asce, ctx, msg, rsp_cls, statuses.Status(_UNABLE_TO_PROCESS, command), None,
                           final=True)
        return True
    return False


@sop_classes(GET_SOP_CLASSES)
def qr_get_scp(asce: Any, ctx: Any, msg: Any) -> None:
    """C-GET SCP (PS3.4 C.4.3; an extension of the reference).

    ``asce.ae.on_receive_get(ctx, identifier)`` returns (number of sub-operations, iterator
    of data sets or file names). Each is sent with C-STORE on this association, over a
    context the requestor proposed with the SCP role (PS3.7 D.3.3.4) for its SOP class; an
    instance without a usable context is a failed sub-operation.
    """
    if _identifier_refused(asce, ctx, msg, dimsemessages.CGetRSPMessage, "C-GET"):
        return
    try:
        count, items = asce.ae.on_receive_get(ctx, msg.data_set)
    except EventHandlingError as exc:
        logger.info("on_receive_get refused: %s", exc)
        _send_retrieve_rsp(asce, ctx, msg, dimsemessages.CGetRSPMessage,
                           exc.failure_status(statuses.C_GET_UNABLE_TO_PROCESS), None, final=True,
                           error_comment=str(exc))
        return
    roles = getattr(asce, "roles", {})
    store_contexts = [c for pc_id, c in asce.accepted_contexts.items()
                      if roles.get(pc_id, (False, False))[0]]
    storage_scu = _storage_scu()

    def store(item: _Item) -> int:
        store_ctx = choose_context(store_contexts, item)
        if store_ctx is None:
            logger.info("no presentation context for %s in %s", item.sop_class,
                        item.transfer_syntax or "an uncompressed syntax")
            if not any(c.sop_class == item.sop_class for c in store_contexts):
                return _STORE_SOP_CLASS_NOT_SUPPORTED
            return _STORE_CANNOT_UNDERSTAND
        return int(storage_scu(asce, store_ctx, item.payload, asce.next_message_id()))

    _run_sub_operations(asce, ctx, msg, dimsemessages.CGetRSPMessage, "C-GET", count, items, store)


@sop_classes(MOVE_SOP_CLASSES)
def qr_move_scp(asce: Any, ctx: Any, msg: Any) -> None:
    """C-MOVE SCP (PS3.4 C.4.2).

    ``asce.ae.on_receive_move(ctx, identifier, destination)`` returns (remote AE dict or
    None, number of sub-operations, iterator of data sets or file names). None answers
    A801 Move Destination Unknown. Otherwise this AE opens an association to the
    destination with a context per SOP class and transfer syntax the instances need, and
    stores each one there (C-STORE with Move Originator AE title and Message ID, PS3.7
    9.3.1.1).
    """
    if _identifier_refused(asce, ctx, msg, dimsemessages.CMoveRSPMessage, "C-MOVE"):
        return
    destination = msg.move_destination
    if not isinstance(destination, str):  # multi-valued (PACS\EVIL), binary: no AE title
        logger.info("C-MOVE destination %s is not one AE title", printable(destination))
        _send_retrieve_rsp(asce, ctx, msg, dimsemessages.CMoveRSPMessage,
                           statuses.C_MOVE_DESTINATION_UNKNOWN, None, final=True,
                           error_comment="Move Destination must be a single AE title")
        return
    destination = destination.rstrip("\0").strip()  # VR AE: spaces and NUL padding
    try:
        remote, count, items = asce.ae.on_receive_move(ctx, msg.data_set, destination)
    except EventHandlingError as exc:
        logger.info("on_receive_move refused: %s", exc)
        _send_retrieve_rsp(asce, ctx, msg, dimsemessages.CMoveRSPMessage,
                           exc.failure_status(statuses.C_MOVE_UNABLE_TO_PROCESS), None, final=True,
                           error_comment=str(exc))
        return
    if remote is None:
        logger.info("C-MOVE destination %s unknown", printable(destination))
        _send_retrieve_rsp(asce, ctx, msg, dimsemessages.CMoveRSPMessage,
                           statuses.C_MOVE_DESTINATION_UNKNOWN, None, final=True)
        return
    # The contexts depend on the instances, so their headers are read before associating.
    described: list = []
    for raw in items:
        try:
            described.append(describe_item(raw))
        except (OSError, ValueError, AttributeError, KeyError, _invalid_dicom_error()) as exc:
            logger.info("C-MOVE: cannot read %r: %s", raw, exc)
            described.append(raw)  # fails again (and is counted) in the sub-operation loop
    count = max(int(count), len(described))
    if not described:
        _send_retrieve_rsp(asce, ctx, msg, dimsemessages.CMoveRSPMessage,
                           statuses.Status(_SUCCESS, "C-MOVE"), SubOperations(0), final=True)
        return
    try:
        sub = _open_sub_association(asce, remote, [d for d in described if isinstance(d, _Item)])
    except Exception as exc:  # no association: every sub-operation fails (PS3.4 C.4.2.3.1)
        logger.info("C-MOVE: cannot associate with %s: %s", printable(destination), printable(exc))
        counts = SubOperations(remaining=0, failed=count,
                               failed_uids=[d.sop_instance for d in described if isinstance(d, _Item)])
        # the requestor learns where we tried, so it can say what to fix (PS3.7 C.4: LO)
        where = f"{remote.get('address', '')}:{remote.get('port', '')}"
        _send_retrieve_rsp(asce, ctx, msg, dimsemessages.CMoveRSPMessage,
                           statuses.Status(_OUT_OF_RESOURCES_SUB_OPERATIONS if count else _SUCCESS, "C-MOVE"),
                           counts, final=True,
                           error_comment=f"cannot reach {destination} at {where}" if count else None)
        return
    storage_scu = _storage_scu()
    originator = (asce.calling_ae_title, msg.message_id)

    def store(item: _Item) -> int:
        store_ctx = choose_context(sub.accepted_contexts.values(), item)
        if store_ctx is None:
            if not sub.contexts_for(item.sop_class):
                return _STORE_SOP_CLASS_NOT_SUPPORTED
            return _STORE_CANNOT_UNDERSTAND
        # naming the C-MOVE that caused it (Move Originator AE Title / Message ID, PS3.7 9.3.1.1)
        return int(storage_scu(sub, store_ctx, item.payload, sub.next_message_id(),
                               move_originator=originator))

    with sub:
        _run_sub_operations(asce, ctx, msg, dimsemessages.CMoveRSPMessage, "C-MOVE", count,
                            [d.payload if isinstance(d, _Item) else d for d in described], store)


def _open_sub_association(asce: Any, remote: dict, items: list) -> Any:
    """An association from this AE to the C-MOVE destination with the contexts ``items`` need:
    each SOP class in the uncompressed syntaxes, plus each compressed syntax in use."""
    from ..applicationentity import ClientAE

    local = asce.ae
    client = ClientAE(local.ae_title, supported_ts=list(uids.UNCOMPRESSED_TRANSFER_SYNTAXES),
                      max_pdu_length=local.max_pdu_length)
    client.timeout = local.timeout
    client.dimse_timeout = local.dimse_timeout
    storage_scu = _storage_scu()
    classes = list(dict.fromkeys(i.sop_class for i in items))
    client.add_scu(storage_scu, classes)
    for item in items:
        ts = item.transfer_syntax
        if ts is not None and ts not in uids.UNCOMPRESSED_TRANSFER_SYNTAXES:
            client.update_context_def_list([item.sop_class], transfer_syntaxes=[ts])
    return client.request_association(remote)
