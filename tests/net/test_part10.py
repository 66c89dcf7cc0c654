"""``net.part10``, the one reader of a file's header, against pydicom on every file of pydicom's
own test set (``pydicom/data/test_files``: images in every transfer syntax, DICOMDIRs, files
broken on purpose, files that are not DICOM at all).

For each file: whether it is a Part-10 file (File Meta Information, preamble), its transfer
syntax, SOP Class and Instance UIDs and data set offset as ``read_part10_header`` reads them
equal what pydicom's reader says; where ours refuses, pydicom's reading shows the same fault;
where the fast ``scan_header`` answers, its elements decode to pydicom's values.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.tag import BaseTag
from pydicom.uid import AllTransferSyntaxes

from dicomdesk.net.dataset_encoding import transfer_syntax_encoding
from dicomdesk.net.part10 import (DEFLATED_TRANSFER_SYNTAXES, SOP_UID_TAGS, Part10Error, encoding_of,
                                  read_file_meta, read_part10_header, scan_header)

ROOT = Path(pydicom.data.__file__).parent / "test_files"
FILES = sorted(p for p in ROOT.rglob("*") if p.is_file())
KEYWORDS = ("SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "PatientName", "PatientID",
            "StudyInstanceUID")
TAGS = frozenset({0x00080005, 0x00080016, 0x00080018, 0x00100010, 0x00100020, 0x0020000D})


def test_the_whole_test_set_is_there():
    assert len(FILES) == 176


def test_the_transfer_syntax_table_agrees_with_pydicom():
    """One table (``encoding_of``, ``DEFLATED_TRANSFER_SYNTAXES``) for every transfer syntax
    pydicom knows; the DIMSE decoder reads data sets with the same."""
    jpip_deflate = ("1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205")  # PS3.5 A.4: deflated too
    for uid in AllTransferSyntaxes:
        assert encoding_of(str(uid)) == (uid.is_implicit_VR, uid.is_little_endian), uid.name
        deflated = uid.is_deflated or str(uid) in jpip_deflate
        assert (str(uid) in DEFLATED_TRANSFER_SYNTAXES) == deflated, uid.name
        assert transfer_syntax_encoding(str(uid) + "\0") == (*encoding_of(str(uid)), deflated)
    assert DEFLATED_TRANSFER_SYNTAXES == {"1.2.840.10008.1.2.1.99", *jpip_deflate}
    assert encoding_of("1.2.3.4.5") == (False, True)  # private: Explicit VR Little Endian


def _text(value: object) -> str:
    return "" if value is None else str(value).strip("\0 ")


class _Pydicom:
    """What pydicom reads of a file: its preamble, File Meta Information and where the data
    set starts (``read_preamble``/``_read_file_meta_info``, as ``dcmread`` does), and the data
    set's header (``dcmread(force=True, stop_before_pixels=True)``), or the error it raised."""

    def __init__(self, path: Path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open(path, "rb") as fp:
                self.preamble = read_preamble(fp, True)
                try:
                    self.meta = _read_file_meta_info(fp)
                    self.meta_error = None
                except Exception as exc:  # noqa: BLE001 - any fault of a broken meta
                    self.meta, self.meta_error = Dataset(), exc
                self.offset = fp.tell()
            try:
                self.ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
                for _ in self.ds:  # values are converted lazily: convert them now
                    pass
                self.error = None
            except Exception as exc:  # noqa: BLE001
                self.ds, self.error = None, exc

    def uid(self, keyword: str, meta_keyword: str) -> str:
        return _text(self.ds.get(keyword)) or _text(self.meta.get(meta_keyword))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_the_reader_agrees_with_pydicom(path):
    theirs = _Pydicom(path)
    with open(path, "rb") as fp:
        try:
            meta = read_file_meta(fp)
            meta_fault = None
        except Part10Error as exc:
            meta, meta_fault = None, exc
    # Part 10 or not: a File Meta Information group where pydicom finds one.
    assert (meta is not None or meta_fault is not None) == (len(theirs.meta) > 0 or theirs.meta_error is not None)
    if meta is not None:
        assert meta[1] == theirs.offset
        assert meta[0].get(0x00020010, "") == _text(theirs.meta.get("TransferSyntaxUID"))
    try:
        ours = read_part10_header(path)
    except Part10Error as exc:
        _refusal_agrees(str(exc), theirs)
        return
    assert theirs.error is None, f"we read {ours}, pydicom fails: {theirs.error!r}"
    assert ours.has_meta == (len(theirs.meta) > 0)
    assert ours.data_offset == theirs.offset
    if ours.has_meta:
        assert ours.transfer_syntax == _text(theirs.meta.TransferSyntaxUID)
    else:  # a bare data set: the encoding pydicom found is the one we guessed
        implicit, little = encoding_of(ours.transfer_syntax)
        assert (implicit, little) == tuple(theirs.ds.original_encoding)
    assert ours.sop_class_uid == theirs.uid("SOPClassUID", "MediaStorageSOPClassUID")
    assert ours.sop_instance_uid == theirs.uid("SOPInstanceUID", "MediaStorageSOPInstanceUID")
    _scan_agrees(path, theirs, ours)


def _refusal_agrees(reason: str, theirs: _Pydicom) -> None:
    """Why ours refuses is visible in pydicom's reading too."""
    if reason == "no SOP Class UID":
        assert theirs.ds is None or theirs.uid("SOPClassUID", "MediaStorageSOPClassUID") == ""
    elif reason == "no SOP Instance UID":
        assert theirs.ds is None or theirs.uid("SOPInstanceUID", "MediaStorageSOPInstanceUID") == ""
    elif reason == "the File Meta Information has no Transfer Syntax UID":
        assert len(theirs.meta) > 0 and "TransferSyntaxUID" not in theirs.meta
    else:  # a damaged meta or data set header: pydicom cannot read it either
        assert theirs.meta_error is not None or theirs.error is not None, reason


def _scan_agrees(path: Path, theirs: _Pydicom, ours) -> None:
    """The fast scan, where it answers, reads what pydicom reads (raw and decoded)."""
    with open(path, "rb") as fp:
        raw = scan_header(fp, SOP_UID_TAGS, raw=True, until_last_tag=True)
        full = scan_header(fp, TAGS)
    if raw is None:
        # Only plain Part-10 files with a preamble are scanned; the rest goes to pydicom. A
        # walk that cannot reach the SOP Instance UID cannot reach Pixel Data either.
        assert full is None
        return
    assert theirs.preamble is not None
    for scan in (raw, full):
        if scan is None:
            continue
        assert (scan.transfer_syntax, scan.data_offset) == (ours.transfer_syntax, ours.data_offset)
        assert scan.sop_class_uid in ("", _text(theirs.ds.get("SOPClassUID")))
        assert scan.sop_instance_uid in ("", _text(theirs.ds.get("SOPInstanceUID")))
        assert scan.data_offset <= scan.stop_offset <= path.stat().st_size
    if full is not None:
        ds = Dataset({BaseTag(tag): elem for tag, elem in full.elements.items()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for keyword in KEYWORDS:
                assert _text(ds.get(keyword)) == _text(theirs.ds.get(keyword)), keyword


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "JPEG2000.dcm"])
def test_a_file_the_planner_read_is_prepared_without_reading_its_meta_again(name, monkeypatch):
    """``FileInfo`` carries the data set offset: ``prepare_store`` walks the data set from
    there and streams the same bytes it streams when it reads the file afresh."""
    from types import SimpleNamespace

    import dicomdesk.net.part10 as part10
    from dicomdesk.net.sopclass.storage_send import prepare_store
    from dicomdesk.operations.files import inspect_for_sending

    path = ROOT / name
    info = inspect_for_sending(path)
    assert info.sendable and info.data_offset == read_part10_header(path).data_offset
    ctx = SimpleNamespace(id=1, sop_class=info.sop_class_uid, supported_ts=info.transfer_syntax)

    def streamed(header):
        with prepare_store(ctx, str(path), 1, header=header) as prepared:
            region = prepared.rq.data_set.file_region()
            return prepared.rq.affected_sop_instance_uid, region

    afresh = streamed(None)
    monkeypatch.setattr(part10, "read_file_meta", lambda fp: pytest.fail("the meta was read again"))
    assert streamed(info.header) == afresh == (info.sop_instance_uid,
                                                (info.data_offset, path.stat().st_size - info.data_offset))
