"""The hand-written header scans give exactly what pydicom's reader gives (or step aside).

``part10.scan_header`` feeds two hot paths: ``operations.files.inspect_file`` (the storage
SCU's scan of every file) and ``Archive.commit_incoming`` (the archive's header read of every
received object). Each must equal pydicom's ``dcmread`` on the same file, or return None and
let pydicom decide: these tests compare them on explicit/implicit/big-endian files, with
sequences of defined and undefined length before the wanted elements, a non-ASCII character
set, and files the fast path must refuse (deflated, truncated, no preamble).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, generate_uid)

from dicomdesk.archive import header_values, headers
from dicomdesk.archive.index import KEYS, InstanceRecord
from dicomdesk.archive.matching import value_text
from dicomdesk.net.part10 import scan_header
from dicomdesk.operations import files

CT = "1.2.840.10008.5.1.4.1.1.2"

def _dataset(charset: str | None, with_sequences: bool) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = "20240102", "101112.5 "
    ds.AccessionNumber = "ACC 1"
    ds.Modality = "CT"
    if with_sequences:
        item = Dataset()
        item.ReferencedSOPClassUID = CT
        item.ReferencedSOPInstanceUID = generate_uid()
        ds.ReferencedStudySequence = Sequence([item])
        ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.PatientName = "Müller^Jörg" if charset == "ISO_IR 100" else "Doe^John^^Dr"
    ds.PatientID = "ID 42"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "7"
    ds.SeriesNumber = "3"
    ds.InstanceNumber = "012"
    ds.StudyDescription = "Chest \\ abdomen"
    ds.SeriesDescription = "axial"
    ds.Rows, ds.Columns = 2, 2
    ds.BitsAllocated = 16
    ds.PixelRepresentation = 0
    ds.add_new(0x7FE00010, "OW", b"\0" * 8)
    return ds

def _write(path: Path, ts: str, *, charset: str | None = "ISO_IR 100", with_sequences: bool = True,
           undefined_lengths: bool = False) -> Path:
    ds = _dataset(charset, with_sequences)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ts
    if undefined_lengths:
        for keyword in ("ReferencedStudySequence", "ReferencedImageSequence"):
            ds[keyword].is_undefined_length = True
            for item in ds[keyword].value:
                item.is_undefined_length_sequence_item = True
    ds.save_as(path, enforce_file_format=True)
    return path

VARIANTS = [
    (ExplicitVRLittleEndian, False), (ExplicitVRLittleEndian, True),
    (ImplicitVRLittleEndian, False), (ImplicitVRLittleEndian, True),
    (ExplicitVRBigEndian, False), (ExplicitVRBigEndian, True),
]

@pytest.mark.parametrize("ts,undefined", VARIANTS)
@pytest.mark.parametrize("charset", [None, "ISO_IR 100"])
def test_archive_header_scan_equals_pydicom_reading(tmp_path, ts, undefined, charset):
    path = _write(tmp_path / "a.dcm", ts, charset=charset, undefined_lengths=undefined)
    fast = headers.scan_path(path)
    assert fast is not None, "the plain layout must take the fast path"
    slow = dcmread(path, stop_before_pixels=True, specific_tags=headers.HEADER_TAGS, defer_size=1024)
    facts = dict(transfer_syntax=ts, file_size=1, path="x", received_at="t")
    assert InstanceRecord.from_dataset(fast, **facts) == InstanceRecord.from_dataset(slow, **facts)
    assert fast.file_meta["TransferSyntaxUID"] == str(slow.file_meta.TransferSyntaxUID)
    built = fast.dataset()  # what pydicom's conversion sees when a value needs it
    assert sorted(built.keys()) == sorted(slow.keys())
    for keyword in KEYS:
        assert value_text(fast.get(keyword)) == value_text(slow.get(keyword)), keyword
    assert str(built.file_meta.TransferSyntaxUID) == str(slow.file_meta.TransferSyntaxUID)

@pytest.mark.parametrize("ts,undefined", VARIANTS)
@pytest.mark.parametrize("charset", [None, "ISO_IR 100"])
def test_inspect_file_fast_path_equals_the_pydicom_path(tmp_path, monkeypatch, ts, undefined, charset):
    path = _write(tmp_path / "a.dcm", ts, charset=charset, undefined_lengths=undefined)
    fast = files._inspect_fast(path, path.stat().st_size)
    assert fast is not None, "the plain layout must take the fast path"
    monkeypatch.setattr(files, "_inspect_fast", lambda p, size: None)
    assert fast == files.inspect_file(path)

def _deflated(path: Path) -> Path:
    plain = _write(path.with_suffix(".plain"), ExplicitVRLittleEndian)
    ds = dcmread(plain)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path

def _truncated_header(path: Path) -> Path:
    full = _write(path.with_suffix(".full"), ExplicitVRLittleEndian)
    data = full.read_bytes()
    # Cut inside the value of the data set's SOP Instance UID (its last occurrence; the meta
    # holds the first): a fixed offset could fall on an element boundary — the UIDs are
    # random and of random length — and a file ending there is a plain, shorter data set.
    uid = dcmread(full, stop_before_pixels=True).SOPInstanceUID.encode()
    path.write_bytes(data[:data.rindex(uid) + len(uid) // 2])
    return path


def _truncated_pixels(path: Path) -> Path:
    data = _write(path.with_suffix(".full"), ExplicitVRLittleEndian).read_bytes()
    path.write_bytes(data[:-3])  # the header is whole, Pixel Data is cut
    return path

def _no_preamble(path: Path) -> Path:
    data = _write(path.with_suffix(".full"), ExplicitVRLittleEndian).read_bytes()
    path.write_bytes(data[128:])
    return path

@pytest.mark.parametrize("make", [_deflated, _truncated_header, _no_preamble])
def test_header_scan_steps_aside_for_files_that_are_not_plain(tmp_path, make):
    path = make(tmp_path / "odd.dcm")
    with open(path, "rb") as fp:
        assert scan_header(fp, frozenset({0x00080018})) is None
    assert headers.scan_path(path) is None
    if make is not _deflated:  # a deflated file's header is scanned once inflated (bounded)
        assert files._inspect_fast(path, path.stat().st_size) is None


@pytest.mark.parametrize("make", [_deflated, _truncated_pixels, _no_preamble])
def test_inspect_file_of_an_odd_file_is_what_the_pydicom_path_says(tmp_path, monkeypatch, make):
    path = make(tmp_path / "odd.dcm")
    # A deflated file takes the fast path through its first inflated bytes (issue 11: the
    # pydicom path inflates it all in memory); the others step aside.
    assert (files._inspect_fast(path, path.stat().st_size) is not None) == (make is _deflated)
    general = files.inspect_file(path)
    monkeypatch.setattr(files, "_inspect_fast", lambda p, size: None)
    assert general == files.inspect_file(path)

def test_header_scan_is_one_read_of_the_file_start(tmp_path):
    """The scan reads the meta group and one block: never the pixel data of a large file."""
    path = _write(tmp_path / "big.dcm", ExplicitVRLittleEndian)
    with open(path, "ab") as fp:  # grow the pixel data far past the scanned block
        fp.write(b"\0" * (1 << 20))
    reads = []

    class Counting:
        def __init__(self, fp):
            self.fp = fp

        def read(self, size=-1):
            data = self.fp.read(size)
            reads.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.fp, name)

    with open(path, "rb") as fp:
        scan = scan_header(Counting(fp), frozenset({0x00080018}))
    assert scan is not None
    assert sum(reads) <= 132 + 512 + 64 * 1024


# -------------------------------------------------- index values read without pydicom
_ASCII_VALUES = st.binary(max_size=24).map(lambda b: bytes(c % 96 + 32 for c in b)) | st.sampled_from(
    [b"", b" ", b"\0", b"12 ", b" 12", b"+7", b"-0", b"1.2.840.10008\0", b"1.2. 3", b"Doe^John ",
     b"A\\B", b"20240101", b"101112.5 ", b"caf\xe9", b"\x1b$B", b"~x~", b"1e3", b"O "])


def _pydicom_values(elements: dict, charset: bytes | None) -> dict[str, str]:
    ds = Dataset()
    if charset is not None:
        ds._dict[Tag(0x00080005)] = RawDataElement(Tag(0x00080005), None, len(charset), charset, 0, True, True)
    ds._dict.update(elements)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about invalid values; the text is what counts
        for keyword in KEYS:
            try:
                out[keyword] = value_text(ds.get(keyword))
            except Exception:  # pragma: no cover - then the fast path must not have answered
                out[keyword] = "<error>"
    return out


def test_index_key_vrs_are_the_dictionary_vrs():
    assert all(dictionary_VR(key.keyword) == key.vr for key in KEYS.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_ASCII_VALUES, implicit=st.booleans(),
       charset=st.sampled_from([None, b"ISO_IR 100", b"ISO_IR 192 ", b"ISO_IR 13", b"\\ISO 2022 IR 87"]))
def test_index_values_read_without_pydicom_equal_pydicom_conversion(raw, implicit, charset):
    elements = {}
    for keyword, key in KEYS.items():
        tag = Tag(tag_for_keyword(keyword))
        elements[tag] = RawDataElement(tag, None if implicit else key.vr, len(raw), raw, 0, implicit, True)
    expected = _pydicom_values(elements, charset)
    ds = Dataset()
    if charset is not None:
        ds._dict[Tag(0x00080005)] = RawDataElement(Tag(0x00080005), None, len(charset), charset, 0, True, True)
    ds._dict.update(elements)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = InstanceRecord.from_dataset(ds, transfer_syntax="", file_size=0, path="", received_at="")
    assert record.values == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_ASCII_VALUES, vr=st.sampled_from(sorted({key.vr for key in KEYS.values()})))
def test_a_value_read_without_pydicom_is_one_pydicom_reads_without_a_warning(raw, vr):
    keyword = next(k for k, key in KEYS.items() if key.vr == vr)
    tag = Tag(tag_for_keyword(keyword))
    elem = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    fast = header_values._plain_value(elem, vr)
    ds = Dataset()
    ds._dict[tag] = elem
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = value_text(ds.get(keyword))
    if fast is not None:
        assert fast == expected
        assert not caught, [str(w.message) for w in caught]
