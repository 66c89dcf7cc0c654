"""Query/Retrieve service class (PS3.4 Annex C): C-GET and C-MOVE, SCU and SCP.

The SCU roles are generators over the responses (progress counts as they arrive); the SCPs
call the AE hooks ``on_receive_get``/``on_receive_move`` and send each matching instance as
a C-STORE sub-operation (on the same association for C-GET, on one of their own to the
Move Destination for C-MOVE), counting them in each pending response. A C-CANCEL-RQ is looked
for between sub-operations (PS3.4 C.4.2.3.1, C.4.3.3.1). The helpers shared with C-FIND
(reading responses, sending C-CANCEL-RQ) are in ``qr.py``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .. import dimsemessages, statuses, uids
from ..dimsemessages import is_dataset
from ..exceptions import AssociationError, EventHandlingError, NetDICOMError
from ..printable import printable
from ..records import FrozenRecord, Record
from .base import sop_classes
from .qr import (GET_SOP_CLASSES, MOVE_SOP_CLASSES, _UNABLE_TO_PROCESS, _Responses, _cancel_arrived,
                 _error_comment, _request, _response_status)

if TYPE_CHECKING:  # pydicom loads on first use: a server answers C-ECHO without it
    from pydicom.dataset import Dataset

logger = logging.getLogger("dicomdesk.net.sopclass.qr")  # the name its messages always had

_C_GET_RSP, _C_MOVE_RSP, _C_STORE_RQ = 0x8010, 0x8021, 0x0001

# Status values by meaning, from net/statuses.py (named there per command; the code below
# builds each for the command it answers, C-GET or C-MOVE, and for C-STORE sub-operations).
_SUCCESS = int(statuses.SUCCESS)                                                  # 0000
_PENDING = int(statuses.PENDING)                                                  # FF00
_CANCEL = int(statuses.CANCEL)                                                    # FE00
_OUT_OF_RESOURCES_MATCHES = int(statuses.C_MOVE_OUT_OF_RESOURCES_MATCHES)         # A701
_OUT_OF_RESOURCES_SUB_OPERATIONS = int(statuses.C_MOVE_OUT_OF_RESOURCES_SUB_OPERATIONS)  # A702
_SUB_OPERATIONS_WARNING = int(statuses.C_MOVE_WARNING)                            # B000
_STORE_OUT_OF_RESOURCES = int(statuses.C_STORE_OUT_OF_RESOURCES)                  # A700
_STORE_CANNOT_UNDERSTAND = int(statuses.C_STORE_CANNOT_UNDERSTAND)                # C000
_STORE_SOP_CLASS_NOT_SUPPORTED = int(statuses.C_STORE_SOP_CLASS_NOT_SUPPORTED)    # 0122


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
    from ..part10 import read_part10_header

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
    from .storage_send import storage_scu  # the Storage service (PS3.4 B) does the sub-operations

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
