"""Bench (not a test): peak RSS of ``dicomdesk send`` when it changes a large image in flight.

One CT image of ``--size-mib`` MiB of pixel data (header from pydicom's CT_small, pixel data
appended in 8 MiB pieces, so the bench never holds it) is sent to ``dicomdesk serve`` three
ways: as is (page cache to socket), ``--deidentify`` and ``--set PatientID=...`` (rewritten
to a temp file, the pixel data streamed). The sender's peak RSS is the kernel's VmHWM
(wait4's ru_maxrss); a transformed send should stay near the plain one, whatever the size.

    .venv/bin/python bench/transform_rss.py [--size-mib 512]
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PY, Server, free_port, run_client  # noqa: E402

LIMIT_MB = 200


def write_image(path: Path, size_mib: int) -> None:
    import pydicom.data
    from pydicom import dcmread

    ds = dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 4096  # 32 MiB a 16-bit frame
    ds.NumberOfFrames = max(size_mib // 32, 1)
    size_mib = int(ds.NumberOfFrames) * 32
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    piece = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    size = size_mib * 1024 * 1024
    with open(path, "ab") as fp:
        fp.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, size))
        left = size
        while left:
            n = min(left, len(piece))
            fp.write(piece[:n])
            left -= n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="dicomdesk-bench-") as tmp:
        image = Path(tmp) / "large.dcm"
        write_image(image, args.size_mib)
        port = free_port()
        serve = [PY, "-m", "dicomdesk", "serve", "--port", str(port), "--storage", str(Path(tmp) / "a")]
        with Server(serve, port):
            for label, options in (("as is", []), ("--deidentify", ["--deidentify", "basic"]),
                                   ("--set PatientID", ["--set", "PatientID=BENCH"])):
                argv = [PY, "-m", "dicomdesk", "send", "--aec", "DICOMDESK", "--timeout", "120",
                        *options, "127.0.0.1", str(port), str(image)]
                wall, peak, _ = run_client(argv, timeout=600)
                rate = args.size_mib / wall
                print(f"{label:16s} {args.size_mib} MiB in {wall:5.1f} s ({rate:6.1f} MiB/s), "
                      f"sender peak RSS {peak:6.1f} MB")
                ok = ok and peak < LIMIT_MB
    print("OK" if ok else f"FAILED (limit {LIMIT_MB} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
