"""Payloads that cost a receiver memory: deflate bombs, huge sequences, commitment floods.

Built with ``struct`` and ``zlib`` directly (pydicom would take minutes and gigabytes to
encode 400,000 sequence items; the point is what they cost the *receiver*). Used by
``tests/security/test_memory_bounds.py`` and ``bench/hostile_load.py``.
"""

from __future__ import annotations

import socket
import struct
import zlib
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

from dicomdesk.net import pdu, uids
from dicomdesk.net.negotiation import APPLICATION_CONTEXT_NAME, build_user_information

DEFLATED_LE = uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_MiB = 1 << 20


def _explicit_le(ds: Dataset) -> bytes:
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    return buf.getvalue()


def deflated_zeros(head: bytes, zeros: int) -> bytes:
    """A raw deflate stream (PS3.5 A.5) of ``head`` then ``zeros`` zero bytes, made in ms.

    After a full flush the compressor forgets its history, so each MiB of zeros deflates to
    the same ~1 KB: one is computed and repeated, and an empty final block closes the stream.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)]
    if zeros >= _MiB:
        out.append((c.compress(bytes(_MiB)) + c.flush(zlib.Z_FULL_FLUSH)) * (zeros // _MiB))
    out.append(c.compress(bytes(zeros % _MiB)) + c.flush(zlib.Z_FULL_FLUSH))
    out.append(b"\x03\x00")  # an empty final block (fixed Huffman, end-of-block only)
    data = b"".join(out)
    return data + b"\0" if len(data) % 2 else data  # PS3.5 A.5: even length


def deflate_bomb(path: Path, inflated: int, instance_uid: str, *, study: str = "1.2.3.77.1",
                 series: str = "1.2.3.77.1.1") -> Path:
    """A Part-10 Secondary Capture in Deflated Explicit VR LE whose Pixel Data is
    ``inflated`` zero bytes: a few KB per GiB on disk and on the wire."""
    ds = Dataset()
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = instance_uid
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientName = "BOMB^DEFLATE"
    ds.PatientID = "BOMB"
    ds.Modality = "OT"
    head = _explicit_le(ds) + struct.pack("<HH2s2xL", 0x7FE0, 0x0010, b"OB", inflated)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = DEFLATED_LE
    meta_buf = DicomBytesIO()
    write_file_meta_info(meta_buf, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + meta_buf.getvalue() + deflated_zeros(head, inflated))
    return path


def _element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    if vr in (b"SQ", b"OB", b"UN", b"UT"):
        return struct.pack("<HH2s2xL", group, elem, vr, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _undefined_sequence(group: int, elem: int, items: list[bytes] | bytes, count: int = 1) -> bytes:
    """An undefined-length SQ of ``count`` copies of the undefined-length item(s)."""
    body = b"".join(items) if isinstance(items, list) else items * count
    return struct.pack("<HH2s2xL", group, elem, b"SQ", 0xFFFFFFFF) + body \
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def _item(content: bytes) -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + content + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)


def commitment_flood(references: int) -> bytes:
    """N-ACTION Action Information (PS3.4 J.3.2.1) in Explicit VR LE with ``references``
    Referenced SOP Sequence items (400,000 is ~28 MB on the wire)."""
    items = []
    for i in range(references):
        items.append(_item(_element(0x0008, 0x1150, b"UI", b"1.2.840.10008.5.1.4.1.1.2")
                           + _element(0x0008, 0x1155, b"UI", f"1.2.826.0.1.3680043.9.7777.{i}".encode())))
    return _element(0x0008, 0x1195, b"UI", b"1.2.826.0.1.3680043.9.7777") \
        + _undefined_sequence(0x0008, 0x1199, items)


def find_identifier_with_sequence(items: int) -> bytes:
    """A Study Root C-FIND identifier (Explicit VR LE) carrying a ``items``-item sequence
    (Referenced Study Sequence, 0008,1110): 200,000 items is ~14 MB."""
    item = _item(_element(0x0008, 0x1150, b"UI", b"1.2.840.10008.3.1.2.3.1")
                 + _element(0x0008, 0x1155, b"UI", b"1.2.826.0.1.3680043.9.7777.1"))
    return _element(0x0008, 0x0052, b"CS", b"STUDY") \
        + _undefined_sequence(0x0008, 0x1110, item, items) \
        + _element(0x0010, 0x0010, b"PN", b"*")


def find_identifier_flat(elements: int) -> bytes:
    """A flat identifier of ``elements`` private LO elements (PS3.5 7.8): 8 bytes each."""
    out = [_element(0x0008, 0x0052, b"CS", b"STUDY")]
    for i in range(elements):
        out.append(struct.pack("<HH2sH", 0x0009 + 2 * (i // 0xEFFF), 0x1000 + i % 0xEFFF, b"LO", 0))
    return b"".join(out)


def associate_rq(contexts: list[tuple[int, str, str]], called: str = "DICOMDESK",
                 calling: str = "HOSTILE", max_pdu: int = 16384) -> bytes:
    """A-ASSOCIATE-RQ with (pc_id, SOP class, transfer syntax) contexts."""
    items: list = [pdu.ApplicationContextItem(APPLICATION_CONTEXT_NAME)]
    for pc_id, sop_class, ts in contexts:
        items.append(pdu.PresentationContextItemRQ(pc_id, pdu.AbstractSyntaxSubItem(sop_class),
                                                   [pdu.TransferSyntaxSubItem(ts)]))
    items.append(build_user_information(max_pdu))
    return pdu.AAssociateRqPDU(called, calling, items).encode()


def send_data_set(sock: socket.socket, pc_id: int, data: bytes, fragment: int = 16000,
                  last: bool = True) -> None:
    """Send ``data`` as data set PDVs of ``fragment`` bytes (the last one flagged if ``last``)."""
    views = memoryview(data)
    for start in range(0, len(data), fragment):
        end = min(start + fragment, len(data))
        header = 0x02 if (last and end == len(data)) else 0x00
        sock.sendall(pdu.PDataTfPDU([pdu.PresentationDataValueItem(
            pc_id, bytes((header,)) + bytes(views[start:end]))]).encode())
