"""Build the transformed copy of one file in a temporary file, in bounded memory.

Two ways, chosen per file:

* **Streamed** (the usual case: de-identification or edits of a little-endian file whose
  pixel data keeps its encoding): pydicom reads the data set up to the pixel data (PS3.5 7.1),
  the changes apply to that, and the pixel data element is copied from the source file to the
  copy in 1 MiB chunks, encapsulated fragments included (PS3.5 A.4). Memory stays at the
  header's size whatever the image's; a few elements after the pixel data (padding,
  signatures) are read and changed like the header.
* **Decoded** (decompress, compress, big-endian or deflated sources): pydicom loads the object,
  its pixel data plugins (pylibjpeg with libjpeg, openjpeg and rle; pyjpegls) decode or
  encode, and the result is written out. Refused above ``MAX_DECODED_BYTES`` so one huge
  multi-frame object cannot exhaust memory.

The caller owns the temporary file (``RewriteResult.path``) and removes it once sent.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..net.part10 import Part10Error, pydicom_warnings_logged, read_file_meta

logger = logging.getLogger(__name__)

#: The most a decoded object (file + decoded pixels) may take in memory.
MAX_DECODED_BYTES = 512 * 1024 * 1024
#: The most a streamed object's non-pixel part may take in memory.
MAX_HEADER_BYTES = 256 * 1024 * 1024
_CHUNK = 1 << 20
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
_ITEM_DELIMITERS = (0xFFFEE000,)
_SEQ_END = 0xFFFEE0DD
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


class RewriteError(ValueError):
    """The file cannot be transformed (the message says why; the source is untouched)."""


@dataclass(frozen=True)
class RewriteResult:
    """The transformed copy: its path (a temp file), syntax and SOP Instance UID, and what
    happened to the pixel data ("decompressed from X", "compressed to Y", or "")."""

    path: str
    transfer_syntax: str
    sop_instance_uid: str
    pixel_note: str = ""


def _apply(ds: Any, deidentifier: Any, edits: tuple, source: str) -> None:
    if deidentifier is not None:
        deidentifier.apply(ds, source)
    if edits:
        from .edits import apply_edits

        apply_edits(ds, edits)


def _new_temp(tmp_dir: str | None) -> tuple[int, str]:
    return tempfile.mkstemp(prefix="dicomdesk-", suffix=".dcm", dir=tmp_dir)


def rewrite_file(path: str | os.PathLike[str], target_ts: str, *, deidentifier: Any = None,
                 edits: tuple = (), decode: bool = False, tmp_dir: str | None = None) -> RewriteResult:
    """Write ``path`` transformed, in ``target_ts``, to a new temporary file.

    ``decode``: the pixel data is decompressed (``target_ts`` uncompressed) or, when
    ``target_ts`` is a compressed syntax, encoded to it. Raises ``RewriteError`` (or
    ``DeidentifyRefused``) with the reason; nothing is left behind on failure.
    """
    from pydicom.uid import UID

    path = os.fspath(path)
    with open(path, "rb") as fp:
        try:
            meta = read_file_meta(fp)
        except Part10Error as exc:
            raise RewriteError(str(exc)) from exc
    source_ts = meta[0].get(0x00020010, "") if meta else ""
    streamable = (not decode and meta is not None and source_ts
                  and (source_ts == target_ts
                       or ({source_ts, target_ts} <= {_EXPLICIT_LE, _IMPLICIT_LE}))
                  and not UID(source_ts).is_deflated and UID(source_ts).is_little_endian)
    fd, tmp = _new_temp(tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            if streamable:
                uid = _rewrite_streamed(path, source_ts, target_ts, out, deidentifier, edits)
                note = ""
            else:
                uid, note = _rewrite_decoded(path, source_ts, target_ts, decode, out,
                                             deidentifier, edits)
    except BaseException:
        os.unlink(tmp)
        raise
    return RewriteResult(tmp, target_ts, uid, note)


# ---------------------------------------------------------------------------------- streamed
def _pixel_extent(fp: BinaryIO, start: int, end_of_file: int, implicit: bool) -> tuple[int, int, bytes | None]:
    """(value offset, end offset, explicit VR or None) of the pixel element at ``start``."""
    fp.seek(start)
    head = fp.read(8)
    if len(head) < 8:
        raise RewriteError("truncated pixel data element")
    if implicit:
        length = struct.unpack("<L", head[4:8])[0]
        value_at, vr = start + 8, None
    else:
        vr = head[4:6]
        if vr in _LONG_VRS:
            more = fp.read(4)
            length = struct.unpack("<L", more)[0]
            value_at = start + 12
        else:
            length = struct.unpack("<H", head[6:8])[0]
            value_at = start + 8
    if length != 0xFFFFFFFF:
        end = value_at + length
        if end > end_of_file:
            raise RewriteError("the pixel data runs past the end of the file (truncated)")
        return value_at, end, vr
    pos = value_at  # encapsulated (PS3.5 A.4): items until the sequence delimiter
    while True:
        fp.seek(pos)
        item = fp.read(8)
        if len(item) < 8:
            raise RewriteError("the encapsulated pixel data is not closed (truncated)")
        tag = (struct.unpack("<H", item[:2])[0] << 16) | struct.unpack("<H", item[2:4])[0]
        length = struct.unpack("<L", item[4:8])[0]
        pos += 8
        if tag == _SEQ_END:
            return value_at, pos, vr
        if tag not in _ITEM_DELIMITERS or length == 0xFFFFFFFF:
            raise RewriteError("unexpected element inside the encapsulated pixel data")
        pos += length
        if pos > end_of_file:
            raise RewriteError("a pixel data fragment runs past the end of the file (truncated)")


def _copy(fp: BinaryIO, out: BinaryIO, start: int, end: int) -> None:
    fp.seek(start)
    left = end - start
    while left:
        chunk = fp.read(min(_CHUNK, left))
        if not chunk:
            raise RewriteError("the file ended while copying its pixel data")
        out.write(chunk)
        left -= len(chunk)


def _rewrite_streamed(path: str, source_ts: str, target_ts: str, out: BinaryIO, deidentifier: Any,
                      edits: tuple) -> str:
    from pydicom import dcmread
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomFileLike
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import dcmwrite, write_dataset

    source_implicit = source_ts == _IMPLICIT_LE
    target_implicit = target_ts == _IMPLICIT_LE
    with open(path, "rb") as fp:
        size = os.fstat(fp.fileno()).st_size
        try:
            with pydicom_warnings_logged():
                ds = dcmread(fp, force=True, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types on a damaged header
            raise RewriteError(f"unreadable data set: {exc}") from exc
        pixel_at = fp.tell()
        if pixel_at > MAX_HEADER_BYTES:
            raise RewriteError(f"the data set before the pixel data is {pixel_at} bytes, more than "
                               f"the {MAX_HEADER_BYTES} this rewrites in memory")
        pixel_tag = None
        value_at = end = pixel_at
        vr = None
        if pixel_at < size:
            fp.seek(pixel_at)
            raw = fp.read(4)
            pixel_tag = (struct.unpack("<H", raw[:2])[0] << 16) | struct.unpack("<H", raw[2:4])[0]
            if pixel_tag not in _PIXEL_TAGS:
                raise RewriteError("the data set could not be read up to its pixel data")
            value_at, end, vr = _pixel_extent(fp, pixel_at, size, source_implicit)
        tail = Dataset()
        if end < size:
            if size - end > MAX_HEADER_BYTES // 4:
                raise RewriteError("too much data after the pixel data to rewrite it in memory")
            fp.seek(end)
            try:
                with pydicom_warnings_logged():
                    tail = read_dataset(io.BytesIO(fp.read(size - end)), source_implicit, True)
            except Exception as exc:
                raise RewriteError(f"unreadable elements after the pixel data: {exc}") from exc
        for elem in tail:
            ds[elem.tag] = elem
        _apply(ds, deidentifier, edits, path)
        head, after = Dataset(), Dataset()
        for elem in ds:
            (head if pixel_tag is None or int(elem.tag) < pixel_tag else after)[elem.tag] = elem
        head.file_meta = ds.file_meta
        head.file_meta.TransferSyntaxUID = target_ts
        head.preamble = getattr(ds, "preamble", None)
        with pydicom_warnings_logged():
            dcmwrite(out, head, implicit_vr=target_implicit, little_endian=True,
                     enforce_file_format=True)
        if pixel_tag is not None:
            if source_ts == target_ts:
                _copy(fp, out, pixel_at, end)
            else:
                length = end - value_at
                out.write(struct.pack("<HH", pixel_tag >> 16, pixel_tag & 0xFFFF))
                if target_implicit:
                    out.write(struct.pack("<L", length))
                else:
                    if vr is None:
                        vr = {0x7FE00008: b"OF", 0x7FE00009: b"OD"}.get(
                            pixel_tag, b"OW" if int(ds.get("BitsAllocated", 16) or 16) > 8 else b"OB")
                    out.write(vr + b"\0\0" + struct.pack("<L", length))
                _copy(fp, out, value_at, end)
        if len(after):
            tail_out = DicomFileLike(out)
            tail_out.is_little_endian = True
            tail_out.is_implicit_VR = target_implicit
            with pydicom_warnings_logged():
                write_dataset(tail_out, after)
    return str(ds.get("SOPInstanceUID", ""))


# ---------------------------------------------------------------------------------- decoded
def _decoded_size(ds: Any) -> int:
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.get("BitsAllocated", 8) or 8)
        return (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
                * max(bits // 8, 1) * frames)
    except (AttributeError, TypeError, ValueError):
        return 0


def _rewrite_decoded(path: str, source_ts: str, target_ts: str, decode: bool, out: BinaryIO,
                     deidentifier: Any, edits: tuple) -> tuple[str, str]:
    from pydicom import dcmread
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import UID

    from ..net.sopclass.storage_convert import converted_dataset

    size = os.path.getsize(path)
    try:
        with pydicom_warnings_logged():
            header = dcmread(path, force=True, stop_before_pixels=True)
    except Exception as exc:
        raise RewriteError(f"unreadable data set: {exc}") from exc
    estimate = size + (_decoded_size(header) * 2 if decode else 0)
    if estimate > MAX_DECODED_BYTES:
        raise RewriteError(f"too large to decode in memory ({estimate // (1 << 20)} MiB, at most "
                           f"{MAX_DECODED_BYTES // (1 << 20)} MiB)")
    note = ""
    try:
        with pydicom_warnings_logged():
            if decode and UID(target_ts).is_compressed:
                ds = dcmread(path, force=True)
                ds.compress(target_ts, generate_instance_uid=False)
                note = f"compressed to {UID(target_ts).name}"
            elif decode:
                ds = dcmread(path, force=True)
                ds.decompress(as_rgb=True, generate_instance_uid=False)
                note = f"decompressed from {UID(source_ts).name}"
            else:
                ds = converted_dataset(path, target_ts)
    except Exception as exc:  # the plugins raise many types for data they cannot handle
        what = "compressed" if decode and UID(target_ts).is_compressed else "decoded"
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise RewriteError(f"the pixel data cannot be {what}: {reason}") from exc
    _apply(ds, deidentifier, edits, path)
    ds.file_meta.TransferSyntaxUID = target_ts
    implicit = target_ts == _IMPLICIT_LE
    little = UID(target_ts).is_little_endian
    try:
        with pydicom_warnings_logged():
            dcmwrite(out, ds, implicit_vr=implicit, little_endian=little, enforce_file_format=True)
    except Exception as exc:
        raise RewriteError(f"cannot write the transformed object: {exc}") from exc
    return str(ds.get("SOPInstanceUID", "")), note
