"""The fast identifier codec gives exactly pydicom's bytes and pydicom's Dataset, or declines.

Every case is checked against pydicom itself (``write_dataset`` / ``read_dataset``) in Implicit
and Explicit VR Little Endian, over generated identifiers: PN with ^ and =, DA/TM/UI/LO/SH/CS/
IS/DS/US/UL/SS/SL/AE/LT/ST/UT/UC/UR values, empty values, odd lengths, multi-values, non-ASCII
text with and without Specific Character Set ISO_IR 192/100, sequences and private elements.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom import config as pydicom_config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from dicomdesk.net.dataset_codec import (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
                                         decode_identifier, encode_identifier, raw_text_element)
from dicomdesk.net.dataset_encoding import decode_data_set

SYNTAXES = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)

#: (tag, VR) of the generated elements: every plain VR the codec handles.
TEXT_TAGS = [
    (0x00080050, "SH"),  # AccessionNumber
    (0x00080052, "CS"),  # QueryRetrieveLevel
    (0x00080054, "AE"),  # RetrieveAETitle
    (0x00080061, "CS"),  # ModalitiesInStudy
    (0x00080090, "PN"),  # ReferringPhysicianName
    (0x00081030, "LO"),  # StudyDescription
    (0x00081190, "UR"),  # RetrieveURL
    (0x00100010, "PN"),  # PatientName
    (0x00100020, "LO"),  # PatientID
    (0x00101010, "AS"),  # PatientAge
    (0x001021B0, "LT"),  # AdditionalPatientHistory
    (0x00080081, "ST"),  # InstitutionAddress
    (0x00181030, "LO"),  # ProtocolName
    (0x0020000D, "UI"),  # StudyInstanceUID
    (0x00200010, "SH"),  # StudyID
    (0x00200011, "IS"),  # SeriesNumber
    (0x00180050, "DS"),  # SliceThickness
    (0x00080020, "DA"),  # StudyDate
    (0x00080030, "TM"),  # StudyTime
    (0x0008002A, "DT"),  # AcquisitionDateTime
    (0x0040A160, "UT"),  # TextValue
    (0x00080119, "UC"),  # LongCodeValue
]
INT_TAGS = [(0x00280010, "US"), (0x00280011, "US"),  # Rows, Columns
            (0x00081161, "UL"), (0x00186020, "SL"), (0x00189219, "SS")]

#: VRs whose values use the Specific Character Set (PS3.5 6.1.2.3); others are ASCII only.
CHARSET_VRS = ("SH", "LO", "LT", "ST", "UT", "UC", "PN")
ALPHABET = "AZaz09^=.-_ \\*?"
NON_ASCII = "éÅßü漢字"
INT_RANGES = {"US": (0, 0xFFFF), "UL": (0, 0xFFFFFFFF), "SL": (-2 ** 31, 2 ** 31 - 1),
              "SS": (-2 ** 15, 2 ** 15 - 1)}


@pytest.fixture(autouse=True)
def lenient_values(monkeypatch):
    """Values are random bytes, not valid DICOM: compare encodings, not validation warnings."""
    monkeypatch.setattr(pydicom_config.settings, "reading_validation_mode", pydicom_config.IGNORE)
    monkeypatch.setattr(pydicom_config.settings, "writing_validation_mode", pydicom_config.IGNORE)


def pydicom_bytes(ds: Dataset, ts: str) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = ts == IMPLICIT_VR_LITTLE_ENDIAN
    fp.is_little_endian = True
    write_dataset(fp, ds)
    return fp.getvalue()


def pydicom_decode(raw: bytes, ts: str) -> Dataset:
    return read_dataset(io.BytesIO(raw), ts == IMPLICIT_VR_LITTLE_ENDIAN, True)


def text_value(vr: str, non_ascii: bool):
    alphabet = ALPHABET + (NON_ASCII if non_ascii else "")
    if vr == "UI":
        alphabet = "0123456789." + ("\0 " if not non_ascii else "")
    elif vr == "IS":
        number = st.from_regex(r"\A[+-]?[0-9]{1,8}\Z")
        return st.one_of(st.none(), st.integers(-2 ** 31, 2 ** 31 - 1), number,
                         st.lists(number, min_size=2, max_size=3))
    elif vr == "DS":
        number = st.from_regex(r"\A[+-]?[0-9]{1,5}(\.[0-9]{1,4})?([eE][+-]?[0-9])?\Z")
        return st.one_of(st.none(), number, st.lists(number, min_size=2, max_size=3))
    single = st.text(alphabet, max_size=20)
    return st.one_of(st.none(), single, st.lists(st.text(alphabet, min_size=1, max_size=8),
                                                 min_size=2, max_size=3))


@st.composite
def identifiers(draw, non_ascii: bool = False):
    ds = Dataset()
    charset = draw(st.sampled_from([None, "ISO_IR 192", "ISO_IR 100", "ISO_IR 6", "ISO_IR 144"]))
    if charset is not None:
        ds.add(DataElement(0x00080005, "CS", charset))
    for tag, vr in draw(st.lists(st.sampled_from(TEXT_TAGS), max_size=12, unique=True)):
        value = draw(text_value(vr, non_ascii and vr in CHARSET_VRS
                                and charset in ("ISO_IR 192", "ISO_IR 100")))
        if charset == "ISO_IR 100" and isinstance(value, str):
            value = value.encode("latin_1", "replace").decode("latin_1")
        if charset == "ISO_IR 100" and isinstance(value, list):
            value = [v.encode("latin_1", "replace").decode("latin_1") for v in value]
        ds.add(DataElement(tag, vr, value, validation_mode=pydicom_config.IGNORE))
    for tag, vr in draw(st.lists(st.sampled_from(INT_TAGS), max_size=3, unique=True)):
        low, high = INT_RANGES[vr]
        value = draw(st.one_of(st.none(), st.integers(low, high),
                               st.lists(st.integers(low, high), min_size=2, max_size=3)))
        ds.add(DataElement(tag, vr, value, validation_mode=pydicom_config.IGNORE))
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
        item = Dataset()
        item.ReferencedSOPInstanceUID = "1.2.3"
        ds.ReferencedStudySequence = [item]
    return ds


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(identifiers(), st.sampled_from(SYNTAXES))
def test_encoded_identifier_equals_pydicoms_encoding(ds, ts):
    expected = pydicom_bytes(ds, ts)
    fast = encode_identifier(ds, ts)
    if fast is not None:
        assert fast == expected


@FAST
@given(identifiers(non_ascii=True), st.sampled_from(SYNTAXES))
def test_encoding_with_non_ascii_text_equals_pydicom_or_declines(ds, ts):
    fast = encode_identifier(ds, ts)
    if fast is not None:
        assert fast == pydicom_bytes(ds, ts)


def _state(ds):
    """A Dataset's instance attributes other than its elements (compared below by value)."""
    return {k: v for k, v in vars(ds).items() if k != "_dict"}


def test_decoded_identifiers_share_no_mutable_state():
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "P1"
    raw = pydicom_bytes(ds, IMPLICIT_VR_LITTLE_ENDIAN)
    first = decode_identifier(raw, IMPLICIT_VR_LITTLE_ENDIAN)
    second = decode_identifier(raw, IMPLICIT_VR_LITTLE_ENDIAN)
    assert first is not None and second is not None
    for name, value in vars(first).items():
        if isinstance(value, (dict, list, set)):
            assert value is not vars(second)[name], name
    first.PatientID = "CHANGED"
    assert second.PatientID != "CHANGED"


@FAST
@given(identifiers(non_ascii=True), st.sampled_from(SYNTAXES))
def test_decoded_identifier_equals_pydicoms_decoding(ds, ts):
    raw = pydicom_bytes(ds, ts)
    expected = pydicom_decode(raw, ts)
    fast = decode_identifier(raw, ts)
    if fast is not None:
        # the same instance state as pydicom's reader gives (the Dataset is built directly)
        assert _state(fast) == _state(expected)
        assert fast == expected
        assert fast.original_encoding == expected.original_encoding
        assert fast.original_character_set == expected.original_character_set
        for elem in expected:  # every value, converted by pydicom, and its VR
            assert fast[elem.tag].VR == elem.VR
            assert fast[elem.tag].value == elem.value
    assert decode_data_set(raw, ts) == expected if raw else True


@FAST
@given(identifiers(), st.sampled_from(SYNTAXES), st.sampled_from(SYNTAXES))
def test_reencoding_a_decoded_identifier_equals_pydicom_in_either_syntax(ds, ts_in, ts_out):
    raw = pydicom_bytes(ds, ts_in)
    decoded = decode_identifier(raw, ts_in)
    if decoded is None:
        return
    fast = encode_identifier(decoded, ts_out)
    if fast is not None:
        assert fast == pydicom_bytes(pydicom_decode(raw, ts_in), ts_out)


@FAST
@given(st.lists(st.tuples(st.sampled_from(TEXT_TAGS),
                          st.one_of(st.text(ALPHABET + NON_ASCII, max_size=16),
                                    st.lists(st.text(ALPHABET + NON_ASCII, max_size=6), max_size=3))),
                max_size=10, unique_by=lambda t: t[0]), st.sampled_from(SYNTAXES),
       st.sampled_from(["ascii", "utf_8"]))
# A multi-valued UI (UID list matching) was not taken as canonical: the fast path gave up and
# this property failed whenever Hypothesis happened to draw one (seen in a full-suite run).
@example(items=[((0x0020000D, "UI"), ["0", "0"])], ts=IMPLICIT_VR_LITTLE_ENDIAN, codec="ascii")
def test_raw_text_elements_equal_pydicom_elements(items, ts, codec):
    built, fast = Dataset(), Dataset()
    all_ascii = True
    if codec == "utf_8":
        built.SpecificCharacterSet = fast.SpecificCharacterSet = "ISO_IR 192"
    for (tag, vr), text in items:
        if vr in ("IS", "DS"):
            text = "".join(c for c in text if c.isdigit())
        raw = raw_text_element(tag, vr, text, codec)
        if raw is None:
            continue
        fast._dict[raw.tag] = raw
        built.add(DataElement(tag, vr, text, validation_mode=pydicom_config.IGNORE))
        all_ascii = all_ascii and all(t.isascii() for t in ([text] if isinstance(text, str) else text))
    encoded = encode_identifier(fast, ts)  # before the comparison converts the raw elements
    assert fast == built
    expected = pydicom_bytes(built, ts)
    if all_ascii:
        assert encoded == expected
    else:
        assert encoded is None or encoded == expected


def test_a_plain_identifier_takes_the_fast_path_both_ways():
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Doe^John=Doe^J"
    ds.PatientID = "P1"
    ds.StudyInstanceUID = "1.2.3"
    ds.StudyDate = ""
    ds.NumberOfStudyRelatedInstances = 7
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.Rows = 512
    for ts in SYNTAXES:
        raw = encode_identifier(ds, ts)
        assert raw == pydicom_bytes(ds, ts)
        decoded = decode_identifier(raw, ts)
        assert decoded is not None and decoded == ds


@pytest.mark.parametrize("case", ["sequence", "private", "big endian", "deflated", "non-ascii",
                                  "iso2022", "truncated", "trailing", "odd US", "descending"])
def test_unusual_data_sets_fall_back_to_pydicom(case):
    ds = Dataset()
    ds.PatientID = "P1"
    ts = IMPLICIT_VR_LITTLE_ENDIAN
    if case == "sequence":
        ds.ReferencedStudySequence = [Dataset()]
    elif case == "private":
        ds.add_new(0x00091010, "LO", "x")
    elif case == "non-ascii":
        ds.PatientName = "Dürer"
    elif case == "iso2022":
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    raw = pydicom_bytes(ds, ts)
    if case == "big endian":
        ts = "1.2.840.10008.1.2.2"
    elif case == "deflated":
        ts = "1.2.840.10008.1.2.1.99"
    elif case == "truncated":
        raw = raw[:-1]
    elif case == "trailing":
        raw += b"\0\0\0"
    elif case == "odd US":
        raw += b"\x28\x00\x10\x00\x03\x00\x00\x00\x01\x02\x03\x00"
    elif case == "descending":
        raw = b"\x10\x00\x20\x00\x02\x00\x00\x00P2" + raw
    assert decode_identifier(raw, ts) is None
    if case in ("sequence", "non-ascii", "iso2022"):
        assert encode_identifier(ds, IMPLICIT_VR_LITTLE_ENDIAN) is None
    if case == "private":  # the element knows its VR: encoding it is plain
        assert encode_identifier(ds, IMPLICIT_VR_LITTLE_ENDIAN) == raw
