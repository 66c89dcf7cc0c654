"""PDUs and items (PS3.8 9.3): round trips, golden bytes from pynetdicom and DCMTK,
refusals with the right A-ABORT reason, length checks and framing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dicomdesk.net import pdu
from dicomdesk.net.exceptions import PDUProcessingError
from dicomdesk.net.pdu import (
    MAX_CONTROL_PDU_LENGTH,
    AAbortPDU,
    AAssociateAcPDU,
    AAssociateRjPDU,
    AAssociateRqPDU,
    AbstractSyntaxSubItem,
    ApplicationContextItem,
    AReleaseRpPDU,
    AReleaseRqPDU,
    PDataTfPDU,
    PDUFramer,
    PresentationContextItemAC,
    PresentationContextItemRQ,
    PresentationDataValueItem,
    TransferSyntaxSubItem,
    UserInformationItem,
    check_pdu_length,
    decode_pdu,
    parse_pdu_header,
)
from dicomdesk.net.userdataitems import (
    AsynchronousOperationsWindowSubItem,
    ImplementationClassUIDSubItem,
    ImplementationVersionNameSubItem,
    MaximumLengthSubItem,
    ScpScuRoleSelectionSubItem,
    SOPClassCommonExtendedNegotiationSubItem,
    SOPClassExtendedNegotiationSubItem,
    UserIdentityNegotiationSubItem,
    UserIdentityNegotiationSubItemAc,
)

GOLDEN = Path(__file__).parent.parent / "data" / "pdus"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"


def golden(name: str) -> bytes:
    return (GOLDEN / f"{name}.bin").read_bytes()


def rq_context(context_id, abstract, *syntaxes):
    return PresentationContextItemRQ(context_id, AbstractSyntaxSubItem(abstract),
                                     [TransferSyntaxSubItem(s) for s in syntaxes])


def full_rq(n_contexts: int = 3) -> AAssociateRqPDU:
    contexts = [rq_context(2 * i + 1, f"1.2.840.10008.5.1.4.1.1.{i}", IMPLICIT, EXPLICIT)
                for i in range(n_contexts)]
    user = UserInformationItem([
        MaximumLengthSubItem(16384), ImplementationClassUIDSubItem("1.2.3.4"),
        AsynchronousOperationsWindowSubItem(2, 2), ScpScuRoleSelectionSubItem(CT, 1, 1),
        ImplementationVersionNameSubItem("DD_1"), SOPClassExtendedNegotiationSubItem(FIND, b"\x01"),
        SOPClassCommonExtendedNegotiationSubItem(CT, "1.2.840.10008.4.2", ["1.2.3"]),
        UserIdentityNegotiationSubItem("alice", "pw", 2, 1)])
    return AAssociateRqPDU("ANY-SCP", "DICOMDESK", [ApplicationContextItem(APP_CONTEXT), *contexts, user])


PDUS = [
    full_rq(),
    full_rq(128),
    AAssociateRqPDU("A" * 16, "B" * 16, []),
    AAssociateRqPDU("", "X", [ApplicationContextItem(APP_CONTEXT)], protocol_version=3, reserved1=1, reserved2=2,
                    reserved3=bytes(range(32))),
    AAssociateAcPDU("ANY-SCP", "DICOMDESK", [
        ApplicationContextItem(APP_CONTEXT),
        PresentationContextItemAC(1, 0, TransferSyntaxSubItem(IMPLICIT)),
        PresentationContextItemAC(3, 4, None),
        PresentationContextItemAC(5, 1, TransferSyntaxSubItem("")),
        UserInformationItem([MaximumLengthSubItem(0), UserIdentityNegotiationSubItemAc(b"ticket")])]),
    AAssociateAcPDU("X", "Y", []),
    AAssociateRjPDU(1, 1, 7),
    AAssociateRjPDU(2, 3, 2, reserved1=9, reserved2=8),
    PDataTfPDU([PresentationDataValueItem(1, b"\x03abc"), PresentationDataValueItem(255, b"\x00" + bytes(70000))]),
    PDataTfPDU([]),
    AReleaseRqPDU(),
    AReleaseRpPDU(reserved1=1, reserved2=0xFFFFFFFF),
    AAbortPDU(0, 0),
    AAbortPDU(2, 6, 1, 2, 3),
]


@pytest.mark.parametrize("message", PDUS, ids=lambda p: type(p).__name__)
def test_pdu_round_trips_through_decode_pdu_and_its_class(message):
    raw = message.encode()
    assert len(raw) == message.total_length() == message.pdu_length + 6
    assert parse_pdu_header(raw) == (message.pdu_type, len(raw) - 6)
    assert decode_pdu(raw) == message
    assert type(message).decode(memoryview(raw)) == message
    assert decode_pdu(raw).encode() == raw


ITEMS = [
    ApplicationContextItem(APP_CONTEXT),
    AbstractSyntaxSubItem(CT),
    TransferSyntaxSubItem("1." + "9" * 62),
    rq_context(1, VERIFICATION, IMPLICIT),
    rq_context(255, CT),
    PresentationContextItemAC(7, 0, TransferSyntaxSubItem(EXPLICIT)),
    PresentationContextItemAC(9, 3, None),
    UserInformationItem([]),
    UserInformationItem([MaximumLengthSubItem(1), ImplementationVersionNameSubItem("V")]),
    PresentationDataValueItem(3, b"\x02" + b"x" * 1000),
]


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: type(i).__name__)
def test_item_round_trips_through_its_stream_decode(item):
    raw = item.encode()
    assert len(raw) == item.total_length() == item.item_length + 4
    assert type(item).decode(io.BytesIO(raw)) == item


@pytest.mark.parametrize("name", ["pynetdicom_associate_rq", "pynetdicom_associate_ac", "pynetdicom_associate_rj",
                                  "pynetdicom_p_data_tf", "pynetdicom_release_rq", "pynetdicom_release_rp",
                                  "pynetdicom_abort_user", "pynetdicom_abort_provider",
                                  "dcmtk_echoscu_associate_rq", "dcmtk_storescp_associate_ac"])
def test_golden_pdu_from_a_real_peer_re_encodes_byte_for_byte(name):
    raw = golden(name)
    assert decode_pdu(raw).encode() == raw


def test_pynetdicom_associate_rq_fields():
    rq = decode_pdu(golden("pynetdicom_associate_rq"))
    assert isinstance(rq, AAssociateRqPDU)
    assert (rq.called_ae_title, rq.calling_ae_title, rq.protocol_version) == ("ANY-SCP", "DICOMDESK", 1)
    assert rq.application_context.context_name == APP_CONTEXT
    assert [(c.context_id, c.abs_sub_item.name, [t.name for t in c.ts_sub_items])
            for c in rq.presentation_contexts] == [(1, VERIFICATION, [IMPLICIT]), (3, CT, [EXPLICIT, IMPLICIT, BIG]),
                                                   (5, FIND, [IMPLICIT, EXPLICIT])]
    user = rq.user_information
    assert user.get(MaximumLengthSubItem).maximum_length_received == 16382
    assert user.get(ImplementationClassUIDSubItem).implementation_class_uid == "1.2.826.0.1.3680043.9.3811.3.0.4"
    assert user.get(ImplementationVersionNameSubItem).implementation_version_name == "PYNETDICOM_304"
    window = user.get(AsynchronousOperationsWindowSubItem)
    assert (window.max_num_ops_invoked, window.max_num_ops_performed) == (5, 3)
    assert user.get_all(ScpScuRoleSelectionSubItem) == [ScpScuRoleSelectionSubItem(CT, 1, 1)]
    assert user.get(SOPClassExtendedNegotiationSubItem) == SOPClassExtendedNegotiationSubItem(FIND, b"\x01\x01\x00\x01")
    assert user.get(SOPClassCommonExtendedNegotiationSubItem) == SOPClassCommonExtendedNegotiationSubItem(
        CT, "1.2.840.10008.4.2", ["1.2.840.10008.5.1.4.1.1.2.1"])
    identity = user.get(UserIdentityNegotiationSubItem)
    assert (identity.user_identity_type, identity.positive_response_req,
            identity.primary_field, identity.secondary_field) == (2, 1, "alice", "s3cret")


def test_pynetdicom_associate_ac_fields():
    ac = decode_pdu(golden("pynetdicom_associate_ac"))
    assert isinstance(ac, AAssociateAcPDU)
    assert [(c.context_id, c.result_reason, c.ts_sub_item.name) for c in ac.presentation_contexts] == [
        (1, 0, IMPLICIT), (3, 0, EXPLICIT), (5, 3, IMPLICIT)]
    assert ac.user_information.get(ScpScuRoleSelectionSubItem) == ScpScuRoleSelectionSubItem(CT, 0, 1)
    assert ac.user_information.get(UserIdentityNegotiationSubItemAc).server_response == b"server-ticket"


def test_pynetdicom_small_pdus_fields():
    assert decode_pdu(golden("pynetdicom_associate_rj")) == AAssociateRjPDU(1, 1, 7)
    assert decode_pdu(golden("pynetdicom_release_rq")) == AReleaseRqPDU()
    assert decode_pdu(golden("pynetdicom_release_rp")) == AReleaseRpPDU()
    assert decode_pdu(golden("pynetdicom_abort_user")) == AAbortPDU(0, 0)
    assert decode_pdu(golden("pynetdicom_abort_provider")) == AAbortPDU(2, 6)


def test_pynetdicom_p_data_keeps_the_message_control_header_in_data_value():
    p_data = decode_pdu(golden("pynetdicom_p_data_tf"))
    assert [(v.context_id, v.data_value[:1], len(v.data_value), v.is_command, v.is_last)
            for v in p_data.data_value_items] == [(1, b"\x03", 17, True, True), (1, b"\x00", 301, False, False),
                                                  (1, b"\x02", 8, False, True)]
    assert p_data.data_value_items[0].data_value == b"\x03" + bytes(range(16))


def test_dcmtk_echoscu_associate_rq_fields_and_its_non_zero_reserved_byte():
    rq = decode_pdu(golden("dcmtk_echoscu_associate_rq"))
    assert (rq.called_ae_title, rq.calling_ae_title) == ("ANY-SCP", "ECHOSCU")
    [context] = rq.presentation_contexts
    assert (context.context_id, context.abs_sub_item.name, context.ts_sub_items) == (
        1, VERIFICATION, [TransferSyntaxSubItem(IMPLICIT)])
    assert context.reserved3 == 0xFF  # sent by DCMTK, not tested (PS3.8 9.3.2.2)
    assert rq.user_information.get(MaximumLengthSubItem).maximum_length_received == 16384
    assert rq.user_information.get(ImplementationVersionNameSubItem).implementation_version_name.startswith("OFFIS")


def test_dcmtk_storescp_associate_ac_fields():
    ac = decode_pdu(golden("dcmtk_storescp_associate_ac"))
    assert [(c.context_id, c.result_reason) for c in ac.presentation_contexts] == [(1, 0), (3, 0), (5, 3)]
    assert ac.presentation_contexts[1].ts_sub_item.name == EXPLICIT


def test_ae_titles_are_padded_with_spaces_and_stripped_on_decode():
    raw = AAssociateRqPDU("SCP", "SCU", []).encode()
    assert raw[10:26] == b"SCP" + b" " * 13
    assert raw[26:42] == b"SCU" + b" " * 13
    nul_padded = raw[:10] + b"SCP".ljust(16, b"\x00") + raw[26:]
    assert decode_pdu(nul_padded).called_ae_title == "SCP"


def test_ae_title_longer_than_16_characters_is_a_usage_error():
    with pytest.raises(ValueError):
        AAssociateRqPDU("A" * 17, "B", []).encode()


def test_reserved3_accepts_eight_ints_as_in_the_reference():
    assert AAssociateRqPDU("A", "B", [], reserved3=(0,) * 8).reserved3 == bytes(32)


def test_uids_are_written_unpadded_and_nul_padding_is_tolerated():
    item = TransferSyntaxSubItem(IMPLICIT)
    assert item.encode() == bytes.fromhex("40 00 0011") + IMPLICIT.encode()
    padded = bytes.fromhex("40 00 0012") + IMPLICIT.encode() + b"\x00"
    assert TransferSyntaxSubItem.decode(io.BytesIO(padded)).name == IMPLICIT


def test_rejected_context_with_unreadable_transfer_syntax_field_is_tolerated():
    body = bytes.fromhex("05 00 03 00") + bytes.fromhex("40 00 00 09 31")  # sub-item overruns
    item = PresentationContextItemAC.decode(io.BytesIO(bytes.fromhex("21 00 0009") + body))
    assert (item.context_id, item.result_reason, item.ts_sub_item) == (5, 3, None)


def test_accepted_context_without_transfer_syntax_is_refused():
    with pytest.raises(PDUProcessingError):
        PresentationContextItemAC.decode(io.BytesIO(bytes.fromhex("21 00 0004 01 00 00 00")))


def test_request_context_without_abstract_syntax_is_refused():
    raw = bytes.fromhex("20 00 0008 01 00 00 00") + bytes.fromhex("40 00 0001 31")
    with pytest.raises(PDUProcessingError):
        PresentationContextItemRQ.decode(io.BytesIO(raw))


def test_p_data_encode_parts_concatenate_to_encode_without_copying_the_values():
    value = memoryview(b"\x00" + bytes(100_000))
    message = PDataTfPDU([PresentationDataValueItem(1, b"\x03cmd"), PresentationDataValueItem(3, value)])
    parts = message.encode_parts()
    assert b"".join(parts) == message.encode()
    assert any(part is value for part in parts)
    assert decode_pdu(message.encode()).data_value_items[1].data_value == bytes(value)


def test_pdv_repr_does_not_show_the_data():
    assert "secret" not in repr(PresentationDataValueItem(1, b"\x02secret"))


def refusal(raw) -> PDUProcessingError:
    with pytest.raises(PDUProcessingError) as caught:
        decode_pdu(raw)
    assert caught.value.source == 2
    return caught.value


def test_unknown_pdu_type_is_refused_as_unrecognized_pdu():
    assert refusal(bytes.fromhex("08 00 00000004 00000000")).reason == 1


@pytest.mark.parametrize("raw", [
    b"", b"\x01", bytes.fromhex("05 00 00000004 0000"),       # shorter than declared
    bytes.fromhex("05 00 00000004 00000000 00"),              # longer than declared
    bytes.fromhex("05 00 00000005 0000000000"),               # fixed length not 4
    bytes.fromhex("03 00 00000003 000000"),
    bytes.fromhex("07 00 00000000"),
    bytes.fromhex("01 00 00000004 00010000"),                 # shorter than the fixed fields
    bytes.fromhex("04 00 00000005 00000001 01"),              # PDV without message control header
    bytes.fromhex("04 00 00000007 00000009 0103 0000"),       # PDV overruns the PDU
    bytes.fromhex("04 00 00000002 0000"),                     # trailing bytes shorter than a PDV header
])
def test_malformed_pdu_is_refused_as_invalid_parameter_value(raw):
    assert refusal(raw).reason == 6


def test_item_overrunning_its_pdu_is_refused():
    raw = bytearray(AAssociateRqPDU("A", "B", [ApplicationContextItem(APP_CONTEXT)]).encode())
    raw[76:78] = (200).to_bytes(2, "big")
    assert refusal(bytes(raw)).reason == 6


def test_unknown_item_in_associate_rq_is_refused_as_unrecognized_parameter():
    raw = AAssociateRqPDU("A", "B", [ApplicationContextItem(APP_CONTEXT)]).encode()
    extra = bytes.fromhex("60 00 0000")
    patched = raw[:2] + (len(raw) - 6 + 4).to_bytes(4, "big") + raw[6:] + extra
    assert refusal(patched).reason == 4


def test_accept_context_item_inside_a_request_is_refused_as_unexpected_parameter():
    ac_item = PresentationContextItemAC(1, 0, TransferSyntaxSubItem(IMPLICIT))
    raw = AAssociateRqPDU("A", "B", []).encode()
    patched = bytearray(raw + ac_item.encode())
    patched[2:6] = (len(patched) - 6).to_bytes(4, "big")
    assert refusal(bytes(patched)).reason == 5


def test_decode_of_one_class_refuses_another_pdu_type():
    with pytest.raises(PDUProcessingError):
        AAbortPDU.decode(AReleaseRqPDU().encode())


def test_check_pdu_length_refuses_a_huge_p_data_before_reading_its_body():
    with pytest.raises(PDUProcessingError) as caught:
        check_pdu_length(4, 0xFFFFFFFF, 16384)
    assert (caught.value.source, caught.value.reason) == (2, 6)
    check_pdu_length(4, 16384, 16384)
    check_pdu_length(4, 0xFFFFFFFF, 0)  # 0: we announced no limit (PS3.8 D.1)


def test_check_pdu_length_refuses_an_oversize_associate_request():
    check_pdu_length(1, MAX_CONTROL_PDU_LENGTH, 16384)
    with pytest.raises(PDUProcessingError):
        check_pdu_length(1, MAX_CONTROL_PDU_LENGTH + 1, 0)
    with pytest.raises(PDUProcessingError):
        check_pdu_length(2, 0xFFFFFFFF, 0)


def test_check_pdu_length_refuses_fixed_size_pdus_of_another_length_and_unknown_types():
    for pdu_type in (3, 5, 6, 7):
        check_pdu_length(pdu_type, 4, 0)
        with pytest.raises(PDUProcessingError):
            check_pdu_length(pdu_type, 5, 0)
    with pytest.raises(PDUProcessingError) as caught:
        check_pdu_length(9, 4, 0)
    assert caught.value.reason == 1


def test_framer_yields_whole_pdus_from_byte_by_byte_input():
    stream = b"".join(p.encode() for p in PDUS[:3] + PDUS[6:])
    framer = PDUFramer(max_pdu_length=0)
    out = []
    for i in range(0, len(stream), 7):
        framer.feed(stream[i:i + 7])
        while (raw := framer.next_pdu()) is not None:
            out.append(decode_pdu(raw))
    assert out == PDUS[:3] + PDUS[6:]
    assert framer.buffered == 0


def test_framer_refuses_an_oversize_p_data_from_its_header_alone():
    framer = PDUFramer(max_pdu_length=16384)
    framer.feed(bytes.fromhex("04 00 FFFFFFFF"))
    with pytest.raises(PDUProcessingError):
        framer.next_pdu()
    with pytest.raises(PDUProcessingError):  # stays refused
        framer.next_pdu()


def test_framer_waits_for_the_rest_of_a_pdu_and_reports_what_it_needs():
    raw = AReleaseRqPDU().encode()
    framer = PDUFramer(16384)
    framer.feed(raw[:3])
    assert framer.next_pdu() is None and framer.bytes_needed == 3
    framer.feed(raw[3:8])
    assert framer.next_pdu() is None and framer.bytes_needed == 2
    framer.feed(raw[8:] + raw)
    assert framer.next_pdu() == raw
    assert framer.next_pdu() == raw
    assert framer.next_pdu() is None


def test_pdu_types_registry_has_the_seven_pdus():
    assert sorted(pdu.PDU_TYPES) == [1, 2, 3, 4, 5, 6, 7]
