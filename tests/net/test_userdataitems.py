"""User Information sub-items (PS3.8 D.1, PS3.7 D.3.3): round trips, exact bytes, malformed input."""

from __future__ import annotations

import io

import pytest

from dicomdesk.net.exceptions import PDUProcessingError
from dicomdesk.net.pdu import UserInformationItem
from dicomdesk.net.userdataitems import (
    SUB_ITEM_TYPES,
    AsynchronousOperationsWindowSubItem,
    GenericUserDataSubItem,
    ImplementationClassUIDSubItem,
    ImplementationVersionNameSubItem,
    MaximumLengthSubItem,
    ScpScuRoleSelectionSubItem,
    SOPClassCommonExtendedNegotiationSubItem,
    SOPClassExtendedNegotiationSubItem,
    UserIdentityNegotiationSubItem,
    UserIdentityNegotiationSubItemAc,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
UID_64 = "1." + "2" * 62

SAMPLES = [
    MaximumLengthSubItem(16384),
    MaximumLengthSubItem(0),
    MaximumLengthSubItem(0xFFFFFFFF),
    ImplementationClassUIDSubItem("1.2.826.0.1.3680043.9.3811.3.0.4"),
    ImplementationClassUIDSubItem(UID_64),
    AsynchronousOperationsWindowSubItem(0, 0),
    AsynchronousOperationsWindowSubItem(0xFFFF, 1),
    ScpScuRoleSelectionSubItem(CT, 1, 0),
    ScpScuRoleSelectionSubItem(CT, 0, 1),
    ImplementationVersionNameSubItem("DICOMDESK_01"),
    ImplementationVersionNameSubItem("X" * 16),
    SOPClassExtendedNegotiationSubItem("1.2.840.10008.5.1.4.1.2.2.1", b"\x01\x01\x00\x01"),
    SOPClassExtendedNegotiationSubItem(CT, b""),
    SOPClassCommonExtendedNegotiationSubItem(CT, "1.2.840.10008.4.2"),
    SOPClassCommonExtendedNegotiationSubItem(CT, "1.2.840.10008.4.2", ["1.2.3", "1.2.3.4.5"]),
    UserIdentityNegotiationSubItem("alice", "s3cret", 2, 1),
    UserIdentityNegotiationSubItem("bob", "", 1, 0),
    UserIdentityNegotiationSubItem("bob", "unexpected", 1, 0),
    UserIdentityNegotiationSubItem("jörg", "pässwörd", 2, 0),
    UserIdentityNegotiationSubItem(b"\x60\x82kerberos-ticket\x00\xff", b"", 3, 1),
    UserIdentityNegotiationSubItem(b"<saml:Assertion/>", b"", 4, 0),
    UserIdentityNegotiationSubItem(b"eyJhbGciOi.eyJzdWIi.sig", b"", 5, 1),
    UserIdentityNegotiationSubItem(b"jwt", b"secondary", 5, 0),
    UserIdentityNegotiationSubItemAc(b""),
    UserIdentityNegotiationSubItemAc(b"server-ticket"),
    GenericUserDataSubItem(0x5A, b"\x00\x01\x02"),
    GenericUserDataSubItem(0xFF, b""),
]


@pytest.mark.parametrize("item", SAMPLES, ids=repr)
def test_sub_item_round_trips_through_its_own_decode(item):
    raw = item.encode()
    assert len(raw) == item.total_length == item.item_length + 4
    decoded = type(item).decode(io.BytesIO(raw))
    assert decoded == item
    assert decoded.encode() == raw


@pytest.mark.parametrize("item", SAMPLES, ids=repr)
def test_sub_item_round_trips_through_the_user_information_registry(item):
    decoded = list(UserInformationItem.sub_items(io.BytesIO(item.encode())))
    assert decoded == [item]


def test_maximum_length_sub_item_has_the_bytes_of_ps3_8_table_d1_1():
    assert MaximumLengthSubItem(16384).encode() == bytes.fromhex("51 00 0004 00004000")


def test_role_selection_has_uid_length_then_roles():
    assert ScpScuRoleSelectionSubItem("1.2", 1, 0).encode() == bytes.fromhex("54 00 0007 0003") + b"1.2\x01\x00"


def test_user_identity_request_is_type_0x58_and_response_is_0x59():
    """PS3.7 D.3.3.7: the A-ASSOCIATE-RQ sub-item is 58H, the A-ASSOCIATE-AC one 59H."""
    assert UserIdentityNegotiationSubItem("u", "p").encode()[0] == 0x58
    assert UserIdentityNegotiationSubItemAc(b"").encode()[0] == 0x59
    assert SUB_ITEM_TYPES[0x58] is UserIdentityNegotiationSubItem
    assert SUB_ITEM_TYPES[0x59] is UserIdentityNegotiationSubItemAc


def test_user_identity_writes_an_empty_secondary_field_length():
    raw = UserIdentityNegotiationSubItem("bob", "", 1, 0).encode()
    assert raw == bytes.fromhex("58 00 0009 01 00 0003") + b"bob" + bytes.fromhex("0000")


def test_user_identity_text_types_decode_to_str_and_others_to_bytes():
    text = UserIdentityNegotiationSubItem.decode(io.BytesIO(UserIdentityNegotiationSubItem(b"al", b"pw", 2).encode()))
    assert (text.primary_field, text.secondary_field) == ("al", "pw")
    ticket = UserIdentityNegotiationSubItem.decode(io.BytesIO(UserIdentityNegotiationSubItem("tk", "", 3).encode()))
    assert ticket.primary_field == b"tk"


def test_user_identity_with_invalid_utf8_decodes_and_re_encodes_identically():
    raw = UserIdentityNegotiationSubItem(b"\xff\xfe", b"\xc3", 2).encode()
    decoded = UserIdentityNegotiationSubItem.decode(io.BytesIO(raw))
    assert isinstance(decoded.primary_field, str)
    assert decoded.encode() == raw


def test_user_identity_repr_hides_the_passcode():
    assert "s3cret" not in repr(UserIdentityNegotiationSubItem("alice", "s3cret"))


def test_uid_padded_with_nul_by_a_device_is_stripped():
    raw = bytes.fromhex("52 00 0004") + b"1.2\x00"
    assert ImplementationClassUIDSubItem.decode(io.BytesIO(raw)).implementation_class_uid == "1.2"


def test_reserved_byte_is_kept_but_not_tested():
    raw = bytes.fromhex("51 7F 0004 00001000")
    item = MaximumLengthSubItem.decode(io.BytesIO(raw))
    assert (item.maximum_length_received, item.reserved) == (4096, 0x7F)
    assert item.encode() == raw


def test_unknown_sub_item_type_becomes_generic():
    raw = bytes.fromhex("5A 00 0002 ABCD")
    assert list(UserInformationItem.sub_items(io.BytesIO(raw))) == [GenericUserDataSubItem(0x5A, b"\xab\xcd")]


@pytest.mark.parametrize("raw", [
    bytes.fromhex("51 00 0004 0000"),             # value shorter than its length
    bytes.fromhex("51 00 0002 0000"),             # maximum length must be 4 bytes
    bytes.fromhex("53 00 0006 000100010000"),     # async window must be 4 bytes
    bytes.fromhex("54 00 0005 0009 31 01 00"),    # UID length overruns the sub-item
    bytes.fromhex("54 00 0005 0003 312E32"),      # role bytes missing
    bytes.fromhex("56 00 0001 00"),               # UID length field cut
    bytes.fromhex("57 00 0008 0001 31 0001 32 00"),  # related length cut
    bytes.fromhex("57 00 000A 0001 31 0001 32 0005 0000"),  # related length mismatch
    bytes.fromhex("57 00 000B 0001 31 0001 32 0003 0009 31"),  # related UID overruns
    bytes.fromhex("58 00 0004 02 00 0009"),       # primary field overruns
    bytes.fromhex("58 00 0008 02 00 0001 61 0002 62"),  # secondary overruns
    bytes.fromhex("59 00 0003 0005 41"),          # server response overruns
    bytes.fromhex("59 00 0001 00"),               # server response length cut
    bytes.fromhex("51 00"),                       # header cut
])
def test_malformed_sub_item_raises_pdu_processing_error_with_provider_source(raw):
    with pytest.raises(PDUProcessingError) as caught:
        list(UserInformationItem.sub_items(io.BytesIO(raw)))
    assert caught.value.source == 2
    assert caught.value.reason == 6


def test_decode_refuses_a_sub_item_of_another_type():
    with pytest.raises(PDUProcessingError):
        MaximumLengthSubItem.decode(io.BytesIO(ImplementationClassUIDSubItem("1.2").encode()))


def test_decode_refuses_an_empty_stream():
    with pytest.raises(PDUProcessingError):
        ScpScuRoleSelectionSubItem.decode(io.BytesIO(b""))


def test_encoding_a_value_longer_than_65535_bytes_is_a_usage_error():
    with pytest.raises(ValueError):
        SOPClassExtendedNegotiationSubItem(CT, bytes(70000)).encode()
