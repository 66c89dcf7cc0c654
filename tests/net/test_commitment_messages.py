"""Storage Commitment data sets (PS3.4 J.3.2.1 Action Information, J.3.3.1 Event Information)."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.sequence import Sequence

from dicomdesk.net import statuses, uids
from dicomdesk.net.dataset_encoding import encode_data_set
from dicomdesk.net.sopclass.commitment import (
    EVENT_ALL_SUCCESSFUL,
    EVENT_FAILURES_EXIST,
    CommitmentMessageError,
    StorageCommitment,
    build_action_information,
    build_event_information,
    failure_reason_text,
    parse_action_information,
    parse_event_information,
)

CT = uids.CT_IMAGE_STORAGE
MR = uids.MR_IMAGE_STORAGE


def _over_the_wire(ds: Dataset) -> Dataset:
    """Encode as a DIMSE data set would be (Implicit VR LE) and decode it again."""
    raw = encode_data_set(ds, uids.IMPLICIT_VR_LITTLE_ENDIAN)
    return read_dataset(BytesIO(raw), is_implicit_VR=True, is_little_endian=True)


def test_action_information_round_trips_transaction_and_references() -> None:
    refs = [(CT, "1.2.3.1"), (MR, "1.2.3.2")]
    ds = _over_the_wire(build_action_information("1.2.99", refs))
    assert ds.TransactionUID == "1.2.99"
    assert parse_action_information(ds) == ("1.2.99", refs)


def test_action_information_without_transaction_uid_is_missing_attribute() -> None:
    ds = build_action_information("1.2.99", [(CT, "1.2.3.1")])
    del ds.TransactionUID
    with pytest.raises(CommitmentMessageError) as info:
        parse_action_information(ds)
    assert info.value.status == statuses.MISSING_ATTRIBUTE


def test_action_information_with_empty_reference_sequence_is_missing_attribute() -> None:
    ds = Dataset()
    ds.TransactionUID = "1.2.99"
    ds.ReferencedSOPSequence = Sequence([])
    with pytest.raises(CommitmentMessageError) as info:
        parse_action_information(ds)
    assert info.value.status == statuses.MISSING_ATTRIBUTE


def test_undecodable_action_information_is_invalid_argument_value() -> None:
    with pytest.raises(CommitmentMessageError) as info:
        parse_action_information(b"\x00\x01")
    assert info.value.status == statuses.INVALID_ARGUMENT_VALUE


def test_all_committed_is_event_type_1_without_failed_sequence() -> None:
    event_type, ds = build_event_information("1.2.99", [(CT, "1.2.3.1")], [])
    assert event_type == EVENT_ALL_SUCCESSFUL == 1
    assert "FailedSOPSequence" not in ds
    assert parse_event_information(_over_the_wire(ds)) == ("1.2.99", [(CT, "1.2.3.1")], [])


def test_failures_are_event_type_2_with_failure_reason() -> None:
    failed = [(MR, "1.2.3.2", StorageCommitment.NO_SUCH_OBJECT_INSTANCE)]
    event_type, ds = build_event_information("1.2.99", [(CT, "1.2.3.1")], failed)
    assert event_type == EVENT_FAILURES_EXIST == 2
    wire = _over_the_wire(ds)
    assert wire.FailedSOPSequence[0].FailureReason == 0x0112
    assert parse_event_information(wire) == ("1.2.99", [(CT, "1.2.3.1")], failed)


def test_nothing_committed_omits_referenced_sop_sequence() -> None:
    _, ds = build_event_information("1.2.99", [], [(CT, "1.2.3.1", 0x0110)])
    assert "ReferencedSOPSequence" not in ds
    assert parse_event_information(ds) == ("1.2.99", [], [(CT, "1.2.3.1", 0x0110)])


def test_failure_without_reason_defaults_to_processing_failure() -> None:
    _, ds = build_event_information("1.2.99", [], [(CT, "1.2.3.1")])
    assert ds.FailedSOPSequence[0].FailureReason == StorageCommitment.PROCESSING_FAILURE


def test_event_information_without_transaction_uid_is_refused() -> None:
    with pytest.raises(CommitmentMessageError):
        parse_event_information(Dataset())


def test_failure_reasons_are_those_of_ps3_3_c_14_1_1() -> None:
    assert (StorageCommitment.PROCESSING_FAILURE, StorageCommitment.NO_SUCH_OBJECT_INSTANCE,
            StorageCommitment.RESOURCE_LIMITATION, StorageCommitment.REFERENCED_SOP_CLASS_NOT_SUPPORTED,
            StorageCommitment.CLASS_INSTANCE_CONFLICT, StorageCommitment.DUPLICATE_TRANSACTION_UID) == (
        0x0110, 0x0112, 0x0213, 0x0122, 0x0119, 0x0131)
    assert failure_reason_text(0x0112) == "0x0112 No such object instance"
    assert "unknown" in failure_reason_text(0x9999)


def test_storage_commitment_serves_the_push_model_class() -> None:
    assert StorageCommitment().sop_classes == ["1.2.840.10008.1.20.1"]
    assert uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE == "1.2.840.10008.1.20.1.1"
