"""Setting up an association (PS3.8 7.1): the seed's requestor and acceptor.

* ``AssociationRequester`` ("client side"): proposes contexts, roles, user identity; after
  acceptance ``get_scu(sop_class)`` hands out the SCU callables bound to this association.
* ``AssociationAcceptor`` ("server side"): answers an A-ASSOCIATE-RQ with AC or RJ, then
  dispatches each received request to the SCP registered for its context's SOP class.

What is proposed, checked and agreed is decided by the pure functions of ``negotiation``;
both classes are ``association.Association`` once established (send, receive, release,
abort), and every association is a context manager: leaving the block releases it (or
aborts it when the block raised).

The reference's names of this module stay importable from it: ``PContextDef``,
``build_pres_context_def_list`` (``negotiation``) and ``Association`` (``association``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Mapping

from . import pdu
from .association import Association
from .dataset_encoding import encode_data_set  # noqa: F401 - sopclass.storage imports it from here
from .exceptions import (
    AssociationAbortedError,
    AssociationRejectedError,
    AssociationReleasedError,
    ClassNotSupportedError,
    DCMTimeoutError,
    NetDICOMError,
    OperationCancelledError,
)
from .fsm import APAbortIndication
from .negotiation import (  # noqa: F401 - PContextDef, build_pres_context_def_list: the reference's names
    PC_RESULT_TEXT,  # operations.sending imports it from here
    PContextDef,
    accepted_async_window,
    accepted_from_ac,
    association_accept,
    association_request,
    build_pres_context_def_list,
    check_association_request,
    items_of_type,
    negotiate_contexts,
    read_user_information,
    user_identity_item,
)
from .printable import printable

__all__ = ["Association", "AssociationAcceptor", "AssociationRequester", "PContextDef",
           "build_pres_context_def_list"]

logger = logging.getLogger(__name__)

#: Longest wait for a rejected requestor to close its connection (see AssociationAcceptor.reject).
REJECT_CLOSE_WAIT_S = 10.0


class AssociationRequester(Association):
    """Requests an association with ``remote_ae`` and serves as its SCU.

    ``remote_ae`` keys: ``aet``, ``address``, ``port``; optional ``username``, ``password``
    (user identity, PS3.7 D.3.3.7), ``timeout`` (connection and ACSE), ``dimse_timeout``.
    """

    def __init__(self, local_ae: Any, max_pdu_length: int, remote_ae: Mapping[str, Any]):
        super().__init__(local_ae, None, max_pdu_length)
        self.remote_ae = dict(remote_ae)
        self.context_def_list: dict[int, PContextDef] = dict(local_ae.copy_context_def_list())
        self.sop_classes_as_scu: dict[str, PContextDef] = {}
        self.calling_ae_title = local_ae.ae_title
        self.called_ae_title = str(self.remote_ae.get("aet", "ANY-SCP"))
        if "dimse_timeout" in self.remote_ae:
            self.dimse_timeout = self.remote_ae["dimse_timeout"]
        self.ac_pdu: Any = None

    def build_request(self) -> pdu.AAssociateRqPDU:
        """The A-ASSOCIATE-RQ this requester sends (pure: no I/O)."""
        remote = self.remote_ae
        return association_request(
            self.called_ae_title, self.calling_ae_title, self.context_def_list, self.max_pdu_length,
            scp_role_classes=getattr(self.ae, "scp_role_classes", ()),
            user_identity=user_identity_item(remote.get("username"), remote.get("password"),
                                             bool(remote.get("positive_response"))),
            max_ops_invoked=int(getattr(self.ae, "max_ops_invoked", 1) or 1))

    def request(self) -> None:
        """Open the connection, send the A-ASSOCIATE-RQ and wait for the answer.

        Raises AssociationRejectedError (with result/source/diagnostic), AssociationAbortedError,
        DCMTimeoutError, or OSError when the peer cannot be reached.
        """
        timeout = self.remote_ae.get("timeout", getattr(self.ae, "timeout", 15))
        rq = self.build_request()
        address = (self.remote_ae.get("address", "127.0.0.1"), int(self.remote_ae.get("port", 104)))
        self.trace.peer = f"{address[0]}:{address[1]}"
        self.trace.name(self.calling_ae_title, self.called_ae_title)
        self.dul.connect(address, rq, timeout, self.remote_ae.get("ssl_context"))
        try:
            item = self.dul.receive(timeout)
        except DCMTimeoutError:
            self.abort()
            raise DCMTimeoutError(f"no answer to the association request within {timeout} s") from None
        pdu_type = getattr(item, "pdu_type", None)
        if pdu_type == 2:
            self._on_accept(item)
            return
        self.dul.kill()
        tls_hint = "" if self.remote_ae.get("ssl_context") else " (does the peer expect TLS?)"
        if pdu_type == 3:
            raise AssociationRejectedError(item.result, item.source, item.reason_diag)
        if pdu_type == 7:
            raise AssociationAbortedError(item.source, item.reason_diag)
        if isinstance(item, APAbortIndication) and item.reason != 0:
            raise AssociationAbortedError(item.source, item.reason)
        raise AssociationAbortedError(
            2, 0, f"the peer closed the connection during association set-up{tls_hint}")

    def _on_accept(self, ac: Any) -> None:
        self.ac_pdu = ac
        info = items_of_type(ac, 0x50)
        self.peer = read_user_information(info[0] if info else None)
        ac_items = items_of_type(ac, 0x21)
        self.accepted_contexts = accepted_from_ac(self.context_def_list, ac_items)
        self.dul.accepted_contexts = self.accepted_contexts
        self.refused_contexts = {i.context_id: i.result_reason for i in ac_items
                                 if i.context_id not in self.accepted_contexts}
        self.sop_classes_as_scu = {}
        for ctx in self.accepted_contexts.values():
            self.sop_classes_as_scu.setdefault(ctx.sop_class, ctx)
        self.association_established = True
        self.ae.on_association_response(ac)

    def contexts_for(self, sop_class: str) -> list[PContextDef]:
        """Every accepted context for a SOP class (one per transfer syntax the peer took)."""
        return [c for c in self.accepted_contexts.values() if c.sop_class == sop_class]

    def get_scu(self, sop_class: str) -> Callable:
        """The SCU callable for ``sop_class`` with this association and its context bound."""
        ctx = self.sop_classes_as_scu.get(sop_class)
        service = self.ae.supported_scu.get(sop_class)
        if ctx is None or service is None:
            raise ClassNotSupportedError(f"SOP class {sop_class} is not supported on this association")
        return functools.partial(service, self, ctx)


class AssociationAcceptor(Association):
    """Serves one incoming connection: negotiate, then dispatch requests to SCPs.

    ``request`` is the accepted socket. ``serve()`` runs the whole life cycle in the
    calling thread (the AE's association thread).
    """

    def __init__(self, request: Any, client_address: Any, local_ae: Any, max_pdu_length: int,
                 *, refuse_reason: tuple[int, int, int] | Callable[[], Any] | None = None):
        super().__init__(local_ae, request, max_pdu_length)
        self.client_address = client_address
        self.refuse_reason = refuse_reason
        self.rq_pdu: Any = None
        self.roles: dict = {}
        self.end_reason = ""

    def reject(self, result: int, source: int, diag: int) -> None:
        """Send A-ASSOCIATE-RJ with these fields (PS3.8 9.3.4) and close.

        After the RJ the requestor closes the connection (Sta13, PS3.8 9.2.3); we wait for that
        up to the ARTIM timeout (at most REJECT_CLOSE_WAIT_S), so a slow peer reads its RJ before
        our side closes, and a peer that never closes costs one bounded wait.
        """
        try:
            self.dul.send(pdu.AAssociateRjPDU(result, source, diag))
        finally:
            artim = getattr(self.ae, "artim_timeout", None) or REJECT_CLOSE_WAIT_S
            self.dul.wait_closed(min(artim, REJECT_CLOSE_WAIT_S))
            self.dul.kill()

    def accept(self, assoc_req: Any) -> bool:
        """Answer ``assoc_req`` with AC or RJ; True when the association is established."""
        self.rq_pdu = assoc_req
        self.calling_ae_title = assoc_req.calling_ae_title.strip()
        self.called_ae_title = assoc_req.called_ae_title.strip()
        self.trace.name(self.calling_ae_title, self.called_ae_title)
        info_items = items_of_type(assoc_req, 0x50)
        self.peer = read_user_information(info_items[0] if info_items else None)
        try:
            self._check_request(assoc_req)
            self.ae.on_association_request(self, assoc_req)
        except AssociationRejectedError as exc:
            logger.info("rejecting association from %s (%s -> %s): %s", self.client_address,
                        printable(self.calling_ae_title), printable(self.called_ae_title), exc.describe())
            self.end_reason = exc.describe()
            self.ae.on_association_rejected(self, exc)
            self.reject(exc.result, exc.source, exc.diagnostic)
            return False
        negotiated = negotiate_contexts(items_of_type(assoc_req, 0x20), self.ae.scp_transfer_syntaxes(),
                                        self.ae.scu_transfer_syntaxes(), self.peer.role_selection)
        async_window = accepted_async_window(self.peer.async_window,
                                             getattr(self.ae, "max_ops_performed", 1))
        self._ops_performed = async_window[1] if async_window is not None else 1
        ac = association_accept(assoc_req, negotiated, self.peer, self.max_pdu_length, async_window)
        self.accepted_contexts = negotiated.accepted
        self.roles = negotiated.roles
        self.dul.accepted_contexts = self.accepted_contexts
        self.dul.send(ac)
        self.association_established = True
        self.ae.on_association_accepted(self)
        return True

    def _check_request(self, rq: Any) -> None:
        """Checks that need no hook: limits, protocol version, application context, called AE."""
        # A callable is asked when the request arrives (the AE's association slot is taken then).
        refuse = self.refuse_reason() if callable(self.refuse_reason) else self.refuse_reason
        if refuse is not None:
            raise AssociationRejectedError(*refuse)
        check_association_request(rq, getattr(self.ae, "ae_title", ""),
                                  getattr(self.ae, "require_called_aet", False))

    def serve(self) -> None:
        """The association's whole life: wait for the RQ (ARTIM), negotiate, dispatch, end.

        The DUL service runs in this (the association's) thread: each ``receive`` reads the
        socket directly, so a request reaches its SCP without any thread hand-off.
        """
        try:
            item = self.dul.receive(None)
        except DCMTimeoutError:  # pragma: no cover - receive(None) blocks until an item
            return
        if getattr(item, "pdu_type", None) != 1:
            self.end_reason = "no association request (timeout or invalid PDU)"
            logger.info("connection from %s ended before an association: %r", self.client_address, item)
            self.dul.kill()
            return
        if not self.accept(item):
            return
        try:
            self._dispatch_loop()
        finally:
            self.dul.kill()

    def _dispatch_loop(self) -> None:
        try:
            self._dispatch()
        finally:
            self._wait_deferred()

    def _receive_or_answer(self) -> tuple[Any, int] | None:
        """The next request, or None when a deferred request finished first (it is answered
        then). With nothing deferred, a plain ``receive``."""
        if not self._deferred:
            return self.receive(None)
        self._deferred_done.clear()
        self.answer_deferred()
        if not self._deferred:
            return self.receive(None)
        try:  # woken by the socket or by deferred work finishing, whichever comes first
            return self.receive(None, cancel=self._deferred_done)
        except OperationCancelledError:
            return None

    def _dispatch(self) -> None:
        while True:
            try:
                received = self._receive_or_answer()
                if received is None:
                    continue
                msg, pc_id = received
            except AssociationReleasedError:
                self.end_reason = "released"
                self.ae.on_association_released(self)
                return
            except AssociationAbortedError as exc:
                self.end_reason = str(exc)
                self.ae.on_association_aborted(self, exc)
                return
            except DCMTimeoutError:  # pragma: no cover
                continue
            except NetDICOMError as exc:  # answering a deferred request: the connection went
                self.end_reason = str(exc)
                self.abort(0)
                self.ae.on_association_aborted(self, exc)
                return
            except Exception as exc:  # a deferred request's answer failed: as a broken service
                logger.exception("answering a deferred request failed")
                self.end_reason = f"service error: {exc}"
                self.abort(0)
                self.ae.on_association_aborted(self, exc)
                return
            ctx = self.accepted_contexts.get(pc_id)
            service = self.ae.supported_scp.get(ctx.sop_class) if ctx else None
            if service is None:
                logger.warning("no SCP for %s on context %s; ignoring %s",
                               ctx.sop_class if ctx else "?", pc_id, type(msg).__name__)
                continue
            try:
                service(self, ctx, msg)
            except (AssociationReleasedError, AssociationAbortedError) as exc:
                self.end_reason = str(exc)
                self.ae.on_association_aborted(self, exc)
                return
            except Exception as exc:  # a broken service must not take the server down
                logger.exception("SCP %s failed on %s", getattr(service, "__name__", service),
                                 type(msg).__name__)
                self.end_reason = f"service error: {exc}"
                self.abort(0)
                self.ae.on_association_aborted(self, exc)
                return
