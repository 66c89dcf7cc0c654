"""Association negotiation as pure functions (PS3.8 7.1.1.13, PS3.7 D.3.3): no sockets."""

from __future__ import annotations

from dicomdesk.net import pdu, uids, userdataitems
from dicomdesk.net.applicationentity import ClientAE
from dicomdesk.net.asceprovider import AssociationRequester
from dicomdesk.net.negotiation import (
    PC_ABSTRACT_SYNTAX_NOT_SUPPORTED,
    PC_ACCEPTANCE,
    PC_NO_REASON,
    PC_TRANSFER_SYNTAXES_NOT_SUPPORTED,
    PContextDef,
    accepted_async_window,
    accepted_from_ac,
    build_pres_context_def_list,
    build_user_information,
    negotiate_contexts,
    read_user_information,
)
from dicomdesk.net.sopclass import verification_scu

CT = uids.CT_IMAGE_STORAGE
MR = uids.MR_IMAGE_STORAGE
ILE = uids.IMPLICIT_VR_LITTLE_ENDIAN
ELE = uids.EXPLICIT_VR_LITTLE_ENDIAN
EBE = uids.EXPLICIT_VR_BIG_ENDIAN
JPEG = uids.JPEG_BASELINE_PROCESS_1


def _rq_item(pc_id: int, abstract: str, *ts: str) -> pdu.PresentationContextItemRQ:
    return pdu.PresentationContextItemRQ(pc_id, pdu.AbstractSyntaxSubItem(abstract),
                                         [pdu.TransferSyntaxSubItem(t) for t in ts])


def test_acceptor_picks_first_transfer_syntax_in_requestor_order():
    result = negotiate_contexts([_rq_item(1, CT, EBE, ELE, ILE)], {CT: [ILE, ELE]})
    assert result.accepted == {1: PContextDef(1, CT, ELE)}
    assert result.ac_items[0].result_reason == PC_ACCEPTANCE
    assert result.ac_items[0].ts_sub_item.name == ELE


def test_unsupported_abstract_syntax_is_refused_while_others_are_accepted():
    result = negotiate_contexts([_rq_item(1, CT, ILE), _rq_item(3, MR, ILE)], {MR: [ILE]})
    reasons = {item.context_id: item.result_reason for item in result.ac_items}
    assert reasons == {1: PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, 3: PC_ACCEPTANCE}
    assert list(result.accepted) == [3]


def test_context_without_a_common_transfer_syntax_is_refused_with_reason_4():
    result = negotiate_contexts([_rq_item(1, CT, JPEG)], {CT: [ILE, ELE]})
    assert result.ac_items[0].result_reason == PC_TRANSFER_SYNTAXES_NOT_SUPPORTED
    assert result.accepted == {}


def test_even_context_id_is_refused():
    result = negotiate_contexts([_rq_item(2, CT, ILE)], {CT: [ILE]})
    assert result.ac_items[0].result_reason == PC_NO_REASON


def test_role_selection_lets_a_get_requestor_be_the_storage_scp():
    # A C-GET SCU proposes CT storage with itself as SCP (scu_role=0, scp_role=1); we are a Q/R
    # SCP that can act as storage SCU, so the context is accepted with the reversed role.
    result = negotiate_contexts([_rq_item(1, CT, ILE)], scp_ts={}, scu_ts={CT: [ILE]},
                                role_requests={CT: (0, 1)})
    assert result.accepted == {1: PContextDef(1, CT, ILE)}
    reply = result.role_replies[0]
    assert (reply.sop_class_uid, reply.scu_role, reply.scp_role) == (CT, 0, 1)
    assert result.roles[1] == (True, False)  # we act as SCU on it


def test_role_selection_refused_when_we_cannot_take_the_reversed_role():
    result = negotiate_contexts([_rq_item(1, CT, ILE)], scp_ts={}, scu_ts={},
                                role_requests={CT: (0, 1)})
    assert result.ac_items[0].result_reason == PC_ABSTRACT_SYNTAX_NOT_SUPPORTED


def test_requestor_ignores_acceptance_with_a_transfer_syntax_it_never_proposed():
    proposed = {1: PContextDef(1, CT, [ILE]), 3: PContextDef(3, MR, [ILE, ELE])}
    ac_items = [pdu.PresentationContextItemAC(1, 0, pdu.TransferSyntaxSubItem(JPEG)),
                pdu.PresentationContextItemAC(3, 0, pdu.TransferSyntaxSubItem(ELE)),
                pdu.PresentationContextItemAC(5, 0, pdu.TransferSyntaxSubItem(ILE))]
    assert accepted_from_ac(proposed, ac_items) == {3: PContextDef(3, MR, ELE)}


def test_user_information_round_trips_what_the_peer_needs_to_know():
    item = build_user_information(
        32768, role_selection=[userdataitems.ScpScuRoleSelectionSubItem(CT, 0, 1)],
        user_identity=userdataitems.UserIdentityNegotiationSubItem("alice", "secret"),
        async_window=(1, 1))
    decoded = pdu.UserInformationItem.decode(__import__("io").BytesIO(item.encode()))
    info = read_user_information(decoded)
    assert info.max_pdu_length == 32768
    assert info.implementation_class_uid == uids.IMPLEMENTATION_CLASS_UID
    assert info.implementation_version_name == uids.IMPLEMENTATION_VERSION_NAME
    assert info.role_selection == {CT: (0, 1)}
    assert info.async_window == (1, 1)
    assert info.user_identity.primary_field == "alice"
    types = [sub.item_type for sub in decoded.user_data]
    assert types == sorted(types), "sub-items go in item-type order (PS3.7 D.3.3)"


def test_requester_builds_space_padded_rq_with_identity_and_odd_context_ids():
    ae = ClientAE("ME").add_scu(verification_scu)
    ae.update_context_def_list([CT], scp_role=True)
    requester = AssociationRequester(ae, 16384, {"aet": "PACS", "address": "127.0.0.1", "port": 1,
                                                 "username": "bob", "password": "pw"})
    rq = requester.build_request()
    raw = rq.encode()
    assert raw[10:26] == b"PACS" + b" " * 12
    assert raw[26:42] == b"ME" + b" " * 14
    decoded = pdu.AAssociateRqPDU.decode(raw)
    ids = [c.context_id for c in decoded.presentation_contexts]
    assert ids == [1, 3]
    info = read_user_information(decoded.user_information)
    assert info.max_pdu_length == 16384
    assert info.role_selection == {CT: (0, 1)}
    assert info.user_identity.user_identity_type == 2
    assert info.user_identity.secondary_field == "pw"


def test_build_pres_context_def_list_accepts_pairs_and_dicts():
    defs = {1: PContextDef(1, CT, [ILE, ELE])}
    from_dict = list(build_pres_context_def_list(defs))
    from_pairs = list(build_pres_context_def_list(defs.items()))
    assert from_dict == from_pairs
    assert [t.name for t in from_dict[0].ts_sub_items] == [ILE, ELE]


def test_the_acceptor_answers_a_window_within_its_limit_and_the_proposal():
    """PS3.7 D.3.3.3.1: we invoke nothing asynchronously (1) and perform up to our limit,
    never more than the requestor proposed to invoke (its 0 means unlimited)."""
    assert accepted_async_window(None, 16) is None  # no proposal, no item
    assert accepted_async_window((0, 1), 16) == (1, 16)
    assert accepted_async_window((4, 0), 16) == (1, 4)
    assert accepted_async_window((64, 1), 16) == (1, 16)
    assert accepted_async_window((1, 1), 16) == (1, 1)
    assert accepted_async_window((8, 1), 1) == (1, 1)
    assert accepted_async_window((8, 1), 0) == (1, 1)
