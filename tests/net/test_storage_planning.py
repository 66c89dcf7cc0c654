"""Pure parts of the Storage SCU (PS3.4 Annex B): context planning, Part-10 headers, conversion."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pydicom.data
from pydicom.dataset import Dataset

from dicomdesk.net import uids
from dicomdesk.net.dataset_encoding import encode_data_set
from dicomdesk.net.negotiation import PContextDef
from dicomdesk.net.sopclass.storage import (
    FALLBACK_TRANSFER_SYNTAXES,
    MAX_CONTEXTS,
    Part10Error,
    check_structure,
    choose_context,
    converted_dataset,
    plan_contexts,
    plan_for,
    read_file_meta,
    read_part10_header,
)

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
CT, MR = uids.CT_IMAGE_STORAGE, uids.MR_IMAGE_STORAGE
JPEG = "1.2.840.10008.1.2.4.50"


def test_each_file_syntax_gets_its_own_context_plus_one_uncompressed_fallback_per_class():
    plans = plan_contexts([(CT, JPEG), (CT, JPEG), (CT, uids.EXPLICIT_VR_LITTLE_ENDIAN), (MR, JPEG)])
    assert len(plans) == 1
    assert plans[0].contexts == [
        (CT, (JPEG,)), (CT, (uids.EXPLICIT_VR_LITTLE_ENDIAN,)), (CT, FALLBACK_TRANSFER_SYNTAXES),
        (MR, (JPEG,)), (MR, FALLBACK_TRANSFER_SYNTAXES)]


def test_no_fallback_when_both_uncompressed_syntaxes_have_their_own_context():
    plans = plan_contexts([(CT, uids.EXPLICIT_VR_LITTLE_ENDIAN), (CT, uids.IMPLICIT_VR_LITTLE_ENDIAN)])
    assert plans[0].contexts == [(CT, (uids.EXPLICIT_VR_LITTLE_ENDIAN,)),
                                 (CT, (uids.IMPLICIT_VR_LITTLE_ENDIAN,))]


def test_more_than_128_contexts_are_split_over_associations_keeping_each_class_together():
    classes = [f"1.2.3.{n}" for n in range(100)]
    plans = plan_contexts([(c, JPEG) for c in classes])  # 2 contexts per class: 200
    assert len(plans) == 2
    assert all(len(p.contexts) <= MAX_CONTEXTS for p in plans)
    assert len(plans[0].contexts) == 128
    assert sum(len(p.contexts) for p in plans) == 200
    for c in classes:
        holders = [i for i, p in enumerate(plans) if c in p.sop_classes]
        assert len(holders) == 1
        assert plan_for(plans, c, JPEG) == holders[0]


def test_plan_for_unknown_pair_is_none():
    assert plan_for(plan_contexts([(CT, JPEG)]), MR, JPEG) is None


def test_choose_context_prefers_the_files_own_syntax():
    contexts = [PContextDef(1, CT, uids.IMPLICIT_VR_LITTLE_ENDIAN), PContextDef(3, CT, JPEG)]
    assert choose_context(contexts, JPEG) == (contexts[1], None)


def test_choose_context_converts_between_uncompressed_syntaxes():
    contexts = [PContextDef(1, CT, uids.IMPLICIT_VR_LITTLE_ENDIAN)]
    ctx, why = choose_context(contexts, uids.EXPLICIT_VR_BIG_ENDIAN)
    assert ctx is contexts[0] and why is None


def test_choose_context_refuses_a_compressed_file_naming_its_syntax():
    ctx, why = choose_context([PContextDef(1, CT, uids.IMPLICIT_VR_LITTLE_ENDIAN)], JPEG)
    assert ctx is None
    assert "JPEG Baseline" in why and JPEG in why


def test_part10_header_gives_syntax_uids_and_data_set_offset():
    path = TEST_FILES / "CT_small.dcm"
    header = read_part10_header(path)
    ds = pydicom.dcmread(path)
    assert header.transfer_syntax == ds.file_meta.TransferSyntaxUID
    assert header.sop_instance_uid == ds.SOPInstanceUID
    raw = path.read_bytes()
    # The bytes from the offset are the data set: pydicom decodes them to the same elements.
    body = pydicom.filereader.read_dataset(io.BytesIO(raw[header.data_offset:]), False, True)
    assert body.SOPInstanceUID == ds.SOPInstanceUID


def test_file_meta_parsing_ignores_a_missing_group_length():
    with open(TEST_FILES / "no_meta_group_length.dcm", "rb") as fp:
        values, offset = read_file_meta(fp)
    assert values[0x00020010] == uids.IMPLICIT_VR_LITTLE_ENDIAN
    assert offset > 132


def test_bare_data_set_without_meta_is_read_as_implicit_little_endian(tmp_path: Path):
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4"
    path = tmp_path / "bare.dcm"
    path.write_bytes(encode_data_set(ds, uids.IMPLICIT_VR_LITTLE_ENDIAN))
    header = read_part10_header(path)
    assert (header.transfer_syntax, header.data_offset, header.has_meta) == \
        (uids.IMPLICIT_VR_LITTLE_ENDIAN, 0, False)
    assert header.sop_instance_uid == "1.2.3.4"


def test_truncated_file_is_detected_without_reading_values():
    path = TEST_FILES / "MR_truncated.dcm"
    try:
        check_structure(path, read_part10_header(path))
    except Part10Error as exc:
        assert "(7FE0,0010)" in str(exc)
    else:
        raise AssertionError("truncation not detected")


def test_intact_file_passes_the_structure_check():
    for name in ("CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm"):
        path = TEST_FILES / name
        check_structure(path, read_part10_header(path))


def test_big_endian_file_converted_to_little_endian_keeps_pixel_values():
    path = TEST_FILES / "MR_small_bigendian.dcm"
    converted = converted_dataset(path, uids.IMPLICIT_VR_LITTLE_ENDIAN)
    decoded = pydicom.filereader.read_dataset(
        io.BytesIO(encode_data_set(converted, uids.IMPLICIT_VR_LITTLE_ENDIAN)), True, True)
    decoded.file_meta = pydicom.dataset.FileMetaDataset()
    decoded.file_meta.TransferSyntaxUID = uids.IMPLICIT_VR_LITTLE_ENDIAN
    original = pydicom.dcmread(path)
    assert decoded.Rows == original.Rows
    assert (decoded.pixel_array == original.pixel_array).all()
