"""Modality Worklist Information Model - FIND (PS3.4 Annex K.6; C-FIND, PS3.7 9.1.2).

The worklist query is a C-FIND on its own SOP class (1.2.840.10008.5.1.4.31): the
identifier is matched against scheduled procedure steps instead of stored instances
(PS3.4 K.6.1.2). The DIMSE exchange is the Query/Retrieve one — pending responses with
an identifier each, then one final response (PS3.4 C.4.1.3) — so the SCU reuses the Q/R
C-FIND loop; the SCP is its own small loop because it also has to ignore a C-CANCEL-RQ that
arrives after the final response.

The AE has a single ``on_receive_find(context, ds)`` hook for every C-FIND; the SCP hands it
the presentation context so an AE tells a worklist query apart by
``context.sop_class == MODALITY_WORK_LIST_INFORMATION_FIND``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator

from .. import dimsemessages, statuses, uids
from ..dimsemessages import is_dataset
from ..exceptions import EventHandlingError
from .base import sop_classes
from .qr import qr_find_scu

if TYPE_CHECKING:  # pydicom loads on first use: a server answers C-ECHO without it
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)


@sop_classes([uids.MODALITY_WORK_LIST_INFORMATION_FIND])
def modality_work_list_scu(asce: Any, ctx: Any, ds: Dataset, msg_id: int, cancel: Any = None
                           ) -> Iterator[tuple[Any, statuses.Status]]:
    """Send a worklist C-FIND-RQ and yield ``(identifier, status)`` per response.

    Pending responses (FF00/FF01) carry one matching scheduled procedure step each; the last
    item yielded is the final response whose status ends the query (PS3.4 K.4.1.3.1).
    ``cancel`` (a ``threading.Event``, an extension of the reference) sends C-CANCEL-RQ once
    set; the generator then ends with the peer's final status (PS3.7 9.3.2.3). The exchange is
    the Q/R one, so the Q/R SCU loop does the work on this context's SOP class.
    """
    yield from qr_find_scu(asce, ctx, ds, msg_id, cancel)


def _send_find_rsp(asce: Any, ctx: Any, msg: Any, status: int, ds: Dataset | None = None,
                   error_comment: str | None = None) -> None:
    rsp = dimsemessages.CFindRSPMessage()
    rsp.message_id_being_responded_to = msg.message_id
    rsp.sop_class_uid = msg.sop_class_uid
    rsp.status = int(status)
    if error_comment:
        rsp.error_comment = str(error_comment)[:64]  # LO (PS3.7 C.4)
    rsp.data_set = ds
    asce.send(rsp, ctx.id)


@sop_classes([uids.MODALITY_WORK_LIST_INFORMATION_FIND])
def modality_work_list_scp(asce: Any, ctx: Any, msg: Any) -> None:
    """Answer a worklist C-FIND from ``asce.ae.on_receive_find(ctx, identifier)``.

    The hook returns an iterable of ``(data set, status)``; each pending item is sent as a
    pending response, then a final Success — or the first non-pending status the hook yields
    (a data set that comes with it is sent first as one more pending match, since a final
    response carries no identifier, PS3.4 K.4.1.1.4).
    A C-CANCEL-RQ for this query, checked between responses, ends it with Cancel (FE00,
    PS3.4 C.4.1.2.3 / K.4.1.2.3). An identifier we cannot decode is answered with C000 and a
    hook that refuses (EventHandlingError) or breaks with A700/C000 instead of an abort.
    """
    if getattr(msg, "command_field", None) == 0x0FFF:
        return  # a C-CANCEL after the final response has nothing left to cancel (PS3.7 9.3.2.3)
    if getattr(msg, "data_set_over_limit", False):  # PS3.4 K.4.1.1.4: A700 Out of Resources
        logger.warning("worklist identifier refused: %s", msg.data_set_error)
        _send_find_rsp(asce, ctx, msg, statuses.C_FIND_OUT_OF_RESOURCES,
                       error_comment=msg.data_set_error)
        return
    if not is_dataset(msg.data_set):
        logger.info("worklist C-FIND with an undecodable identifier: %s",
                    getattr(msg, "data_set_error", "no data set"))
        _send_find_rsp(asce, ctx, msg, statuses.C_FIND_UNABLE_TO_PROCESS)
        return
    try:
        results = iter(asce.ae.on_receive_find(ctx, msg.data_set))
        while True:
            if asce.cancel_requested(msg.message_id):
                _send_find_rsp(asce, ctx, msg, statuses.C_FIND_CANCEL)
                return
            try:
                ds, status = next(results)
            except StopIteration:
                break
            status = statuses.Status(int(status), "C-FIND")
            if not status.is_pending:
                if ds is not None:  # a final response carries no identifier: send it as a match
                    _send_find_rsp(asce, ctx, msg, statuses.C_FIND_PENDING, ds)
                _send_find_rsp(asce, ctx, msg, status)
                return
            _send_find_rsp(asce, ctx, msg, status, ds)
    except EventHandlingError as exc:
        logger.info("on_receive_find refused the worklist query: %s", exc)
        _send_find_rsp(asce, ctx, msg, statuses.C_FIND_UNABLE_TO_PROCESS)
        return
    except (MemoryError, OSError) as exc:
        logger.warning("worklist query failed: %s", exc)
        _send_find_rsp(asce, ctx, msg, statuses.C_FIND_OUT_OF_RESOURCES)
        return
    _send_find_rsp(asce, ctx, msg, statuses.SUCCESS)
