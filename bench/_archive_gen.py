"""A synthetic archive of any size, fast: small instances written straight into the storage
folder and indexed through the archive's own bulk import (``Index.upsert_many``).

The files are real DICOM Part 10 files (PS3.10 7.1: preamble, File Meta Information, Explicit VR
Little Endian data set with an 8x8 16-bit picture), ~900 bytes each, encoded by hand from a few
fixed elements because pydicom would take 100x longer per file — a million of them is the point.
Shape: 20 instances per series, 3 series per study, 12 studies per patient (1M instances:
16,667 studies, 1,389 patients, 50,000 series), patient names from a small list of surnames.
"""

from __future__ import annotations

import os
import struct
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT_UID = "1.2.826.0.1.3680043.10.1077"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
PER_SERIES, SERIES_PER_STUDY, STUDIES_PER_PATIENT = 20, 3, 12
PER_STUDY = PER_SERIES * SERIES_PER_STUDY
SURNAMES = ("ADAMS", "BAKER", "CLARK", "DAVIS", "EVANS", "FISHER", "GARCIA", "HUGHES", "IRVING",
            "JONES", "KING", "LEWIS", "MARTIN", "NELSON", "OWEN", "PARKER", "QUINN", "ROBERTS",
            "SMITH", "TAYLOR")
GIVEN = ("ANNA", "BEN", "CLARA", "DAVID", "EMMA", "FRANK", "GRACE", "HENRY")
MODALITIES = ("CT", "MR", "SR")
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xL")


def _element(tag: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB") else b" "
    if vr in ("OB", "OW", "UN", "SQ", "UT"):
        return _LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value
    return _SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


_PIXELS = bytes(range(128))


def values_of(i: int, run: str = "") -> dict[str, str]:
    """The index values of instance ``i`` (keywords of ``archive.index.KEYS``)."""
    study, series = i // PER_STUDY, i // PER_SERIES
    patient = study // STUDIES_PER_PATIENT
    tag = f".{run}" if run else ""
    return {
        "PatientName": f"{SURNAMES[patient % len(SURNAMES)]}^{GIVEN[patient // 20 % 8]}{patient}",
        "PatientID": f"P{patient:07d}{run}",
        "IssuerOfPatientID": "",
        "PatientBirthDate": f"19{40 + patient % 60:02d}{1 + patient % 12:02d}{1 + patient % 28:02d}",
        "PatientSex": "FM"[patient % 2],
        "StudyInstanceUID": f"{ROOT_UID}{tag}.1.{study}",
        "StudyDate": f"20{10 + study % 15:02d}{1 + study % 12:02d}{1 + study % 28:02d}",
        "StudyTime": f"{8 + study % 10:02d}{study % 60:02d}00",
        "AccessionNumber": f"A{study:08d}{run}",
        "StudyID": str(study % 100000),
        "StudyDescription": "Synthetic study",
        "ReferringPhysicianName": "",
        "SeriesInstanceUID": f"{ROOT_UID}{tag}.2.{series}",
        "Modality": MODALITIES[series % SERIES_PER_STUDY],
        "SeriesNumber": str(series % SERIES_PER_STUDY + 1),
        "SeriesDescription": "Synthetic series",
        "SeriesDate": "",
        "SeriesTime": "",
        "SOPInstanceUID": f"{ROOT_UID}{tag}.3.{i}",
        "SOPClassUID": CT_IMAGE,
        "InstanceNumber": str(i % PER_SERIES + 1),
    }


def file_bytes(v: dict[str, str]) -> bytes:
    """A Part 10 file holding ``v`` and a small picture (elements in ascending tag order)."""
    sop = v["SOPInstanceUID"].encode()
    body = b"".join((
        _element(0x00080016, "UI", v["SOPClassUID"].encode()),
        _element(0x00080018, "UI", sop),
        _element(0x00080020, "DA", v["StudyDate"].encode()),
        _element(0x00080030, "TM", v["StudyTime"].encode()),
        _element(0x00080050, "SH", v["AccessionNumber"].encode()),
        _element(0x00080060, "CS", v["Modality"].encode()),
        _element(0x00081030, "LO", v["StudyDescription"].encode()),
        _element(0x0008103E, "LO", v["SeriesDescription"].encode()),
        _element(0x00100010, "PN", v["PatientName"].encode()),
        _element(0x00100020, "LO", v["PatientID"].encode()),
        _element(0x00100030, "DA", v["PatientBirthDate"].encode()),
        _element(0x00100040, "CS", v["PatientSex"].encode()),
        _element(0x0020000D, "UI", v["StudyInstanceUID"].encode()),
        _element(0x0020000E, "UI", v["SeriesInstanceUID"].encode()),
        _element(0x00200010, "SH", v["StudyID"].encode()),
        _element(0x00200011, "IS", v["SeriesNumber"].encode()),
        _element(0x00200013, "IS", v["InstanceNumber"].encode()),
        _element(0x00280002, "US", struct.pack("<H", 1)),
        _element(0x00280004, "CS", b"MONOCHROME2"),
        _element(0x00280010, "US", struct.pack("<H", 8)),
        _element(0x00280011, "US", struct.pack("<H", 8)),
        _element(0x00280100, "US", struct.pack("<H", 16)),
        _element(0x00280101, "US", struct.pack("<H", 12)),
        _element(0x00280102, "US", struct.pack("<H", 11)),
        _element(0x00280103, "US", struct.pack("<H", 0)),
        _element(0x7FE00010, "OW", _PIXELS),
    ))
    meta = b"".join((
        _element(0x00020001, "OB", b"\0\1"),
        _element(0x00020002, "UI", v["SOPClassUID"].encode()),
        _element(0x00020003, "UI", sop),
        _element(0x00020010, "UI", EXPLICIT_LE.encode()),
        _element(0x00020012, "UI", b"1.2.826.0.1.3680043.10.1077.0"),
    ))
    group_length = _element(0x00020000, "UL", struct.pack("<L", len(meta)))
    return b"\0" * 128 + b"DICM" + group_length + meta + body


def write_files(root: Path, start: int, stop: int, run: str = "") -> list[Path]:
    """Only the files (for the C-STORE band): instances ``start..stop-1`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, stop):
        path = root / f"{i:08d}.dcm"
        path.write_bytes(file_bytes(values_of(i, run)))
        paths.append(path)
    return paths


def generate(root: Path, start: int, stop: int, batch: int = 5000) -> dict[str, float]:
    """Add instances ``start..stop-1`` to the archive at ``root`` (created if missing):
    files into place, rows through ``Index.upsert_many``. Returns timings."""
    from dicomdesk.archive import Archive
    from dicomdesk.archive.index import InstanceRecord

    t0 = time.perf_counter()
    write_s = index_s = 0.0
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with Archive(root, durable=False) as archive:
        records: list[InstanceRecord] = []
        last_dir = ""
        for i in range(start, stop):
            v = values_of(i)
            rel = f"{v['StudyInstanceUID']}/{v['SeriesInstanceUID']}/{v['SOPInstanceUID']}.dcm"
            data = file_bytes(v)
            t = time.perf_counter()
            folder = os.path.dirname(rel)
            if folder != last_dir:
                os.makedirs(os.path.join(root, folder), exist_ok=True)
                last_dir = folder
            fd = os.open(os.path.join(root, rel), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.close(fd)
            write_s += time.perf_counter() - t
            records.append(InstanceRecord(v, transfer_syntax=EXPLICIT_LE, file_size=len(data),
                                          path=rel, received_at=now))
            if len(records) >= batch:
                t = time.perf_counter()
                archive.index.upsert_many(records)
                index_s += time.perf_counter() - t
                records = []
        if records:
            t = time.perf_counter()
            archive.index.upsert_many(records)
            index_s += time.perf_counter() - t
    return {"seconds": time.perf_counter() - t0, "write_s": write_s, "index_s": index_s}


if __name__ == "__main__":
    import sys

    print(generate(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
