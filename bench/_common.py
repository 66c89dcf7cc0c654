"""Shared helpers of the benchmarks: generated data, processes, peak RSS, statistics.

Nothing here is imported by dicomdesk; every object is generated in a temp dir, so nothing
large is committed. Peak RSS is the kernel's own high-water mark: ``ru_maxrss`` from
``wait4`` for a process that exits, ``VmHWM`` from /proc/<pid>/status for a server read just
before it is stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
DRIVERS = str(REPO / "bench" / "_drivers.py")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MF_WORD_SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC (PS3.3 A.8.4)

ENV = dict(os.environ, PYTHONPATH=str(REPO), TCP_NODELAY="1")


# ----------------------------------------------------------------------------- data
def _header(sop_class: str, study: str, series: str, index: int, rows: int, cols: int,
            frames: int | None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientName = "Bench^Patient"
    ds.PatientID = "BENCH0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "A0001"
    ds.Modality = "CT" if frames is None else "OT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames is None:
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.SliceThickness = 1.0
        ds.ImagePositionPatient = [0, 0, index]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.KVP = 120
    else:
        ds.NumberOfFrames = frames
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _write(path: Path, ds: Dataset, pixel_bytes: int, piece: bytes) -> None:
    """Header with pydicom, then (7FE0,0010) OW appended in pieces (PS3.5 7.1.2): never whole."""
    ds.save_as(path, enforce_file_format=True)
    with open(path, "ab") as fp:
        fp.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes))
        left = pixel_bytes
        while left:
            n = min(left, len(piece))
            fp.write(piece[:n])
            left -= n


def make_small(folder: Path, count: int) -> list[Path]:
    """``count`` CT images of 512x512x16 bit (0.525 MB each), one series."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    piece = bytes(range(256)) * 2048  # 512 KiB
    paths = []
    for i in range(count):
        path = folder / f"ct{i:05d}.dcm"
        _write(path, _header(CT_IMAGE_STORAGE, study, series, i, 512, 512, None), 512 * 512 * 2, piece)
        paths.append(path)
    return paths


def make_large(folder: Path, count: int, frames: int = 100) -> list[Path]:
    """``count`` multi-frame objects of ``frames`` x 512x512x16 bit (52 MB each at 100)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    piece = bytes(range(256)) * (8 * 4096)  # 8 MiB
    paths = []
    for i in range(count):
        path = folder / f"mf{i:03d}.dcm"
        _write(path, _header(MF_WORD_SC_STORAGE, study, series, i, 512, 512, frames),
               frames * 512 * 512 * 2, piece)
        paths.append(path)
    return paths


def total_size(paths: Sequence[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


# ----------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server {proc.args!r} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {proc.args!r} did not listen on {port}")
            time.sleep(0.02)


def vm_hwm_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fp:
            for line in fp:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Server:
    """A server process on a free port: started, waited for, stopped; ``peak_mb`` at stop."""

    def __init__(self, argv: list[str], port: int, cwd: Path | None = None):
        self.argv, self.port, self.cwd = argv, port, cwd
        self.proc: subprocess.Popen | None = None
        self.peak_mb = 0.0

    def __enter__(self) -> "Server":
        self.proc = subprocess.Popen(self.argv, env=ENV, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        self.peak_mb = vm_hwm_mb(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_client(argv: list[str], timeout: float = 300) -> tuple[float, float, str]:
    """Run a client to its end: (wall seconds, peak RSS MB from wait4, stdout)."""
    # Output goes to files, not pipes: a chatty client (findscu logs every match) would
    # fill a pipe nobody reads while it runs, and block.
    out_file, err_file = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=ENV, stdout=out_file, stderr=err_file, text=True)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{argv[:3]} timed out")
        time.sleep(0.002)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_file.seek(0)
    err_file.seek(0)
    out, err = out_file.read(), err_file.read()
    out_file.close()
    err_file.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))}... exited {proc.returncode}: {err[-800:]}")
    return wall, usage.ru_maxrss / 1024, out


def driver(*args: Any) -> list[str]:
    return [PY, DRIVERS, *map(str, args)]


def driver_json(out: str) -> dict:
    """The last line a driver prints is its JSON result."""
    return json.loads(out.strip().splitlines()[-1])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
