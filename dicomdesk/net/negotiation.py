"""Association negotiation as pure functions (PS3.8 7.1, 9.3.2-9.3.3; PS3.7 Annex D).

Everything an A-ASSOCIATE exchange decides, with no socket, thread or clock (pynetdicom's
``presentation.py`` is the model): the request a requestor sends, the checks an acceptor
makes before any hook, which proposed presentation context is accepted with which
transfer syntax, SCP/SCU role selection (PS3.7 D.3.3.4), the asynchronous operations
window (D.3.3.3), user identity (D.3.3.7) and what a peer's user information says. Each
decision is testable alone (tests/net/test_negotiation.py); ``asceprovider`` carries the
results over a connection.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

from . import pdu, userdataitems, uids
from .exceptions import AssociationRejectedError
from .records import Record

logger = logging.getLogger(__name__)

#: Most presentation contexts in one association: each has its own odd ID in 1..255
#: (PS3.8 9.3.2.2).
MAX_PRESENTATION_CONTEXTS = 128

#: DICOM Application Context Name (PS3.7 A.2.1).
APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"

# Presentation context results (PS3.8 Table 9-18).
PC_ACCEPTANCE = 0
PC_USER_REJECTION = 1
PC_NO_REASON = 2
PC_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
PC_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

#: Each result in words, for telling a user why a context was refused (``dicomdesk send``).
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


def items_of_type(assoc_pdu: Any, item_type: int) -> list:
    """The variable items of an A-ASSOCIATE-RQ/AC of one item type (PS3.8 9.3.2, 9.3.3):
    0x10 application context, 0x20/0x21 presentation contexts, 0x50 user information."""
    return [i for i in assoc_pdu.variable_items if getattr(i, "item_type", None) == item_type]


def user_identity_item(username: str | None, password: str | None = None,
                       positive_response: bool = False) -> Any:
    """The User Identity sub-item a requestor proposes (PS3.7 D.3.3.7): username alone
    (type 1) or with a passcode (type 2); None without a username."""
    if not username:
        return None
    password = password or ""
    return userdataitems.UserIdentityNegotiationSubItem(
        username, password, user_identity_type=2 if password else 1,
        positive_response_req=1 if positive_response else 0)


def association_request(called_ae_title: str, calling_ae_title: str,
                        contexts: Mapping[int, PContextDef], max_pdu_length: int, *,
                        scp_role_classes: Iterable[str] = (), user_identity: Any = None,
                        max_ops_invoked: int = 1) -> pdu.AAssociateRqPDU:
    """The A-ASSOCIATE-RQ a requestor sends (PS3.8 9.3.2).

    ``scp_role_classes``: SOP classes we offer to serve as SCP (C-GET's storage
    sub-operations): a role selection item asks for that role, for the classes proposed.
    ``max_ops_invoked`` other than 1 proposes an asynchronous operations window.
    Raises ValueError for more contexts than one association holds.
    """
    roles = [userdataitems.ScpScuRoleSelectionSubItem(uid, 0, 1)
             for uid in sorted(scp_role_classes)
             if any(c.sop_class == uid for c in contexts.values())]
    user_info = build_user_information(max_pdu_length, role_selection=roles,
                                       user_identity=user_identity,
                                       async_window=(max_ops_invoked, 1) if max_ops_invoked != 1 else None)
    if len(contexts) > MAX_PRESENTATION_CONTEXTS:
        raise ValueError(f"{len(contexts)} presentation contexts proposed; "
                         "at most 128 fit in one association (PS3.8 9.3.2.2)")
    variable_items = [pdu.ApplicationContextItem(APPLICATION_CONTEXT_NAME)]
    variable_items.extend(build_pres_context_def_list(sorted(contexts.items())))
    variable_items.append(user_info)
    return pdu.AAssociateRqPDU(called_ae_title, calling_ae_title, variable_items)


def check_association_request(rq: Any, ae_title: str, require_called_aet: bool = False) -> None:
    """The acceptor's checks that need no hook (PS3.8 9.3.2, 7.1.1): protocol version,
    application context, called AE title (when ``require_called_aet``), presentation
    context count and IDs. Raises AssociationRejectedError with the RJ fields (Table 9-21)."""
    if not (rq.protocol_version & 1):
        raise AssociationRejectedError(1, 2, 2)  # protocol version not supported
    contexts = items_of_type(rq, 0x10)
    if not contexts or contexts[0].context_name != APPLICATION_CONTEXT_NAME:
        raise AssociationRejectedError(1, 1, 2)  # application context name not supported
    if require_called_aet and rq.called_ae_title.strip() != ae_title.strip():
        raise AssociationRejectedError(1, 1, 7)  # called AE title not recognised
    # PS3.8 9.3.2: one or more presentation contexts, each with its own odd ID (9.3.2.2), so
    # at most 128; an AC cannot answer duplicates unambiguously. ACSE-related, no reason.
    ids = [item.context_id for item in items_of_type(rq, 0x20)]
    if not ids or len(ids) > MAX_PRESENTATION_CONTEXTS or len(set(ids)) != len(ids):
        why = ("no presentation context" if not ids else f"{len(ids)} presentation contexts"
               if len(ids) > MAX_PRESENTATION_CONTEXTS else "duplicate presentation context IDs")
        raise AssociationRejectedError(1, 2, 1, f"association rejected: {why} (PS3.8 9.3.2)")


def association_accept(rq: Any, negotiated: Negotiated, peer: PeerInfo, max_pdu_length: int,
                       async_window: tuple[int, int] | None) -> pdu.AAssociateAcPDU:
    """The A-ASSOCIATE-AC answering ``rq`` (PS3.8 9.3.3): the contexts and role replies
    ``negotiate_contexts`` decided, the window ``accepted_async_window`` answered, and an
    empty server response when the requestor asked for one to its user identity (PS3.7
    D.3.3.7.2: we do not authenticate by response)."""
    identity_reply = []
    ident = peer.user_identity
    if ident is not None and getattr(ident, "positive_response_req", 0):
        identity_reply.append(userdataitems.UserIdentityNegotiationSubItemAc(b""))
    user_info = build_user_information(max_pdu_length, role_selection=negotiated.role_replies,
                                       async_window=async_window, extra=identity_reply)
    return pdu.AAssociateAcPDU(rq.called_ae_title, rq.calling_ae_title,
                               [pdu.ApplicationContextItem(APPLICATION_CONTEXT_NAME),
                                *negotiated.ac_items, user_info])


def requestor_ops_window(max_ops_invoked: int, peer_async_window: tuple[int, int] | None) -> int:
    """How many of a requestor's requests may be outstanding at once (>= 1): the acceptor's
    Maximum Number Operations Performed (PS3.7 D.3.3.3.1; 0 means unlimited, capped by our
    own proposal), 1 when it answered no window item (DCMTK, most peers)."""
    if peer_async_window is None:
        return 1
    performed = peer_async_window[1]
    return max(1, max_ops_invoked if performed == 0 else min(performed, max_ops_invoked))
