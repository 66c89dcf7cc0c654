"""Verification service class (PS3.4 Annex A; C-ECHO, PS3.7 9.1.5)."""

from __future__ import annotations

import logging
from typing import Any

from .. import dimsemessages, statuses, uids
from ..exceptions import EventHandlingError
from .base import sop_classes

logger = logging.getLogger(__name__)


@sop_classes([uids.VERIFICATION_SOP_CLASS])
def verification_scu(asce: Any, ctx: Any, msg_id: int) -> statuses.Status:
    """Send C-ECHO-RQ and return the response's status (SUCCESS when the peer is alive)."""
    rq = dimsemessages.CEchoRQMessage()
    rq.message_id = msg_id
    rq.sop_class_uid = ctx.sop_class
    asce.send(rq, ctx.id)
    rsp, _ = asce.receive_response(msg_id)
    return statuses.Status(rsp.status)


@sop_classes([uids.VERIFICATION_SOP_CLASS])
def verification_scp(asce: Any, ctx: Any, msg: Any) -> None:
    """Answer C-ECHO with the status the AE's ``on_receive_echo`` returns."""
    try:
        status = asce.ae.on_receive_echo(ctx)
    except EventHandlingError as exc:
        logger.info("on_receive_echo refused: %s", exc)
        status = statuses.PROCESSING_FAILURE
    rsp = dimsemessages.CEchoRSPMessage()
    rsp.message_id_being_responded_to = msg.message_id
    rsp.sop_class_uid = msg.sop_class_uid
    rsp.status = int(status)
    asce.send(rsp, ctx.id)
