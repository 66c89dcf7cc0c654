"""Bench (not a test): send one 1 GiB object from ``dicomdesk send`` to ``dicomdesk serve``.

Both run as separate processes; their peak RSS is sampled from /proc/<pid>/status (VmHWM,
the kernel's own high-water mark) and the throughput is the object's size over the send's
wall time. The object is a Raw Data Storage instance (PS3.3 A.37) whose one huge OB element
is written by hand in 8 MiB pieces into a temp dir, so nothing here holds 1 GiB in memory.

    .venv/bin/python bench/store_1gib.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
RAW_DATA_STORAGE = "1.2.840.10008.5.1.4.1.1.66"
LIMIT_MB = 200


def write_object(path: Path, size: int) -> None:
    """Header with pydicom, then (0009,1010) OB of ``size`` bytes appended in pieces (PS3.5 7.1.2)."""
    ds = Dataset()
    ds.SOPClassUID = RAW_DATA_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Bench^Large"
    ds.PatientID = "BENCH1G"
    ds.Modality = "OT"
    ds.add_new(0x00090010, "LO", "DICOMDESK BENCH")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RAW_DATA_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    piece = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    with open(path, "ab") as fp:
        fp.write(struct.pack("<HH2sHL", 0x0009, 0x1010, b"OB", 0, size))
        left = size
        while left:
            n = min(left, len(piece))
            fp.write(piece[:n])
            left -= n


def vm_hwm_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fp:
            for line in fp:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory(prefix="dicomdesk-bench-") as tmp:
        obj = Path(tmp) / "large.dcm"
        t0 = time.monotonic()
        write_object(obj, size)
        print(f"generated {obj.stat().st_size / 2**20:.0f} MiB in {time.monotonic() - t0:.1f} s")
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "dicomdesk", "serve", "--port", str(port),
                                   "--storage", str(Path(tmp) / "archive")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("dicomdesk serve did not start")
                    time.sleep(0.05)
            started = time.monotonic()
            sender = subprocess.Popen([sys.executable, "-m", "dicomdesk", "send", "--aec", "DICOMDESK",
                                       "--timeout", "120", "127.0.0.1", str(port), str(obj)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            peak_send = peak_serve = 0.0
            while sender.poll() is None:
                peak_send = max(peak_send, vm_hwm_mb(sender.pid))
                peak_serve = max(peak_serve, vm_hwm_mb(server.pid))
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            peak_serve = max(peak_serve, vm_hwm_mb(server.pid))
            output = sender.stdout.read() if sender.stdout else ""
        finally:
            server.terminate()
            server.wait(timeout=10)
        print(output.strip())
        print(f"send exit code {sender.returncode}")
        print(f"throughput: {size / 2**20 / elapsed:.1f} MiB/s ({elapsed:.1f} s for {size / 2**20:.0f} MiB)")
        print(f"peak RSS (VmHWM): dicomdesk send {peak_send:.1f} MB, dicomdesk serve {peak_serve:.1f} MB "
              f"(limit {LIMIT_MB} MB)")
        ok = sender.returncode == 0 and peak_send < LIMIT_MB and peak_serve < LIMIT_MB
        print("OK" if ok else "FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
