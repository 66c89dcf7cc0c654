"""The pure parts of the memory bounds: bounded inflation (``net.inflate``), the deflated
structure check and header scan (``sopclass.storage``), and the decoded-size walk
(``net.decode_limits``) checked against pydicom's reading of the same bytes."""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomdesk.net.dataset_encoding import decode_data_set, encode_data_set
from dicomdesk.net.decode_limits import DataSetLimitExceeded, DecodeLimits, check_decode_limits
from dicomdesk.net.inflate import InflateError, InflateLimitExceeded, InflatingReader, inflate_bytes
from dicomdesk.net.part10 import Part10Error, read_file_meta, read_part10_header, scan_header
from dicomdesk.net.part10_structure import check_deflated_structure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from hostile_payloads import (commitment_flood, deflate_bomb, deflated_zeros,  # noqa: E402
                              find_identifier_with_sequence)

MiB = 1 << 20
IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


# ---------------------------------------------------------------------------- inflate
def test_inflate_bytes_refuses_past_the_limit_having_produced_at_most_limit_plus_one():
    bomb = deflated_zeros(b"", 64 * MiB)
    with pytest.raises(InflateLimitExceeded):
        inflate_bytes(bomb, 8 * MiB)
    assert inflate_bytes(bomb, 64 * MiB) == bytes(64 * MiB)


def test_inflate_bytes_rejects_a_corrupt_stream():
    with pytest.raises(InflateError):
        inflate_bytes(b"\xff" * 100, 1 << 20)


@given(st.binary(max_size=20000), st.integers(1, 5000))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_inflating_reader_gives_the_same_bytes_in_any_pieces(data, piece):
    reader = InflatingReader(io.BytesIO(_deflate(data) + b"\0"), len(data))
    out = b""
    while not reader.at_end():
        out += reader.read(piece)
    assert out == data and reader.tell() == len(data)


def test_inflating_reader_says_truncated_when_the_stream_is_cut():
    stream = _deflate(bytes(range(256)) * 4000)
    reader = InflatingReader(io.BytesIO(stream[: len(stream) // 2]), 1 << 30)
    with pytest.raises(InflateError, match="truncated"):
        reader.skip(1 << 30)


# ---------------------------------------------------------------------------- deflated files
def test_a_deflate_bomb_is_refused_by_the_structure_check_after_inflating_only_the_limit(tmp_path):
    bomb = deflate_bomb(tmp_path / "b.dcm", 1 << 30, "1.2.3.4")
    with open(bomb, "rb") as fp:
        _, offset = read_file_meta(fp)
        with pytest.raises(InflateLimitExceeded):
            check_deflated_structure(fp, offset, 16 * MiB)


def test_deflated_header_scan_and_part10_header_match_pydicom_without_inflating_all(tmp_path):
    for path in (Path(get_testdata_file("image_dfl.dcm")),
                 deflate_bomb(tmp_path / "b.dcm", 1 << 30, "1.2.3.4")):
        header = read_part10_header(path)
        with open(path, "rb") as fp:
            scan = scan_header(fp, {0x00080018, 0x00100010}, max_inflated_size=1 << 30)
        reference = dcmread(path, stop_before_pixels=True) if path.stat().st_size < MiB else None
        if reference is not None:
            assert header.sop_instance_uid == reference.SOPInstanceUID
            assert Dataset(scan.elements).PatientName == reference.PatientName
        else:
            assert header.sop_instance_uid == "1.2.3.4"


def test_deflated_structure_check_finds_a_value_running_past_the_end(tmp_path):
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3"
    head = encode_data_set(ds, EXPLICIT) + struct.pack("<HH2s2xL", 0x7FE0, 0x0010, b"OB", 1000)
    with pytest.raises(Part10Error, match="truncated"):
        check_deflated_structure(io.BytesIO(_deflate(head + bytes(10))), 0, 1 << 20)
    assert check_deflated_structure(io.BytesIO(_deflate(head + bytes(1000))), 0, 1 << 20) \
        == len(head) + 1000


# ---------------------------------------------------------------------------- decode limits
def _nested(depth: int) -> Dataset:
    ds = Dataset()
    ds.add_new(0x00091010, "OB", bytes(90_000))  # large enough to be walked
    inner = ds
    for _ in range(depth):
        item = Dataset()
        item.CodeValue = "1"
        inner.ContentSequence = Sequence([item])
        inner = item
    return ds


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
def test_a_sequence_over_the_item_bound_is_refused_before_decoding(ts):
    limits = DecodeLimits(max_items_per_sequence=100)
    raw = encode_data_set(_items(101), ts)
    with pytest.raises(DataSetLimitExceeded, match="more than 100 items"):
        decode_data_set(raw, ts, limits)
    assert len(decode_data_set(encode_data_set(_items(100), ts), ts, limits)
               .ReferencedSOPSequence) == 100


def test_the_default_bound_admits_10000_commitment_references_and_refuses_10001():
    check_decode_limits(commitment_flood(10_000), False, True)
    with pytest.raises(DataSetLimitExceeded, match="more than 10000 items"):
        check_decode_limits(commitment_flood(10_001), False, True)


def _items(count: int) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = "1.2.3"
    items = []
    for i in range(count):
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = f"1.2.3.{i}"
        items.append(item)
    ds.ReferencedSOPSequence = Sequence(items)
    return ds


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT])
def test_nesting_deeper_than_the_bound_is_refused(ts):
    raw = encode_data_set(_nested(20), ts)
    with pytest.raises(DataSetLimitExceeded, match="deeper than 16"):
        decode_data_set(raw, ts)
    assert len(decode_data_set(encode_data_set(_nested(10), ts), ts).ContentSequence) == 1


def test_the_hostile_payloads_are_refused_by_the_walk():
    for raw in (commitment_flood(30_000), find_identifier_with_sequence(30_000)):
        with pytest.raises(DataSetLimitExceeded):
            check_decode_limits(raw, False, True)


def test_a_deflated_in_memory_data_set_inflating_past_its_bound_is_refused():
    head = struct.pack("<HH2sH", 0x0008, 0x0052, b"CS", 6) + b"STUDY " \
        + struct.pack("<HH2s2xL", 0x0009, 0x1010, b"OB", 80 * MiB)
    with pytest.raises(InflateLimitExceeded):
        decode_data_set(deflated_zeros(head, 80 * MiB), DEFLATED)


def test_malformed_bytes_the_walk_cannot_follow_still_have_their_items_bounded():
    item = struct.pack("<HHL", 0xFFFE, 0xE000, 0)
    raw = b"\x08\x00\x52\x00CS\x06\x00STUDY " + b"\x09\x00\x10\x00XX" + item * 20_000
    with pytest.raises(DataSetLimitExceeded):
        check_decode_limits(raw, False, True)


@pytest.mark.parametrize("name", ["rtplan.dcm", "CT_small.dcm", "MR_small.dcm", "rtstruct.dcm",
                                  "waveform_ecg.dcm", "nested_priv_SQ.dcm"])
@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
def test_the_walk_counts_elements_and_items_exactly_as_pydicom_reads_them(name, ts):
    """Real data sets (sequences, nested items, pixel data): the walk's count is pydicom's
    (every element at every level, each item one more), so a bound admits exactly that many."""
    ds = dcmread(get_testdata_file(name), force=True)
    del ds.file_meta
    raw = encode_data_set(ds, ts)
    reference = decode_data_set(raw, ts, None)
    elements = list(reference.iterall())
    total = len(elements) + sum(len(e.value) for e in elements if e.VR == "SQ")
    generous = 10**6
    check_decode_limits(raw, ts == IMPLICIT, ts != BIG, DecodeLimits(total, generous, 64))
    with pytest.raises(DataSetLimitExceeded, match="elements"):
        check_decode_limits(raw, ts == IMPLICIT, ts != BIG, DecodeLimits(total - 1, generous, 64))
    assert decode_data_set(raw, ts) == reference


def test_converting_a_deflated_file_is_refused_past_64_mib_without_inflating_it_in_memory(tmp_path):
    """A storage SCU converts a file whose syntax the peer refused; for a deflated file that
    means pydicom holding all of it inflated, so it stops at MAX_CONVERTED_INFLATED_SIZE."""
    import tracemalloc
    from types import SimpleNamespace

    from dicomdesk.net.sopclass.storage import StorageNotSent, prepare_store

    ctx = SimpleNamespace(id=1, sop_class="1.2.840.10008.5.1.4.1.1.7", supported_ts=EXPLICIT)
    big = deflate_bomb(tmp_path / "big.dcm", 100 * MiB, "1.2.3.4")
    tracemalloc.start()
    try:
        with pytest.raises(StorageNotSent, match="not converted"):
            prepare_store(ctx, big, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB
    small = Path(get_testdata_file("image_dfl.dcm"))
    with prepare_store(ctx, small, 1) as prepared:  # small enough: converted
        assert isinstance(prepared.rq.data_set, (bytes, bytearray))


_SEED = encode_data_set(_items(30), EXPLICIT)


@given(st.binary(max_size=4000) | st.builds(
    lambda cut, flips: bytes(b ^ flips.get(i, 0) for i, b in enumerate(_SEED[:cut])),
    st.integers(0, len(_SEED)), st.dictionaries(st.integers(0, len(_SEED) - 1), st.integers(1, 255),
                                                max_size=8)),
       st.booleans(), st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_the_walk_never_fails_on_arbitrary_bytes_other_than_by_refusing(raw, implicit, little):
    try:
        check_decode_limits(raw, implicit, little, DecodeLimits(50, 5, 3))
    except DataSetLimitExceeded:
        pass
