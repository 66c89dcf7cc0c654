"""Conversion of an uncompressed file to another uncompressed transfer syntax (PS3.5 A.1-A.5),
for a storage SCU whose peer does not accept the file's own syntax: the only path that
reads a whole file into memory (pydicom)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .. import uids
from ..part10 import _dcmread, pydicom_warnings_logged

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# Word sizes of the VRs whose raw bytes change order with endianness (PS3.5 7.3).
_SWAP_WIDTH = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}


def _swap_bytes(ds: Dataset) -> None:
    """Reverse the byte order of OW/OL/OF/OD/OV values, in sequences too (PS3.5 7.3).

    pydicom keeps these values as raw bytes, so changing endianness must swap them here.
    """
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_bytes(item)
            continue
        width = _SWAP_WIDTH.get(elem.VR)
        if width and isinstance(elem.value, (bytes, bytearray)) and len(elem.value) % width == 0:
            data = bytearray(elem.value)
            for i in range(width):
                data[i::width] = elem.value[width - 1 - i::width]
            elem.value = bytes(data)


def converted_dataset(path: str | os.PathLike[str], target_ts: str) -> Dataset:
    """Read a whole uncompressed file and prepare it for ``target_ts`` (only path that loads it).

    The association encodes the returned data set in the context's syntax; values in raw
    word VRs are byte-swapped here when the endianness changes.
    """
    with pydicom_warnings_logged():
        ds = _dcmread(path, force=True)
    source_ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    source_little = source_ts != uids.EXPLICIT_VR_BIG_ENDIAN
    if ds.original_encoding[1] is not None:
        source_little = bool(ds.original_encoding[1])
    target_little = target_ts != uids.EXPLICIT_VR_BIG_ENDIAN
    if source_little != target_little:
        # Ambiguous VRs (US or SS, OB or OW) must be resolved in the source's order first.
        from pydicom.filewriter import correct_ambiguous_vr
        ds = correct_ambiguous_vr(ds, source_little)
        _swap_bytes(ds)
    return ds

