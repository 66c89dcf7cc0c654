"""Verification: is a node there and does it speak DICOM? (PS3.4 Annex A)."""

from __future__ import annotations

import threading
import time

from ..net import uids
from ..net.applicationentity import ClientAE
from ..net.records import FrozenRecord
from ..net.sopclass import verification_scu
from ..net.statuses import Status
from .common import Peer, describe_error


class EchoResult(FrozenRecord):
    """The outcome of one C-ECHO, with what the peer negotiated."""

    _fields = ("ok", "status", "rtt_ms", "error", "peer_implementation_uid",
               "peer_implementation_version", "peer_max_pdu", "association_ms")

    def __init__(self, ok: bool, status: Status | None, rtt_ms: float, error: str | None = None,
                 peer_implementation_uid: str | None = None,
                 peer_implementation_version: str | None = None, peer_max_pdu: int | None = None,
                 association_ms: float | None = None) -> None:
        self._assign(ok, status, rtt_ms, error, peer_implementation_uid, peer_implementation_version,
                     peer_max_pdu, association_ms)


def echo(peer: Peer, cancel: threading.Event | None = None) -> EchoResult:
    """One association, one C-ECHO, release. ``rtt_ms`` is the C-ECHO round trip alone."""
    ae = ClientAE(peer.calling_aet).add_scu(verification_scu)
    ae.timeout = peer.timeout
    ae.dimse_timeout = peer.timeout
    started = time.perf_counter()
    if cancel is not None and cancel.is_set():
        return EchoResult(False, None, 0.0, "cancelled")
    try:
        with ae.request_association(peer.remote_ae()) as assoc:
            associated = time.perf_counter()
            info = assoc.peer
            scu = assoc.get_scu(uids.VERIFICATION_SOP_CLASS)
            t0 = time.perf_counter()
            status = scu(assoc.next_message_id())
            rtt = (time.perf_counter() - t0) * 1000
        return EchoResult(status.is_success, status, rtt,
                          None if status.is_success else f"peer answered {status}",
                          info.implementation_class_uid, info.implementation_version_name,
                          info.max_pdu_length, (associated - started) * 1000)
    except Exception as exc:  # every failure becomes a sentence, never a traceback
        return EchoResult(False, None, (time.perf_counter() - started) * 1000,
                          describe_error(exc, peer))
