"""An established association as the seed's blocking API: send, receive, release, abort.

``Association`` (PS3.7 7, PS3.8 7.2-7.3) moves DIMSE messages over one connection through a
``dulprovider.DULServiceProvider`` in the calling thread: it encodes data sets in the
context's transfer syntax, batches and gathers the PDUs of outgoing messages, sets aside
messages that arrive while a response is awaited, answers requests performed out of line
within the negotiated asynchronous operations window (PS3.7 D.3.3.3), and ends the
association by release (with release collision, PS3.8 9.2.3) or abort. How an association
comes to be established is ``asceprovider``'s job (requestor and acceptor) and
``negotiation``'s (what is agreed).
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from typing import Any, Callable, Container, Mapping

from . import pdu, trace
from .dataset_encoding import encode_data_set, is_dataset
from .dulprovider import BATCH_BYTES, CancelRequested, ConnectionClosed, DULServiceProvider
from .exceptions import (
    AssociationAbortedError,
    AssociationReleasedError,
    ClassNotSupportedError,
    DCMTimeoutError,
    NetDICOMError,
    OperationCancelledError,
)
from .fsm import APAbortIndication, States
from .negotiation import AssociatedContext, PContextDef, PeerInfo, requestor_ops_window
from .wakeup import WakeableEvent

logger = logging.getLogger(__name__)

#: Most bytes of gathered messages (``Association.send(..., gather=True)``) an association
#: keeps back before writing them: memory per association stays bounded, and one write of
#: this size carries hundreds of C-FIND responses.
GATHER_MAX_BYTES = 64 * 1024

#: Most DIMSE messages set aside while waiting for a response or looking for a C-CANCEL,
#: beyond what the negotiated asynchronous operations windows allow (PS3.7 D.3.3.3; without
#: one, a single outstanding operation, so a peer needs nothing but a C-CANCEL). More is a
#: flood held in memory (each may carry a data set): the association is aborted instead.
MAX_HELD_MESSAGES = 16


def _is_cancel_for(msg: Any, message_id: int) -> bool:
    """True for a C-CANCEL-RQ (PS3.7 9.3.2.3) aimed at ``message_id``."""
    return (getattr(msg, "command_field", None) == 0x0FFF
            and getattr(msg, "message_id_being_responded_to", None) == message_id)


class Association:
    """One association's life: send/receive DIMSE messages, release, abort.

    Not for direct use: ``AssociationRequester`` and ``AssociationAcceptor`` subclass it.
    """

    def __init__(self, local_ae: Any, dul_socket: Any, max_pdu_length: int):
        self.ae = local_ae
        self.max_pdu_length = max_pdu_length
        self.dul = DULServiceProvider(
            getattr(local_ae, "store_in_file", ()), local_ae.get_file, dul_socket, max_pdu_length,
            artim_timeout=getattr(local_ae, "artim_timeout", 30.0),
            idle_timeout=getattr(local_ae, "network_timeout", None),
            message_file_cb=getattr(local_ae, "get_file_for_message", None))
        self.trace = trace.AssociationTrace(self.dul.peer_address)
        self.dul.trace = self.trace  # the DUL traces PDUs into the same association record
        self._accepted_contexts: dict[int, PContextDef] = {}
        self.peer = PeerInfo()
        self.association_established = False
        self.is_released = False
        self.is_aborted = False
        self.dimse_timeout: float | None = getattr(local_ae, "dimse_timeout", None)
        self.calling_ae_title = ""
        self.called_ae_title = ""
        self.started_at = time.monotonic()
        self._stash: collections.deque = collections.deque()
        self._message_ids = itertools.count(1)
        #: Requests performed out of line (``defer``): (future, respond), in arrival order.
        self._deferred: collections.deque = collections.deque()
        self._deferred_done = WakeableEvent()
        self._gathered: list = []  # P-DATA-TF PDUs of messages sent with gather=True
        self._gathered_bytes = 0

    # -- properties
    @property
    def accepted_contexts(self) -> dict[int, PContextDef]:
        """Accepted presentation contexts by ID; each one knows this association
        (``AssociatedContext``), so every hook given one can reach it."""
        return self._accepted_contexts

    @accepted_contexts.setter
    def accepted_contexts(self, contexts: Mapping[int, PContextDef]) -> None:
        self._accepted_contexts = {pc_id: AssociatedContext(ctx, self) for pc_id, ctx in contexts.items()}

    @property
    def peer_max_pdu_length(self) -> int:
        """The peer's Maximum Length Received (0: no limit). Every PDU we send honours it."""
        return self.peer.max_pdu_length or 0

    @property
    def remote_ae_title(self) -> str:
        return self.called_ae_title if self.dul.state_machine.is_requestor else self.calling_ae_title

    @property
    def ops_window(self) -> int:
        """How many of our requests may be outstanding at once on this association (>= 1).

        As requestor: what the acceptor answered to our window (``requestor_ops_window``),
        1 when we proposed none. As acceptor: 1 (we invoke synchronously).
        """
        if not self.dul.state_machine.is_requestor:
            return 1
        return requestor_ops_window(int(getattr(self.ae, "max_ops_invoked", 1) or 1),
                                    self.peer.async_window)

    @property
    def ops_performed(self) -> int:
        """How many of the peer's requests may be outstanding with us at once (>= 1): what we
        answered to its Asynchronous Operations Window as acceptor (``accept``), else 1."""
        return getattr(self, "_ops_performed", 1)

    def defer(self, future: Any, respond: Callable[[Any], None]) -> None:
        """Answer a request later: ``respond(future.result())`` runs on this association's
        thread once ``future`` is done (the dispatch loop wakes for it while it waits for the
        next request). Only within an asynchronous operations window that we accepted
        (``ops_performed`` > 1): a synchronous peer waits for each response anyway. Deferred
        requests are answered in the order they came; no new request is read while
        ``ops_performed`` of them wait, and all are answered before an A-RELEASE-RP. On an
        abort their futures are waited for, and nothing is answered.
        """
        future.add_done_callback(lambda _f: self._deferred_done.set())
        self._deferred.append((future, respond))

    def answer_deferred(self, block: bool = False) -> None:
        """Send the responses of deferred requests that are done (all of them if ``block``;
        also as many as needed to stay within ``ops_performed``), in their order."""
        deferred = self._deferred
        while deferred:
            future, respond = deferred[0]
            if not (block or future.done() or len(deferred) >= self.ops_performed):
                return
            deferred.popleft()
            respond(future.result())

    def _wait_deferred(self) -> None:
        """The association is ending without answers: let the deferred work finish (an
        object may still be stored; it is just not acknowledged)."""
        while self._deferred:
            future, _ = self._deferred.popleft()
            try:
                future.result()
            except Exception:  # already logged by whoever did the work
                pass

    def next_message_id(self) -> int:
        """A fresh Message ID (1..65535) for a request sent on this association."""
        return next(self._message_ids) % 65536 or next(self._message_ids)

    def context(self, pc_id: Any) -> PContextDef:
        ctx_id = pc_id.id if isinstance(pc_id, PContextDef) else int(pc_id)
        try:
            return self.accepted_contexts[ctx_id]
        except KeyError:
            raise ClassNotSupportedError(f"presentation context {ctx_id} is not accepted") from None

    # -- DIMSE
    def send(self, dimse_msg: Any, pc_id: Any, *, gather: bool = False) -> None:
        """Send a DIMSE message on a presentation context (an ID or a PContextDef).

        A pydicom data set is encoded in the context's transfer syntax here; bytes and file
        objects are sent as they are, file objects streamed in fragments.

        Extension: ``gather=True`` encodes the message now but may keep its PDUs back, to
        leave with the next message sent without ``gather`` (or ``flush``, or the next
        ``receive``/``release``) in the same gathered write: an SCP answering many small
        responses at once (C-FIND matches) pays one state-machine pass and one socket write
        per batch, not per response. At most ``GATHER_MAX_BYTES`` wait: more are written at
        once. The order of messages on the wire never changes.
        """
        ctx = self.context(pc_id)
        if trace.enabled():
            self.trace.dimse("sent", dimse_msg, ctx.id)
        if is_dataset(dimse_msg.data_set):
            dimse_msg.data_set = encode_data_set(dimse_msg.data_set, ctx.supported_ts)
        # The PDUs of one message go out in batches: one pass through the state machine and
        # one gathered write per batch (not one of each per PDU: at a peer's 16 KiB maximum
        # a 512 KiB object is 33 PDUs). A file's data set goes as runs of PDUs laid out at
        # once (``pdu.PDataFileRun``), unless a trace wants to see each PDU. Gathered messages
        # open the first batch.
        held, size = self._gathered, self._gathered_bytes
        self._gathered, self._gathered_bytes = [], 0
        for batch in dimse_msg.encode_batches(ctx.id, self.peer_max_pdu_length, BATCH_BYTES,
                                              runs=not (gather or trace.enabled())):
            if gather:
                size += sum(p.pdu_length + 6 for p in batch)
            if held:
                batch, held = held + batch, []
            if gather and size < GATHER_MAX_BYTES:
                held = batch
                continue
            self.dul.send_pdata(batch)
            size = 0
        self._gathered, self._gathered_bytes = held, size if held else 0

    def flush(self) -> None:
        """Write the messages ``send(..., gather=True)`` kept back, in one gathered write."""
        batch = self._gathered
        if batch:
            self._gathered, self._gathered_bytes = [], 0
            self.dul.send_pdata(batch)

    @property
    def gathered_bytes(self) -> int:
        """Bytes of PDUs ``send(..., gather=True)`` kept back (0: everything is written)."""
        return self._gathered_bytes

    def receive(self, timeout: float | None = None, cancel: Any = None) -> tuple[Any, int]:
        """Next DIMSE message as (message, pc_id).

        Raises AssociationReleasedError when the peer released (after answering it),
        AssociationAbortedError when it aborted or vanished, DCMTimeoutError on timeout.
        Extension: ``cancel`` (a ``threading.Event``) ends the wait as soon as it is set,
        with OperationCancelledError (the wait is one poll, woken by the event).
        """
        self.flush()  # the peer may be waiting for what was gathered
        while self._stash:
            item = self._stash.popleft()
            if isinstance(item, tuple):
                return item
            self._handle_indication(item)
        if timeout is None:
            timeout = self.dimse_timeout
        while True:
            item = self.dul.receive(timeout, cancel)
            if isinstance(item, tuple):
                if trace.enabled():
                    self.trace.dimse("received", item[0], item[1])
                return item
            if isinstance(item, CancelRequested):
                if cancel is not None:
                    raise OperationCancelledError("cancelled by the local user")
                continue  # left over from an earlier wait that was cancelled
            self._handle_indication(item)

    def receive_response(self, message_id: int, timeout: float | None = None) -> tuple[Any, int]:
        """The next response to ``message_id``; other messages are kept for ``receive``."""
        return self.receive_response_to((message_id,), timeout)

    def receive_response_to(self, message_ids: Container[int],
                            timeout: float | None = None) -> tuple[Any, int]:
        """The next response to any of ``message_ids`` (the requests outstanding in an
        asynchronous window, matched by Message ID Being Responded To, PS3.7 9.3.1.2);
        other messages are kept for ``receive``."""
        held = []
        try:
            while True:
                msg, pc_id = self.receive(timeout)
                if getattr(msg, "message_id_being_responded_to", None) in message_ids:
                    return msg, pc_id
                held.append((msg, pc_id))
                self._check_held(len(held) + len(self._stash), held)
        finally:
            self._stash.extendleft(reversed(held))

    def cancel_requested(self, message_id: int) -> bool:
        """True when a C-CANCEL-RQ for ``message_id`` has arrived (never blocks).

        SCPs call this between pending responses; other messages that arrived meanwhile
        are kept in order for ``receive``.
        """
        found = False
        # A C-CANCEL may already have been set aside by receive_response (e.g. while a
        # C-STORE sub-operation waited for its response): look there first.
        for item in list(self._stash):
            if isinstance(item, tuple) and _is_cancel_for(item[0], message_id):
                self._stash.remove(item)
                found = True
        while True:
            item = self.dul.receive_nowait()
            if item is None:
                break
            if not isinstance(item, tuple):
                if not isinstance(item, CancelRequested):
                    self._stash.append(item)  # release/abort: handled by the next receive()
                break
            if trace.enabled():
                self.trace.dimse("received", item[0], item[1])
            if _is_cancel_for(item[0], message_id):
                found = True
            else:
                self._stash.append(item)
                self._check_held(len(self._stash))
        return found

    def _check_held(self, count: int, held: list | None = None) -> None:
        """Abort when more messages wait to be handled than the negotiated asynchronous
        operations windows (ours and the peer's) can explain, plus MAX_HELD_MESSAGES: a flood."""
        if count <= MAX_HELD_MESSAGES + self.ops_window + self.ops_performed:
            return
        self._stash.clear()
        if held is not None:
            held.clear()
        logger.warning("%d DIMSE messages arrived out of turn: aborting", count)
        self.abort(0)
        raise AssociationAbortedError(0, 0, f"the peer sent {count} DIMSE messages out of turn "
                                            "(beyond the operations window): association aborted")

    def _handle_indication(self, item: Any) -> None:
        pdu_type = getattr(item, "pdu_type", None)
        if pdu_type == 5:  # A-RELEASE-RQ from the peer: answer and end.
            logger.debug("peer requested release")
            try:
                self.answer_deferred(block=True)  # every request is answered before the RP
                self.dul.send(pdu.AReleaseRpPDU())
            except NetDICOMError:
                pass
            self.is_released = True
            self.association_established = False
            self.dul.wait_closed(5)
            self.dul.kill()
            raise AssociationReleasedError("the peer released the association")
        if pdu_type == 7:
            self._mark_aborted()
            raise AssociationAbortedError(item.source, item.reason_diag)
        if isinstance(item, APAbortIndication):
            self._mark_aborted()
            raise AssociationAbortedError(item.source, item.reason)
        if isinstance(item, ConnectionClosed):
            self._mark_aborted()
            raise AssociationAbortedError(2, 0, "the connection was closed by the peer")
        logger.debug("ignoring unexpected indication %r", item)

    def _mark_aborted(self) -> None:
        self.is_aborted = True
        self.association_established = False
        self._drop_gathered()
        self.dul.kill()

    def _drop_gathered(self) -> None:
        self._gathered, self._gathered_bytes = [], 0

    # -- ending
    def kill(self) -> None:
        """Stop the DUL service provider (use release or abort instead)."""
        self.association_established = False
        self._drop_gathered()
        self.dul.kill()

    def release(self) -> None:
        """Request the release and wait for its confirmation (handles release collision)."""
        if not self.association_established:
            self._drop_gathered()
            self.dul.kill()
            return
        self.association_established = False
        try:
            self.flush()
            self.dul.send(pdu.AReleaseRqPDU())
        except NetDICOMError:
            self.dul.kill()
            return
        deadline = time.monotonic() + (getattr(self.ae, "timeout", 15) or 15)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DCMTimeoutError("no A-RELEASE-RP")
                item = self.dul.receive(remaining)
                pdu_type = getattr(item, "pdu_type", None)
                if pdu_type == 5:
                    # Release collision (PS3.8 9.2.3): the requestor answers at once (Sta9,
                    # AR-9); the acceptor waits for the requestor's RP first (Sta10) and
                    # answers it in Sta12 (AR-4) below.
                    if self.dul.state == States.STA_9:
                        self.dul.send(pdu.AReleaseRpPDU())
                elif pdu_type == 6:
                    if self.dul.state == States.STA_12:
                        self.dul.send(pdu.AReleaseRpPDU())
                        self.dul.wait_closed(min(remaining, 5))  # Sta13: the requestor closes
                    self.is_released = True
                    break
                elif pdu_type == 7 or isinstance(item, (APAbortIndication, ConnectionClosed)):
                    self.is_aborted = True
                    break
                # P-DATA still arriving in Sta7 is discarded: we are ending.
        except DCMTimeoutError:
            logger.warning("peer did not confirm the release; aborting")
            self.abort()
            return
        finally:
            self.dul.wait_closed(2)
            self.dul.kill()

    def abort(self, reason: int = 0) -> None:
        """Send A-ABORT (service-user source) and close the connection."""
        self.association_established = False
        self.is_aborted = True
        self._drop_gathered()  # an abort discards what was not sent (PS3.8 7.3.1)
        try:
            if self.dul.state not in (States.STA_1, States.STA_13):
                self.dul.send(pdu.AAbortPDU(0, reason))
        except NetDICOMError:
            pass
        self.dul.kill()

    def __enter__(self) -> "Association":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.association_established:
            if exc_type is None:
                self.release()
            else:
                self.abort()
        else:
            self.dul.kill()
