"""Fill an archive with many small synthetic instances through its own receive path, fast.

Each object goes through ``Archive.open_incoming`` / ``commit_incoming`` exactly as a received
C-STORE does (header scan, structure check, journal, rename, write-behind row), with
``durable=False`` (no fsync: a generated archive need not survive a power cut). The bytes
come from one pydicom-encoded template whose UIDs have a fixed width, so each instance is a
byte substitution, not an encode. 10,000 instances take a few seconds; by hand:

    .venv/bin/python tests/faults/archive_fill.py /tmp/archive 100000
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

ROOT_UID = "1.2.826.0.1.3680043.8.498.14"
INSTANCES_PER_SERIES = 50
SERIES_PER_STUDY = 4


def _uid(study: int, series: int, instance: int) -> tuple[str, str, str]:
    # Fixed widths without leading zeros (PS3.5 9.1): a substitution keeps every length.
    study_uid = f"{ROOT_UID}.{1_000_000 + study}"
    series_uid = f"{study_uid}.{1000 + series}"
    return study_uid, series_uid, f"{series_uid}.{1_000_000 + instance}"


def _template() -> bytes:
    study, series, sop = _uid(0, 0, 0)
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientName = "SCALE^000000"
    ds.PatientID = "SCALE-000000"
    ds.StudyDate = "20240115"
    ds.Modality = "CT"
    ds.add_new(0x7FE00010, "OW", bytes(512))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def instance_bytes(template: bytes, index: int) -> bytes:
    """Instance ``index`` of the generated archive (its study, series and patient follow)."""
    per_study = INSTANCES_PER_SERIES * SERIES_PER_STUDY
    study, rest = divmod(index, per_study)
    series, instance = divmod(rest, INSTANCES_PER_SERIES)
    old = _uid(0, 0, 0)
    new = _uid(study, series, instance)
    data = template.replace(old[2].encode(), new[2].encode())  # SOP Instance UID first
    data = data.replace(old[1].encode(), new[1].encode()).replace(old[0].encode(), new[0].encode())
    patient = f"{study // 10:06d}".encode()
    return data.replace(b"SCALE^000000", b"SCALE^" + patient).replace(b"SCALE-000000", b"SCALE-" + patient)


def sop_instance_uid(index: int) -> str:
    per_study = INSTANCES_PER_SERIES * SERIES_PER_STUDY
    study, rest = divmod(index, per_study)
    return _uid(study, *divmod(rest, INSTANCES_PER_SERIES))[2]


def fill_archive(root: Path, count: int, start: int = 0) -> float:
    """Store instances ``start`` .. ``start + count - 1`` into the archive at ``root``; seconds taken."""
    from dicomdesk.archive import Archive

    template = _template()
    began = time.monotonic()
    with Archive(root, durable=False) as archive:
        for index in range(start, start + count):
            incoming = archive.open_incoming()
            incoming.fp.write(instance_bytes(template, index))
            archive.commit_incoming(incoming)
    return time.monotonic() - began


if __name__ == "__main__":
    target, how_many = Path(sys.argv[1]), int(sys.argv[2])
    seconds = fill_archive(target, how_many)
    print(f"{how_many} instances in {seconds:.1f} s ({how_many / seconds:.0f}/s) into {target}")
