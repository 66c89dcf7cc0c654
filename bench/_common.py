"""Shared helpers of the benchmarks: generated data, processes, peak RSS, statistics.

Nothing here is imported by dicomdesk; every object is generated in a temp dir, so nothing
large is committed. Peak RSS is the kernel's own high-water mark: ``ru_maxrss`` from
``wait4`` for a process that exits, ``VmHWM`` from /proc/<pid>/status for a server read just
before it is stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
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

# Processes run as a user's would: dicomdesk's modules compiled once (as ``pip install``
# does), and no PYTHONDONTWRITEBYTECODE (set in some shells and CI images: with it every
# process compiles every module of ours from source again, ~100 ms per start here).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.update(PYTHONPATH=str(REPO), TCP_NODELAY="1")


#: GNU time, for a client's own peak RSS (see ``run_client``); None when not installed.
TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def compile_package() -> None:
    """Byte-compile dicomdesk (what an install does), so no timed process compiles it."""
    import compileall

    compileall.compile_dir(str(REPO / "dicomdesk"), quiet=1)


compile_package()
#: The ``dicomdesk`` console script of this interpreter's venv: what a user types. Falls back
#: to ``python -m dicomdesk`` when run outside a venv with dicomdesk installed.
_SCRIPT = Path(PY).parent / "dicomdesk"
DICOMDESK = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-m", "dicomdesk"]


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process and its threads (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as fp:
            fields = fp.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


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
    """A server process on a free port: started, waited for, stopped; ``peak_mb`` at stop and
    ``cpu`` (seconds) spent between listening and stop."""

    def __init__(self, argv: list[str], port: int, cwd: Path | None = None):
        self.argv, self.port, self.cwd = argv, port, cwd
        self.proc: subprocess.Popen | None = None
        self.peak_mb = 0.0
        self.cpu = 0.0
        self._cpu_ready = 0.0

    def __enter__(self) -> "Server":
        self.proc = subprocess.Popen(self.argv, env=ENV, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        self._cpu_ready = cpu_seconds(self.proc.pid)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        self.peak_mb = vm_hwm_mb(self.proc.pid)
        self.cpu = cpu_seconds(self.proc.pid) - self._cpu_ready
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_client(argv: list[str], timeout: float = 300, *, with_cpu: bool = False,
               startup_only: bool = False):
    """Run a client from exec to exit: (wall seconds, peak RSS MB from wait4, stdout), plus the
    CPU seconds (user + system) with ``with_cpu``. The wait blocks in ``wait4`` (no polling
    interval in the figure); a watchdog kills a client that overruns ``timeout``. With
    ``startup_only`` the client is not wrapped in GNU time (its peak RSS is then not its own),
    so a start-up timing holds nothing but the client."""
    # Output goes to files, not pipes: a chatty client (findscu logs every match) would
    # fill a pipe nobody reads while it runs, and block.
    out_file, err_file = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    rss_file = None
    if TIME and not startup_only:
        # The peak RSS from GNU time: a child of this (large) Python process inherits this
        # process's high-water mark in its ru_maxrss across exec (Linux exec_mmap), so
        # wait4's figure is never below ours; time's child is forked from time (small).
        rss_file = tempfile.NamedTemporaryFile("w+", suffix=".rss")
        argv = [TIME, "-f", "%M", "-o", rss_file.name, *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=ENV, stdout=out_file, stderr=err_file, text=True)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_file.seek(0)
    err_file.seek(0)
    out, err = out_file.read(), err_file.read()
    out_file.close()
    err_file.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))}... exited {proc.returncode}: {err[-800:]}")
    peak_kib = usage.ru_maxrss
    if rss_file is not None:
        rss_file.seek(0)
        lines = rss_file.read().split()
        rss_file.close()
        peak_kib = int(lines[-1]) if lines and lines[-1].isdigit() else peak_kib
    if with_cpu:
        return wall, peak_kib / 1024, out, usage.ru_utime + usage.ru_stime
    return wall, peak_kib / 1024, out


# ----------------------------------------------------------------------------- servers
def dd_serve(folder: Path, port: int, *, durable: bool = True, max_pdu: int | None = None) -> Server:
    """``dicomdesk serve`` as a user starts it: its defaults (durable) unless told otherwise."""
    argv = DICOMDESK + ["serve", "--aet", "ANY-SCP", "--port", str(port), "--storage", str(folder)]
    if not durable:
        argv.append("--no-durable")
    if max_pdu is not None:
        argv += ["--max-pdu", str(max_pdu)]
    return Server(argv, port)


def storescp(folder: Path, port: int, best: bool = False) -> Server:
    """DCMTK's ``storescp``: its defaults (16 KiB PDUs), or its best (128 KiB PDUs, ``+B``)."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["storescp", "-aet", "ANY-SCP", "-od", str(folder)]
    if best:
        argv += ["-pdu", "131072", "+B"]
    return Server(argv + [str(port)], port)


# ----------------------------------------------------------------------------- checks
def _dataset_offset(head: bytes) -> int:
    """Where the data set starts after a Part-10 preamble and file meta group (PS3.10 7.1)."""
    if head[128:132] != b"DICM":
        return 0
    pos = 132
    while pos + 8 <= len(head):
        group, _elem, vr = struct.unpack_from("<HH2s", head, pos)
        if group != 0x0002:
            break
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            pos += 12 + struct.unpack_from("<L", head, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", head, pos + 6)[0]
    return pos


def _dataset_digest(path: Path) -> tuple[int, str]:
    """(size, BLAKE2b) of a file's data set: the bytes both sides must agree on (every SCP
    writes its own file meta group, so whole-file sizes differ by a few bytes)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fp:
        head = fp.read(1 << 16)
        offset = _dataset_offset(head)
        h.update(head[offset:])
        size = len(head) - offset
        while chunk := fp.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


_SENT_DIGESTS: dict[tuple[str, int, int], tuple[int, str]] = {}


def _sent_digest(path: Path) -> tuple[int, str]:
    """``_dataset_digest`` of a file that does not change between runs (computed once)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SENT_DIGESTS:
        _SENT_DIGESTS[key] = _dataset_digest(path)
    return _SENT_DIGESTS[key]


def received_files(folder: Path) -> list[Path]:
    """Part-10 files under ``folder`` (an SCP's output; hidden folders such as the archive's
    ``.incoming`` and non-DICOM files such as its index are left out)."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            path = Path(root) / name
            with open(path, "rb") as fp:
                if fp.read(132)[128:] == b"DICM":
                    found.append(path)
    return found


def check_received(folder: Path, sent: Sequence[Path], copies: int = 1) -> None:
    """Every sent file is on disk under ``folder``, whole: as many files as were sent and the
    same data set bytes (size and digest); raises ``RuntimeError`` otherwise."""
    got = sorted(_dataset_digest(p) for p in received_files(folder))
    want = sorted(_sent_digest(p) for p in sent for _ in range(copies))
    if len(set(got)) != len(set(want)) or (copies == 1 and got != want):
        raise RuntimeError(f"{folder}: {len(got)} files received, {len(want)} sent; "
                           f"{len(set(want) - set(got))} sent files missing or different on disk")
    if set(got) != set(want):
        raise RuntimeError(f"{folder}: the received files differ from the sent ones")


def driver(*args: Any) -> list[str]:
    return [PY, DRIVERS, *map(str, args)]


def driver_json(out: str) -> dict:
    """The last line a driver prints is its JSON result."""
    return json.loads(out.strip().splitlines()[-1])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
