"""The storage SCP (PS3.4 B.2.3, C-STORE PS3.7 9.1.1): ``storage_scp`` receives into a file
(``@store_in_file``: ``AE.get_file`` supplies it) and answers with the status of
``AE.on_receive_store``; ``STORAGE_SCP_TRANSFER_SYNTAXES`` is what it can accept."""

from __future__ import annotations

import logging
from typing import Any

from .. import dimsemessages, statuses, trace, uids
from ..commandset import encode_fields, encode_plain
from ..exceptions import EventHandlingError
from ..fragmentation import LAST_COMMAND_FRAGMENT
from ..part10 import CONVERTIBLE_TRANSFER_SYNTAXES
from ..pdu import PDataTfPDU, PresentationDataValueItem
from .base import sop_classes_on_first_use, store_in_file

logger = logging.getLogger(__name__)


@store_in_file
@sop_classes_on_first_use(lambda: uids.STORAGE_SOP_CLASSES)
def storage_scp(asce: Any, ctx: Any, msg: Any) -> None:
    """Answer C-STORE with the status of ``ae.on_receive_store(ctx, file)`` (PS3.4 B.2.3).

    ``msg.data_set`` is the file ``get_file`` opened, positioned at the Part-10 file's start;
    it is closed when the hook returns.
    A data set that could not be received answers A700 (out of resources) when our write
    failed (the decoder's ``data_set_not_stored``), C000 otherwise; the AE's ``on_receive_store_failed`` (an extension, if present)
    is told so it can discard the file. ``EventHandlingError`` answers C000.
    """
    error = getattr(msg, "data_set_error", None)
    if not error and msg.data_set is None:  # Command Data Set Type 0101: nothing to keep
        error = "C-STORE request without a data set"
    if error:
        logger.warning("C-STORE of %s not received: %s", msg.affected_sop_instance_uid, error)
        status = statuses.Status(int(statuses.C_STORE_OUT_OF_RESOURCES)
                                 if getattr(msg, "data_set_not_stored", False)
                                 else int(statuses.C_STORE_CANNOT_UNDERSTAND), "C-STORE")
        status.error_comment = error  # e.g. why the archive refuses (disk full), PS3.7 C.4
        failed = getattr(asce.ae, "on_receive_store_failed", None)
        if failed is not None:
            failed(ctx, msg.data_set, error)
        elif hasattr(msg.data_set, "close"):
            msg.data_set.close()
    else:
        begin = getattr(asce.ae, "begin_receive_store", None)
        if begin is not None and getattr(asce, "ops_performed", 1) > 1:
            # Within an asynchronous window the hook may store the object out of line (its
            # fsyncs overlap the next object's transfer); the response goes when it is done.
            # Its future resolves to the status, or to a callable giving it on this thread.
            future = begin(ctx, msg.data_set)
            if future is not None:
                asce.defer(future, lambda done: _send_store_response(
                    asce, ctx, msg, done() if callable(done) else done))
                return
        try:
            status = asce.ae.on_receive_store(ctx, msg.data_set)
        except EventHandlingError as exc:
            logger.info("on_receive_store refused %s: %s", msg.affected_sop_instance_uid, exc)
            status = statuses.C_STORE_CANNOT_UNDERSTAND
        finally:
            # As in the reference, the service closes the received file once the hook is
            # done with it (a hook that keeps the data moves or copies it first).
            close = getattr(msg.data_set, "close", None)
            if close is not None and not getattr(msg.data_set, "closed", True):
                close()
    _send_store_response(asce, ctx, msg, status)


_LAST_COMMAND_FRAGMENT = bytes((LAST_COMMAND_FRAGMENT,))


def _store_rsp_fields(class_uid: Any, message_id: Any, status: int, instance_uid: Any) -> dict[int, Any] | None:
    """The command fields of a C-STORE-RSP without Error Comment (PS3.7 9.3.1.2), as
    ``CStoreRSPMessage`` would hold them, when they are plain: both UIDs given, a Message ID
    that fits; None otherwise (the message object then builds them)."""
    # A received command set read through pydicom holds its UIDs as ``UID`` (a str subclass).
    if not (isinstance(class_uid, str) and isinstance(instance_uid, str) and class_uid.strip(" \0")
            and instance_uid.strip(" \0") and type(message_id) is int and 0 <= message_id <= 0xFFFF):
        return None
    return {0x0002: str(class_uid), 0x0100: 0x8001, 0x0120: message_id, 0x0800: dimsemessages.NO_DATA_SET,
            0x0900: status, 0x1000: str(instance_uid)}


def _send_store_response(asce: Any, ctx: Any, msg: Any, status: Any) -> None:
    """Send the C-STORE-RSP: its command set encoded (``commandset.encode_plain``, the one
    fast path of command sets) and sent in one PDU when it is the plain case (no Error
    Comment, no protocol trace listening, one PDU fits the peer's maximum), without
    building the message object; else as any DIMSE message."""
    if not getattr(status, "error_comment", None) and not trace.enabled():
        fields = _store_rsp_fields(msg.affected_sop_class_uid, msg.message_id, int(status),
                                   msg.affected_sop_instance_uid)
        command = (encode_plain(fields) or encode_fields(fields)) if fields is not None else None
        peer_max = asce.peer_max_pdu_length
        if command is not None and (not peer_max or len(command) + 6 <= peer_max):
            asce.dul.send_pdata([PDataTfPDU([PresentationDataValueItem(
                ctx.id, _LAST_COMMAND_FRAGMENT + command)])])
            return
    rsp = dimsemessages.CStoreRSPMessage()
    rsp.message_id_being_responded_to = msg.message_id
    rsp.affected_sop_class_uid = msg.affected_sop_class_uid
    rsp.affected_sop_instance_uid = msg.affected_sop_instance_uid
    rsp.status = int(status)
    comment = getattr(status, "error_comment", None)
    if comment:
        rsp.command_set.ErrorComment = str(comment)[:64]
    asce.send(rsp, ctx.id)


def _all_transfer_syntaxes() -> tuple[str, ...]:
    from .. import pydicom_tables

    data = pydicom_tables.tables()  # pydicom's list without importing pydicom, when current
    if data is not None:
        known: tuple[str, ...] = data.TRANSFER_SYNTAXES
    else:
        pydicom_tables.load_pydicom()  # an association's thread may be the first to need it
        from pydicom.uid import AllTransferSyntaxes

        known = tuple(map(str, AllTransferSyntaxes))
    return tuple(dict.fromkeys([*CONVERTIBLE_TRANSFER_SYNTAXES, *known]))


def __getattr__(name: str) -> Any:
    """``STORAGE_SCP_TRANSFER_SYNTAXES`` (tuple of str): what a storage SCP that keeps files as
    received can accept: every syntax pydicom knows (it stores the bytes, never decodes pixel
    data; PS3.4 B.4.1 leaves the choice to the SCP). Built on first access (PEP 562) from
    pydicom's transfer syntaxes (``pydicom_tables``), so a storage SCU that never asks does not load pydicom."""
    if name == "STORAGE_SCP_TRANSFER_SYNTAXES":
        value = globals()[name] = _all_transfer_syntaxes()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
