"""``dicomdesk send`` end to end: a separate process sending pydicom's test files to DCMTK storescp."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_storage_interop import TEST_FILES, differences, read_quietly

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]


def dicomdesk(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "dicomdesk", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_send_stores_every_clean_file_and_prints_failures_and_a_retry_command(dcmtk_storescp):
    from dicomdesk.operations.files import scan_paths

    run = dicomdesk("send", "--aec", "STORESCP", "127.0.0.1", str(dcmtk_storescp.port), str(TEST_FILES))
    assert run.returncode == 1, run.stderr  # some pydicom files are broken
    lines = run.stdout.splitlines()
    summary = next(line for line in lines if line.startswith("sent to STORESCP@"))
    infos = scan_paths([TEST_FILES])
    skipped = sum(i.not_dicom for i in infos)
    named = [i for i in infos if not i.is_dicom and i.part10]
    assert named  # pydicom's dicomdirtests hold DICOMDIRs
    assert f"{skipped} skipped (not DICOM), {len(named)} not sent" in summary
    for info in named:  # a DICOMDIR is named with its reason, never summed up as "not DICOM"
        assert f"not sent: {info.path}: DICOMDIR: a media directory, not an instance" in lines[
            lines.index(f"not sent: {info.path}: {info.reason}")]
    failures = [line for line in lines if line.startswith("failed: ")]
    for info in infos:
        if info.is_dicom and info.reason:
            assert any(str(info.path) in f and info.reason in f for f in failures), info.path
    assert "\r" not in run.stdout  # no progress line when stdout is not a terminal

    received = {}
    for path in dcmtk_storescp.output_dir.iterdir():
        ds = read_quietly(path)
        uid = ds.get("SOPInstanceUID") or ds.file_meta.get("MediaStorageSOPInstanceUID")
        received[str(uid)] = ds
    counts: dict[str, int] = {}
    for info in infos:
        counts[info.sop_instance_uid] = counts.get(info.sop_instance_uid, 0) + 1
    compared = 0
    for info in infos:
        if info.sendable and counts[info.sop_instance_uid] == 1 and info.sop_instance_uid in received:
            assert not differences(read_quietly(info.path), received[info.sop_instance_uid]), info.path
            compared += 1
    assert compared >= 100

    retry = shlex.split(lines[lines.index("to retry the failed files:") + 1])
    assert retry[:2] == ["dicomdesk", "send"]
    again = dicomdesk(*retry[1:])
    assert again.returncode == 1
    assert "0 skipped" in again.stdout
    assert len([line for line in again.stdout.splitlines() if line.startswith("failed: ")]) == len(failures)


def test_send_of_a_clean_folder_exits_zero_and_counts_non_dicom_files(tmp_path, dcmtk_storescp):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(TEST_FILES / name, folder / name)
    shutil.copy(TEST_FILES / "JPEG2000.dcm", folder / "sub" / "j2k")
    (folder / "notes.txt").write_text("not DICOM")
    run = dicomdesk("send", "--aec", "STORESCP", "127.0.0.1", str(dcmtk_storescp.port), str(folder))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 stored, 0 failed, 1 skipped" in run.stdout
    assert len(list(dcmtk_storescp.output_dir.iterdir())) == 3


def test_send_to_nobody_fails_with_a_sentence(tmp_path):
    from peers import free_port

    run = dicomdesk("send", "127.0.0.1", str(free_port()), str(TEST_FILES / "CT_small.dcm"))
    assert run.returncode == 1
    assert "connection refused" in run.stderr
    assert "Traceback" not in run.stderr
