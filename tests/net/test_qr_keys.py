"""Pure parts of Query/Retrieve: identifiers from user keys, models, sub-operation counts."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from dicomdesk.commands.query import match_to_json, parse_keys
from dicomdesk.net import uids
from dicomdesk.net.dataset_encoding import encode_data_set
from dicomdesk.net.negotiation import PContextDef
from dicomdesk.net.sopclass.retrieve import SubOperations, _Item, choose_context, describe_item
from dicomdesk.operations.query import build_identifier, parse_key, resolve_model


def test_identifier_from_keywords_carries_values_and_level():
    ds = build_identifier("study", {"PatientName": "DOE*", "StudyDate": "20200101-20201231"})
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "DOE*"
    assert ds.StudyDate == "20200101-20201231"


def test_identifier_accepts_tag_form_keys_with_or_without_parentheses():
    ds = build_identifier("PATIENT", {"0010,0020": "ID1", "(0010,0010)": "", "00100030": ""})
    assert ds.PatientID == "ID1"
    assert ds[0x00100010].VR == "PN" and ds.PatientName == ""
    assert ds[0x00100030].VR == "DA"


def test_empty_values_are_universal_return_keys_of_every_vr():
    ds = build_identifier("STUDY", {"StudyInstanceUID": "", "NumberOfStudyRelatedInstances": "",
                                    "Rows": "", "ReferencedStudySequence": ""})
    assert ds.StudyInstanceUID == ""
    assert ds.NumberOfStudyRelatedInstances == ""
    assert ds.Rows is None
    assert list(ds.ReferencedStudySequence) == []
    encoded = encode_data_set(ds, uids.IMPLICIT_VR_LITTLE_ENDIAN)
    assert len(encoded) > 0  # every element encodes (zero length) without a warning


def test_wildcards_and_ranges_are_kept_unvalidated():
    ds = build_identifier("SERIES", {"Modality": "C*", "SeriesTime": "0800-1200"})
    assert ds.Modality == "C*"
    assert ds.SeriesTime == "0800-1200"
    encode_data_set(ds, uids.EXPLICIT_VR_LITTLE_ENDIAN)


def test_unknown_keyword_is_a_clear_error_with_a_hint():
    with pytest.raises(ValueError, match="unknown attribute keyword 'PatientNam'.*PatientName"):
        build_identifier("PATIENT", {"PatientNam": "X"})


def test_unknown_tag_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown DICOM tag '0009,0010'"):
        build_identifier("PATIENT", {"0009,0010": "X"})


def test_numeric_key_needs_a_number():
    with pytest.raises(ValueError, match="Rows"):
        build_identifier("IMAGE", {"Rows": "many"})
    assert build_identifier("IMAGE", {"Rows": "512"}).Rows == 512


def test_dataset_keys_are_copied_not_mutated():
    keys = Dataset()
    keys.PatientID = "X"
    ds = build_identifier("image", keys)
    assert ds.QueryRetrieveLevel == "IMAGE" and "QueryRetrieveLevel" not in keys


def test_non_ascii_value_selects_utf8():
    assert build_identifier("PATIENT", {"PatientName": "Müller*"}).SpecificCharacterSet == "ISO_IR 192"


def test_bad_level_is_refused():
    with pytest.raises(ValueError, match="query level"):
        build_identifier("FRAME", {})


def test_parse_key_returns_keyword_for_tags():
    assert parse_key("0010,0020") == (0x00100020, "LO", "PatientID")


@pytest.mark.parametrize(("level", "model", "expected"), [
    ("PATIENT", None, "patient"), ("STUDY", None, "study"), ("IMAGE", None, "study"),
    ("series", "patient", "patient"), ("STUDY", "Study", "study")])
def test_model_defaults_to_study_or_patient_for_patient_level(level, model, expected):
    assert resolve_model(level, model) == expected


def test_study_root_has_no_patient_level():
    with pytest.raises(ValueError, match="no PATIENT level"):
        resolve_model("PATIENT", "study")


def test_sub_operation_counts_decide_final_status_and_failed_list():
    counts = SubOperations(remaining=3)
    counts.record(0x0000, "1.1")
    counts.record(0xA700, "1.2")
    counts.record(0xB000, "1.3")
    assert (counts.remaining, counts.completed, counts.failed, counts.warning) == (0, 1, 1, 1)
    assert counts.final_status("C-MOVE") == 0xB000
    assert counts.identifier().FailedSOPInstanceUIDList == "1.2"
    assert SubOperations(remaining=1).final_status("C-GET") == 0x0000
    all_failed = SubOperations(remaining=1)
    all_failed.record(0xC000, "9")
    assert all_failed.final_status("C-GET") == 0xA702
    assert SubOperations(remaining=0).identifier() is None


def test_context_choice_prefers_own_syntax_then_uncompressed():
    ct = uids.STORAGE_SOP_CLASSES[0]
    contexts = [PContextDef(1, ct, uids.IMPLICIT_VR_LITTLE_ENDIAN),
                PContextDef(3, ct, uids.JPEG_LS_LOSSLESS_IMAGE_COMPRESSION)]
    jpeg_ls = _Item("f", ct, "1", uids.JPEG_LS_LOSSLESS_IMAGE_COMPRESSION)
    explicit = _Item("f", ct, "1", uids.EXPLICIT_VR_LITTLE_ENDIAN)
    rle = _Item("f", ct, "1", uids.RLE_LOSSLESS)
    assert choose_context(contexts, jpeg_ls).id == 3
    assert choose_context(contexts, explicit).id == 1
    assert choose_context(contexts, rle) is None
    assert choose_context(contexts, _Item("f", "1.2.3", "1", None)) is None


def test_in_memory_dataset_needs_no_particular_syntax():
    ds = Dataset()
    ds.SOPClassUID = uids.STORAGE_SOP_CLASSES[0]
    ds.SOPInstanceUID = "1.2.3"
    item = describe_item(ds)
    assert (item.sop_class, item.sop_instance, item.transfer_syntax) == (ds.SOPClassUID, "1.2.3", None)


def test_cli_keys_parse_in_order_with_empty_values():
    assert list(parse_keys(["PatientName=DOE*", "0010,0020=", "StudyDate=2020-"]).items()) == [
        ("PatientName", "DOE*"), ("0010,0020", ""), ("StudyDate", "2020-")]


def test_match_json_uses_keywords_and_plain_values():
    ds = Dataset()
    ds.PatientName = "DOE^JOHN"
    ds.NumberOfStudyRelatedInstances = "3"
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.StudyDate = ""
    assert match_to_json(ds) == {"StudyDate": None, "ModalitiesInStudy": ["CT", "MR"],
                                 "PatientName": "DOE^JOHN", "NumberOfStudyRelatedInstances": 3}
