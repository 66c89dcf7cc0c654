"""What durability costs on this disk: fsync of 0.5 MB files, one at a time and 8 at once, and
of a folder after one or 8 new links (what the archive's journal does per object / per batch).

    .venv/bin/python bench/fsync_cost.py [FOLDER]     # FOLDER on the archive's file system [./]

Durable ``dicomdesk serve`` pays, per object, a file fsync and a share of a journal-folder
fsync (docs/security.md). With a sender's asynchronous window the archive runs the file
fsyncs of several objects at once and one folder fsync per batch (``archive/committer.py``);
these figures say what that saves here. Medians of 3 runs of 64 objects.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

COUNT, SIZE, AT_ONCE = 64, 525_000, 8


def _write(folder: str, name: str, data: bytes) -> int:
    fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, data)
    return fd


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def measure(folder: str) -> dict[str, list[float]]:
    data = os.urandom(SIZE)
    res: dict[str, list[float]] = {"file fsync, one at a time": [], f"file fsync, {AT_ONCE} at once": [],
                                   "folder fsync after 1 new link": [],
                                   f"folder fsync after {AT_ONCE} new links": []}
    for run in range(3):
        fds = [_write(folder, f"a{run}-{i}", data) for i in range(COUNT)]
        t = time.perf_counter()
        for fd in fds:
            os.fsync(fd)
        res["file fsync, one at a time"].append((time.perf_counter() - t) / COUNT * 1e3)
        fds2 = [_write(folder, f"b{run}-{i}", data) for i in range(COUNT)]
        t = time.perf_counter()
        with ThreadPoolExecutor(AT_ONCE) as pool:
            list(pool.map(os.fsync, fds2))
        res[f"file fsync, {AT_ONCE} at once"].append((time.perf_counter() - t) / COUNT * 1e3)
        for fd in fds + fds2:
            os.close(fd)
        t = time.perf_counter()
        for i in range(COUNT):
            os.link(os.path.join(folder, f"a{run}-{i}"), os.path.join(folder, f"la{run}-{i}"))
            _fsync_folder(folder)
        res["folder fsync after 1 new link"].append((time.perf_counter() - t) / COUNT * 1e3)
        t = time.perf_counter()
        for start in range(0, COUNT, AT_ONCE):
            for i in range(start, start + AT_ONCE):
                os.link(os.path.join(folder, f"b{run}-{i}"), os.path.join(folder, f"lb{run}-{i}"))
            _fsync_folder(folder)
        res[f"folder fsync after {AT_ONCE} new links"].append((time.perf_counter() - t) / COUNT * 1e3)
    return res


def main() -> int:
    base = sys.argv[1] if len(sys.argv) > 1 else "."
    folder = tempfile.mkdtemp(prefix=".fsync-cost-", dir=base)
    try:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        for name, runs in measure(folder).items():
            print(f"{name:<34} {statistics.median(runs):6.2f} ms per object "
                  f"(runs {', '.join(f'{r:.2f}' for r in runs)})")
        print(f"({COUNT} objects of {SIZE / 1e6:.3f} MB per run; load average {load:.1f})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
