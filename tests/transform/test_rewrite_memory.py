"""A transformed copy is built in bounded memory: the pixel data is streamed, never loaded."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

import pydicom.data
from pydicom import dcmread

from dicomdesk.transform.deidentify import Deidentifier, Profile
from dicomdesk.transform.edits import parse_edits
from dicomdesk.transform.rewrite import rewrite_file

MIB = 1 << 20


def _big_file(tmp_path, mib: int = 64):
    """CT_small's header with ``mib`` MiB of 16-bit pixel data, written without holding it."""
    ds = dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.Rows, ds.Columns = 1024, mib * MIB // (1024 * 2)
    del ds.PixelData
    path = tmp_path / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    with open(path, "ab") as fp:
        fp.write(b"\xe0\x7f\x10\x00OW\x00\x00" + (mib * MIB).to_bytes(4, "little"))
        block = bytes(range(256)) * 4096
        for _ in range(mib):
            fp.write(block)
    return path


def _pixel_digest(path) -> str:
    with open(path, "rb") as fp:
        size = fp.seek(0, os.SEEK_END)
        fp.seek(size - 64 * MIB)
        h = hashlib.sha256()
        while chunk := fp.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def test_deidentify_and_edit_a_64_mib_image_with_a_few_mib_of_memory(tmp_path):
    source = _big_file(tmp_path)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    # warm up: module imports and the profile table are one-off costs, not per-file memory
    warm = rewrite_file(pydicom.data.get_testdata_file("CT_small.dcm"), "1.2.840.10008.1.2.1",
                        deidentifier=Deidentifier(Profile()), tmp_dir=str(tmp_path))
    os.unlink(warm.path)
    tracemalloc.start()
    try:
        result = rewrite_file(source, "1.2.840.10008.1.2.1", deidentifier=Deidentifier(Profile()),
                              edits=parse_edits(["PatientID=123"]), tmp_dir=str(tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"
    out = dcmread(result.path, stop_before_pixels=True)
    assert out.PatientID == "123" and out.PatientIdentityRemoved == "YES"
    assert _pixel_digest(result.path) == _pixel_digest(source)
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    os.unlink(result.path)
