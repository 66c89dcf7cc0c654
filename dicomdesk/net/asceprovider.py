"""Associations: negotiation (PS3.8 7.1, PS3.7 Annex D) and the blocking association API.

Negotiation decisions are pure functions (``negotiate_contexts``, ``accepted_from_ac``,
``build_user_information``…) so they are testable without sockets; the ``Association``
classes only move primitives through a ``DULServiceProvider``.

* ``AssociationRequester`` ("client side"): proposes contexts, roles, user identity; after
  acceptance ``get_scu(sop_class)`` hands out the SCU callables bound to this association.
* ``AssociationAcceptor`` ("server side"): answers an A-ASSOCIATE-RQ with AC or RJ, then
  dispatches each received request to the SCP registered for its context's SOP class.

Every association is a context manager: leaving the block releases it (or aborts it when
the block raised).
"""

from __future__ import annotations

import collections
import functools
import io
import itertools
import logging
import time
import weakref
import zlib
from typing import TYPE_CHECKING, Any, Callable, Container, Iterable, Iterator, Mapping, NamedTuple, Sequence

from . import pdu, trace, userdataitems, uids
from .dimsemessages import is_dataset
from .dulprovider import BATCH_BYTES, CancelRequested, ConnectionClosed, DULServiceProvider
from .exceptions import (
    AssociationAbortedError,
    AssociationError,
    AssociationRejectedError,
    AssociationReleasedError,
    ClassNotSupportedError,
    DCMTimeoutError,
    NetDICOMError,
    OperationCancelledError,
)
from .fsm import APAbortIndication, States
from .printable import printable
from .records import Record
from .wakeup import WakeableEvent

if TYPE_CHECKING:  # pydicom is imported only where a data set is encoded (not for C-ECHO)
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

#: DICOM Application Context Name (PS3.7 A.2.1).
APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"

# Presentation context results (PS3.8 Table 9-18).
PC_ACCEPTANCE = 0
PC_USER_REJECTION = 1
PC_NO_REASON = 2
PC_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
PC_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

#: Most bytes of gathered messages (``Association.send(..., gather=True)``) an association
#: keeps back before writing them: memory per association stays bounded, and one write of
#: this size carries hundreds of C-FIND responses.
GATHER_MAX_BYTES = 64 * 1024

#: Longest wait for a rejected requestor to close its connection (see AssociationAcceptor.reject).
REJECT_CLOSE_WAIT_S = 10.0

#: Most DIMSE messages set aside while waiting for a response or looking for a C-CANCEL,
#: beyond what the negotiated asynchronous operations windows allow (PS3.7 D.3.3.3; without
#: one, a single outstanding operation, so a peer needs nothing but a C-CANCEL). More is a
#: flood held in memory (each may carry a data set): the association is aborted instead.
MAX_HELD_MESSAGES = 16

PC_RESULT_TEXT = {
    PC_ACCEPTANCE: "accepted",
    PC_USER_REJECTION: "user rejection",
    PC_NO_REASON: "no reason (provider rejection)",
    PC_ABSTRACT_SYNTAX_NOT_SUPPORTED: "abstract syntax not supported",
    PC_TRANSFER_SYNTAXES_NOT_SUPPORTED: "transfer syntaxes not supported",
}


class PContextDef(NamedTuple):
    """A presentation context: its ID, SOP class and transfer syntax(es).

    Proposed: ``supported_ts`` is the list offered; accepted: the single UID agreed.
    """

    id: int
    sop_class: str
    supported_ts: Any


class AssociatedContext(PContextDef):
    """An accepted presentation context that knows its association (``context.association``).

    Every service hook gets the context of its message (``on_receive_store(context, ds)``
    …, the reference's signatures), so a hook reaches its association through it — never
    by thread identity. The reference is weak: a context kept by a hook never keeps an
    ended association (and its buffers) alive. Equal to the plain ``PContextDef``.
    """

    def __new__(cls, context: PContextDef, association: Any) -> "AssociatedContext":
        self = super().__new__(cls, *context)
        self._association = weakref.ref(association)
        return self

    @property
    def association(self) -> Any:
        """The association this context belongs to (None once it is gone)."""
        return self._association()


def build_pres_context_def_list(context_def_list: Iterable) -> Iterator[pdu.PresentationContextItemRQ]:
    """A-ASSOCIATE-RQ presentation context items from (pc_id, PContextDef) pairs or a dict."""
    items = context_def_list.items() if isinstance(context_def_list, Mapping) else context_def_list
    for pc_id, ctx in items:
        ts_list = [ctx.supported_ts] if isinstance(ctx.supported_ts, str) else list(ctx.supported_ts)
        yield pdu.PresentationContextItemRQ(
            pc_id, pdu.AbstractSyntaxSubItem(ctx.sop_class),
            [pdu.TransferSyntaxSubItem(ts) for ts in ts_list])


# ---------------------------------------------------------------------------- pure negotiation
class Negotiated(Record):
    """What the acceptor agreed to: the AC items, the accepted contexts and role replies."""

    _fields = ("ac_items", "accepted", "role_replies", "roles")

    def __init__(self, ac_items: list | None = None, accepted: dict | None = None,
                 role_replies: list | None = None, roles: dict | None = None) -> None:
        self.ac_items = [] if ac_items is None else ac_items
        self.accepted = {} if accepted is None else accepted
        self.role_replies = [] if role_replies is None else role_replies
        # pc_id -> (we act as SCU, we act as SCP) from the acceptor's point of view
        self.roles = {} if roles is None else roles


def negotiate_contexts(requested: Sequence[pdu.PresentationContextItemRQ],
                       scp_ts: Mapping[str, Iterable[str]],
                       scu_ts: Mapping[str, Iterable[str]] | None = None,
                       role_requests: Mapping[str, tuple[int, int]] | None = None) -> Negotiated:
    """Acceptor side of PS3.8 7.1.1.13: decide every proposed context.

    ``scp_ts``: abstract syntaxes we provide as SCP → transfer syntaxes we accept for them.
    ``scu_ts``: abstract syntaxes we can use as SCU when the requestor asks to be the SCP
    (SCP/SCU role selection, PS3.7 D.3.3.4 — C-GET's storage sub-operations).
    The first transfer syntax in the *requestor's* order that we support wins.
    """
    scu_ts = scu_ts or {}
    role_requests = role_requests or {}
    result = Negotiated()
    replied_roles: set[str] = set()
    for item in requested:
        pc_id = item.context_id
        abstract = item.abs_sub_item.name if item.abs_sub_item is not None else ""
        proposed = [ts.name for ts in item.ts_sub_items]
        role = role_requests.get(abstract)
        as_scp = abstract in scp_ts
        as_scu = False
        if role is not None:
            req_scu, req_scp = role
            as_scp = as_scp and bool(req_scu)
            as_scu = abstract in scu_ts and bool(req_scp)
        candidates: set[str] = set()
        if as_scp:
            candidates.update(scp_ts[abstract])
        if as_scu:
            candidates.update(scu_ts[abstract])
        if pc_id % 2 == 0:
            reason, chosen = PC_NO_REASON, None  # context IDs are odd (PS3.8 9.3.2.2)
        elif not (as_scp or as_scu):
            reason, chosen = PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, None
        else:
            chosen = next((ts for ts in proposed if ts in candidates), None)
            reason = PC_ACCEPTANCE if chosen else PC_TRANSFER_SYNTAXES_NOT_SUPPORTED
        # The AC always carries one transfer syntax sub-item; its value is not significant
        # when the context is refused (PS3.8 9.3.3.2), so echo the first proposed one.
        ts_reply = chosen or (proposed[0] if proposed else uids.IMPLICIT_VR_LITTLE_ENDIAN)
        result.ac_items.append(pdu.PresentationContextItemAC(
            pc_id, reason, pdu.TransferSyntaxSubItem(ts_reply)))
        if reason == PC_ACCEPTANCE:
            result.accepted[pc_id] = PContextDef(pc_id, abstract, chosen)
            result.roles[pc_id] = (as_scu, as_scp)
            if role is not None and abstract not in replied_roles:
                replied_roles.add(abstract)
                result.role_replies.append(userdataitems.ScpScuRoleSelectionSubItem(
                    abstract, int(as_scp), int(as_scu)))
    return result


def accepted_from_ac(proposed: Mapping[int, PContextDef],
                     ac_items: Iterable[pdu.PresentationContextItemAC]) -> dict[int, PContextDef]:
    """Requestor side: the contexts the acceptor accepted, with the transfer syntax it chose.

    A context the acceptor "accepted" with a transfer syntax we never proposed, or with an ID
    we never proposed, is treated as refused (and logged): using it would break the peer.
    """
    accepted: dict[int, PContextDef] = {}
    for item in ac_items:
        ctx = proposed.get(item.context_id)
        if ctx is None or item.result_reason != PC_ACCEPTANCE:
            continue
        ts = item.ts_sub_item.name if item.ts_sub_item is not None else None
        offered = [ctx.supported_ts] if isinstance(ctx.supported_ts, str) else list(ctx.supported_ts)
        if ts not in offered:
            logger.warning("peer accepted context %d with transfer syntax %s that was not proposed",
                           item.context_id, ts)
            continue
        accepted[item.context_id] = PContextDef(item.context_id, ctx.sop_class, ts)
    return accepted


def build_user_information(max_pdu_length: int, *, role_selection: Iterable = (),
                           user_identity: Any = None, ext_negotiation: Iterable = (),
                           async_window: tuple[int, int] | None = None,
                           extra: Iterable = ()) -> pdu.UserInformationItem:
    """User Information item with sub-items in item-type order (PS3.7 D.3.3)."""
    items: list = [
        userdataitems.MaximumLengthSubItem(max_pdu_length),
        userdataitems.ImplementationClassUIDSubItem(uids.IMPLEMENTATION_CLASS_UID),
    ]
    if async_window is not None:
        items.append(userdataitems.AsynchronousOperationsWindowSubItem(*async_window))
    items.extend(role_selection)
    items.append(userdataitems.ImplementationVersionNameSubItem(uids.IMPLEMENTATION_VERSION_NAME))
    items.extend(ext_negotiation)
    if user_identity is not None:
        items.append(user_identity)
    items.extend(extra)
    return pdu.UserInformationItem(items)


def accepted_async_window(proposed: tuple[int, int] | None, max_performed: int) -> tuple[int, int] | None:
    """The acceptor's answer to a requestor's Asynchronous Operations Window (PS3.7 D.3.3.3.1).

    None (no item) when none was proposed. We invoke nothing asynchronously (1) and perform
    up to ``max_performed`` of the requestor's outstanding operations, never more than it
    proposed to invoke (its 0, unlimited, takes our limit).
    """
    if proposed is None:
        return None
    invoked = proposed[0]
    limit = max(1, int(max_performed or 1))
    return (1, limit if invoked == 0 else max(1, min(invoked, limit)))


class PeerInfo(Record):
    """What a peer told us in its user information (for logs and ``dicomdesk echo``)."""

    _fields = ("max_pdu_length", "implementation_class_uid", "implementation_version_name",
               "role_selection", "async_window", "user_identity", "ext_negotiation")

    def __init__(self, max_pdu_length: int | None = None, implementation_class_uid: str | None = None,
                 implementation_version_name: str | None = None, role_selection: dict | None = None,
                 async_window: tuple[int, int] | None = None, user_identity: Any = None,
                 ext_negotiation: dict | None = None) -> None:
        self.max_pdu_length = max_pdu_length
        self.implementation_class_uid = implementation_class_uid
        self.implementation_version_name = implementation_version_name
        self.role_selection = {} if role_selection is None else role_selection  # sop class -> (scu, scp)
        self.async_window = async_window
        self.user_identity = user_identity
        self.ext_negotiation = {} if ext_negotiation is None else ext_negotiation  # sop class -> app_info


def read_user_information(item: pdu.UserInformationItem | None) -> PeerInfo:
    """Collect the sub-items we understand; unknown ones are kept by the PDU layer only."""
    info = PeerInfo()
    if item is None:
        return info
    for sub in item.user_data:
        if isinstance(sub, userdataitems.MaximumLengthSubItem):
            info.max_pdu_length = sub.maximum_length_received
        elif isinstance(sub, userdataitems.ImplementationClassUIDSubItem):
            info.implementation_class_uid = sub.implementation_class_uid
        elif isinstance(sub, userdataitems.ImplementationVersionNameSubItem):
            info.implementation_version_name = sub.implementation_version_name
        elif isinstance(sub, userdataitems.ScpScuRoleSelectionSubItem):
            info.role_selection[sub.sop_class_uid] = (sub.scu_role, sub.scp_role)
        elif isinstance(sub, userdataitems.AsynchronousOperationsWindowSubItem):
            info.async_window = (sub.max_num_ops_invoked, sub.max_num_ops_performed)
        elif isinstance(sub, (userdataitems.UserIdentityNegotiationSubItem,
                              userdataitems.UserIdentityNegotiationSubItemAc)):
            info.user_identity = sub
        elif isinstance(sub, userdataitems.SOPClassExtendedNegotiationSubItem):
            info.ext_negotiation[sub.sop_class_uid] = sub.app_info
    return info


def _pdu_items(assoc_pdu: Any, item_type: int) -> list:
    return [i for i in assoc_pdu.variable_items if getattr(i, "item_type", None) == item_type]


def encode_data_set(ds: Dataset, transfer_syntax: str) -> bytes:
    """A data set's bytes in a context's transfer syntax (PS3.5 section 10 / A.5 deflate)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    implicit = transfer_syntax == uids.IMPLICIT_VR_LITTLE_ENDIAN
    little = transfer_syntax != uids.EXPLICIT_VR_BIG_ENDIAN
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, ds)
    data = fp.getvalue()
    if transfer_syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return data


def _is_cancel_for(msg: Any, message_id: int) -> bool:
    """True for a C-CANCEL-RQ (PS3.7 9.3.2.3) aimed at ``message_id``."""
    return (getattr(msg, "command_field", None) == 0x0FFF
            and getattr(msg, "message_id_being_responded_to", None) == message_id)


# ---------------------------------------------------------------------------- associations
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

        As requestor: the acceptor's Maximum Number Operations Performed (PS3.7 D.3.3.3.1;
        0 means unlimited, capped by our own proposal), 1 when it answered no window item
        (DCMTK, most peers) or we proposed none. As acceptor: 1 (we invoke synchronously).
        """
        if not self.dul.state_machine.is_requestor or self.peer.async_window is None:
            return 1
        proposed = int(getattr(self.ae, "max_ops_invoked", 1) or 1)
        performed = self.peer.async_window[1]
        return max(1, proposed if performed == 0 else min(performed, proposed))

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
        roles = [userdataitems.ScpScuRoleSelectionSubItem(uid, 0, 1)
                 for uid in sorted(getattr(self.ae, "scp_role_classes", ()))
                 if any(c.sop_class == uid for c in self.context_def_list.values())]
        identity = None
        username = self.remote_ae.get("username")
        if username:
            password = self.remote_ae.get("password") or ""
            identity = userdataitems.UserIdentityNegotiationSubItem(
                username, password, user_identity_type=2 if password else 1,
                positive_response_req=1 if self.remote_ae.get("positive_response") else 0)
        invoked = int(getattr(self.ae, "max_ops_invoked", 1) or 1)
        user_info = build_user_information(self.max_pdu_length, role_selection=roles,
                                           user_identity=identity,
                                           async_window=(invoked, 1) if invoked != 1 else None)
        if len(self.context_def_list) > 128:
            raise ValueError(f"{len(self.context_def_list)} presentation contexts proposed; "
                             "at most 128 fit in one association (PS3.8 9.3.2.2)")
        variable_items = [pdu.ApplicationContextItem(APPLICATION_CONTEXT_NAME)]
        variable_items.extend(build_pres_context_def_list(sorted(self.context_def_list.items())))
        variable_items.append(user_info)
        return pdu.AAssociateRqPDU(self.called_ae_title, self.calling_ae_title, variable_items)

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
        info = _pdu_items(ac, 0x50)
        self.peer = read_user_information(info[0] if info else None)
        ac_items = _pdu_items(ac, 0x21)
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
        info_items = _pdu_items(assoc_req, 0x50)
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
        negotiated = negotiate_contexts(_pdu_items(assoc_req, 0x20), self.ae.scp_transfer_syntaxes(),
                                        self.ae.scu_transfer_syntaxes(), self.peer.role_selection)
        identity_reply = []
        ident = self.peer.user_identity
        if ident is not None and getattr(ident, "positive_response_req", 0):
            identity_reply.append(userdataitems.UserIdentityNegotiationSubItemAc(b""))
        async_window = accepted_async_window(self.peer.async_window,
                                             getattr(self.ae, "max_ops_performed", 1))
        self._ops_performed = async_window[1] if async_window is not None else 1
        user_info = build_user_information(self.max_pdu_length, role_selection=negotiated.role_replies,
                                           async_window=async_window, extra=identity_reply)
        ac = pdu.AAssociateAcPDU(assoc_req.called_ae_title, assoc_req.calling_ae_title,
                                 [pdu.ApplicationContextItem(APPLICATION_CONTEXT_NAME),
                                  *negotiated.ac_items, user_info])
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
        if not (rq.protocol_version & 1):
            raise AssociationRejectedError(1, 2, 2)  # protocol version not supported
        contexts = _pdu_items(rq, 0x10)
        if not contexts or contexts[0].context_name != APPLICATION_CONTEXT_NAME:
            raise AssociationRejectedError(1, 1, 2)  # application context name not supported
        if getattr(self.ae, "require_called_aet", False) and \
                self.called_ae_title != self.ae.ae_title.strip():
            raise AssociationRejectedError(1, 1, 7)  # called AE title not recognised
        # PS3.8 9.3.2: one or more presentation contexts, each with its own odd ID (9.3.2.2), so
        # at most 128; an AC cannot answer duplicates unambiguously. ACSE-related, no reason.
        ids = [item.context_id for item in _pdu_items(rq, 0x20)]
        if not ids or len(ids) > 128 or len(set(ids)) != len(ids):
            why = ("no presentation context" if not ids else f"{len(ids)} presentation contexts"
                   if len(ids) > 128 else "duplicate presentation context IDs")
            raise AssociationRejectedError(1, 2, 1, f"association rejected: {why} (PS3.8 9.3.2)")

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
