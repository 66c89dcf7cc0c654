"""Run every benchmark: dicomdesk against pynetdicom and DCMTK on the same work, alternately.

    .venv/bin/python bench/run_all.py [--quick] [--rounds N] [--small N] [--large N] [--only NAMES]

Data is generated in a temp dir (nothing large is committed). Each scenario runs its pairs
in turn, ``--rounds`` times (round 1: every pair, round 2: every pair, ...), and prints the
median, the ratios to the reference pairs, and the peak RSS of each side. DCMTK always runs
with ``TCP_NODELAY=1`` (without it every message waits ~40 ms for a delayed ACK).

Timing: Python clients time their own work (association to release, file headers read
included, interpreter start-up excluded); DCMTK clients are timed as whole processes (their
start-up is a few ms). Every SCP writes each object to disk; the dicomdesk server runs as
``dicomdesk serve --no-durable`` except in the durable scenario (DCMTK and pynetdicom do not
fsync). Peak RSS: ``ru_maxrss`` of each client, ``VmHWM`` of each server.

Scenarios: store-small, store-large, echo (200 associations in one process), echo-process
(``dicomdesk echo`` vs ``python -m pynetdicom echoscu`` wall time), find (10,000 matches),
archive-find (the archive serving 10,000 matches), durable (archive durable vs not).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (PY, Server, driver, driver_json, free_port, make_large,  # noqa: E402
                     make_small, median, run_client, total_size)

SCENARIOS: dict[str, Callable] = {}
TABLE: list[tuple[str, str, str, str]] = []  # (scenario, pair, value, note)


def scenario(fn: Callable) -> Callable:
    SCENARIOS[fn.__name__.replace("_", "-")] = fn
    return fn


def report(name: str, pair: str, value: str, note: str = "") -> None:
    TABLE.append((name, pair, value, note))
    print(f"  {pair:<52} {value:>16}  {note}", flush=True)


# ----------------------------------------------------------------------------- servers
def dd_serve(folder: Path, port: int, *, durable: bool = False, max_pdu: int | None = None) -> Server:
    argv = [PY, "-m", "dicomdesk", "serve", "--aet", "ANY-SCP", "--port", str(port), "--storage",
            str(folder), "--durable" if durable else "--no-durable"]
    if max_pdu is not None:
        argv += ["--max-pdu", str(max_pdu)]
    return Server(argv, port)


def storescp(folder: Path, port: int, best: bool = False) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["storescp", "-aet", "ANY-SCP", "-od", str(folder)]
    if best:
        argv += ["-pdu", "131072", "+B"]
    return Server(argv + [str(port)], port)


def pn_scp(folder: Path, port: int) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    return Server(driver("pn_store_scp", port, folder), port)


# ----------------------------------------------------------------------------- C-STORE
def _settle() -> None:
    """Write dirty pages back before a timed run: otherwise a pair competes with the kernel's
    writeback of the data just generated, or of the 260 MB the previous pair received."""
    if hasattr(os, "sync"):
        os.sync()


def _store_pairs(files_list: Path) -> dict[str, tuple]:
    """pair name -> (server factory, client argv factory, client is timed internally)."""
    def storescu(port: int, best: bool = False) -> list[str]:
        argv = ["storescu", "-aec", "ANY-SCP"]
        if best:
            argv += ["-pdu", "131072"]
        return argv + ["127.0.0.1", str(port), *files_list.read_text().split("\n")[:-1]]

    return {
        "dicomdesk -> dicomdesk serve": (lambda d, p: dd_serve(d, p), lambda p: driver(
            "dd_store_scu", "127.0.0.1", p, files_list), True),
        "DCMTK storescu -> storescp (default PDU)": (lambda d, p: storescp(d, p), storescu, False),
        "DCMTK storescu -> storescp (128 KiB PDU, +B)": (
            lambda d, p: storescp(d, p, True), lambda p: storescu(p, True), False),
        "dicomdesk -> DCMTK storescp (default PDU)": (lambda d, p: storescp(d, p), lambda p: driver(
            "dd_store_scu", "127.0.0.1", p, files_list), True),
        "dicomdesk -> DCMTK storescp (128 KiB PDU, +B)": (
            lambda d, p: storescp(d, p, True), lambda p: driver(
                "dd_store_scu", "127.0.0.1", p, files_list, 131072), True),
        "DCMTK storescu -> dicomdesk serve": (lambda d, p: dd_serve(d, p), storescu, False),
        "pynetdicom -> pynetdicom": (lambda d, p: pn_scp(d, p), lambda p: driver(
            "pn_store_scu", "127.0.0.1", p, files_list), True),
    }


def _run_store(name: str, files: list[Path], rounds: int, tmp: Path, unit: str,
               pairs_wanted: list[str] | None = None) -> None:
    files_list = tmp / f"{name}.list"
    files_list.write_text("".join(f"{p}\n" for p in files))
    size = total_size(files)
    pairs = _store_pairs(files_list)
    if pairs_wanted:
        pairs = {k: v for k, v in pairs.items() if k in pairs_wanted}
    results: dict[str, list[float]] = {k: [] for k in pairs}
    rss: dict[str, tuple[float, float]] = {}
    for r in range(rounds):
        for pair, (server, client, internal) in pairs.items():
            out_dir = tmp / "out"
            _settle()  # each pair starts without the previous pair's dirty pages
            port = free_port()
            srv = server(out_dir, port)
            with srv:
                wall, client_mb, out = run_client(client(port))
            elapsed = driver_json(out)["elapsed"] if internal else wall
            results[pair].append(elapsed)
            rss[pair] = (max(client_mb, rss.get(pair, (0, 0))[0]), max(srv.peak_mb, rss.get(pair, (0, 0))[1]))
            shutil.rmtree(out_dir, ignore_errors=True)
            print(f"    round {r + 1} {pair}: {elapsed:.2f} s", flush=True)
    print(f"{name}: {len(files)} files, {size / 1e6:.0f} MB, median of {rounds}")
    ref_default = median(results.get("DCMTK storescu -> storescp (default PDU)", []))
    ref_best = median(results.get("DCMTK storescu -> storescp (128 KiB PDU, +B)", []))
    ref_pn = median(results.get("pynetdicom -> pynetdicom", []))
    for pair, times in results.items():
        t = median(times)
        value = f"{len(files) / t:.0f} files/s" if unit == "files" else f"{size / 1e6 / t:.0f} MB/s"
        note = (f"x{ref_default / t:.2f} DCMTK default, x{ref_best / t:.2f} DCMTK best, "
                f"x{ref_pn / t:.1f} pynetdicom; peak RSS SCU {rss[pair][0]:.0f} MB, SCP {rss[pair][1]:.0f} MB")
        report(name, pair, value, note)


@scenario
def store_small(args, tmp: Path) -> None:
    t0 = time.monotonic()
    files = make_small(tmp / "small", args.small)
    print(f"generated {len(files)} small files in {time.monotonic() - t0:.1f} s", flush=True)
    _run_store("store-small", files, args.rounds, tmp, "files")
    shutil.rmtree(tmp / "small")


@scenario
def store_large(args, tmp: Path) -> None:
    t0 = time.monotonic()
    files = make_large(tmp / "large", args.large)
    print(f"generated {len(files)} large files in {time.monotonic() - t0:.1f} s", flush=True)
    _run_store("store-large", files, args.rounds, tmp, "MB")
    shutil.rmtree(tmp / "large")


@scenario
def durable(args, tmp: Path) -> None:
    """The archive server with fsync before each success response vs without."""
    files = make_small(tmp / "dur", args.small)
    files_list = tmp / "dur.list"
    files_list.write_text("".join(f"{p}\n" for p in files))
    results: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for is_durable in (False, True):
            _settle()  # neither run pays for the other's (or the generator's) writeback
            port = free_port()
            with dd_serve(tmp / "dur-out", port, durable=is_durable):
                _, _, out = run_client(driver("dd_store_scu", "127.0.0.1", port, files_list))
            results[is_durable].append(driver_json(out)["elapsed"])
            shutil.rmtree(tmp / "dur-out", ignore_errors=True)
    fast, slow = median(results[False]), median(results[True])
    print(f"durable: {len(files)} small files, dicomdesk -> dicomdesk serve")
    report("durable", "dicomdesk serve --no-durable", f"{len(files) / fast:.0f} files/s")
    report("durable", "dicomdesk serve --durable (fsync)", f"{len(files) / slow:.0f} files/s",
           f"x{fast / slow:.2f} of non-durable")
    shutil.rmtree(tmp / "dur")


# ----------------------------------------------------------------------------- echo
@scenario
def echo(args, tmp: Path) -> None:
    """Association + C-ECHO + release, 200 in a row in one client process."""
    n = args.echo
    means: dict[str, list[float]] = {}
    pairs = {
        "dicomdesk -> dicomdesk serve": (lambda p: dd_serve(tmp / "e", p), "dd_echo_loop"),
        "dicomdesk -> DCMTK storescp": (lambda p: storescp(tmp / "e", p), "dd_echo_loop"),
        "pynetdicom -> pynetdicom": (lambda p: pn_scp(tmp / "e", p), "pn_echo_loop"),
    }
    for _ in range(args.rounds):
        for pair, (server, name) in pairs.items():
            port = free_port()
            with server(port):
                _, _, out = run_client(driver(name, "127.0.0.1", port, n))
            means.setdefault(pair, []).append(driver_json(out)["mean"])
        port = free_port()  # DCMTK: one echoscu process, n associations (--repeat runs n)
        with storescp(tmp / "e", port):
            wall, _, _ = run_client(["echoscu", "-aec", "ANY-SCP", "--repeat", str(n), "127.0.0.1", str(port)])
        means.setdefault("DCMTK echoscu --repeat -> storescp", []).append(wall / n)
    print(f"echo: association + C-ECHO + release, {n} in a row in one process, median of {args.rounds}")
    ref = median(means["DCMTK echoscu --repeat -> storescp"])
    pn = median(means["pynetdicom -> pynetdicom"])
    for pair, values in means.items():
        m = median(values)
        report("echo", pair, f"{m * 1000:.2f} ms", f"x{m / ref:.1f} of DCMTK, x{pn / m:.0f} faster than pynetdicom")


@scenario
def echo_process(args, tmp: Path) -> None:
    """``dicomdesk echo`` as a whole process vs ``python -m pynetdicom echoscu``."""
    walls: dict[str, list[float]] = {"dicomdesk echo": [], "python -m pynetdicom echoscu": [],
                                     "DCMTK echoscu": []}
    port = free_port()
    with storescp(tmp / "e", port):
        for _ in range(max(5, args.rounds * 2)):
            for name, argv in (
                    ("dicomdesk echo", [PY, "-m", "dicomdesk", "echo", "--aec", "ANY-SCP", "127.0.0.1", str(port)]),
                    ("python -m pynetdicom echoscu", [PY, "-m", "pynetdicom", "echoscu", "-aec", "ANY-SCP",
                                                      "127.0.0.1", str(port)]),
                    ("DCMTK echoscu", ["echoscu", "-aec", "ANY-SCP", "127.0.0.1", str(port)])):
                wall, mb, _ = run_client(argv)
                walls[name].append(wall)
    ref = median(walls["python -m pynetdicom echoscu"])
    print("echo-process: whole process wall time (start-up, imports, association, echo, release)")
    for name, values in walls.items():
        report("echo-process", name, f"{median(values) * 1000:.0f} ms", f"x{median(values) / ref:.2f} of pynetdicom")


# ----------------------------------------------------------------------------- C-FIND
@scenario
def find(args, tmp: Path) -> None:
    """One C-FIND with 10,000 matches from an SCP whose hook yields prebuilt identifiers."""
    n = args.matches
    rates: dict[str, list[float]] = {}
    pairs = {
        "dicomdesk -> dicomdesk SCP": ("dd_find_scp", "dd_find_scu", True),
        "dicomdesk -> pynetdicom SCP": ("pn_find_scp", "dd_find_scu", True),
        "pynetdicom -> pynetdicom SCP": ("pn_find_scp", "pn_find_scu", True),
        "pynetdicom -> dicomdesk SCP": ("dd_find_scp", "pn_find_scu", True),
        "DCMTK findscu -> dicomdesk SCP": ("dd_find_scp", None, False),
    }
    for _ in range(args.rounds):
        for pair, (server, client, internal) in pairs.items():
            port = free_port()
            with Server(driver(server, port, n), port):
                if client is None:
                    argv = ["findscu", "-S", "-aec", "ANY-SCP", "-k", "QueryRetrieveLevel=STUDY",
                            "-k", "PatientName=*", "-k", "StudyInstanceUID", "-k", "PatientID",
                            "127.0.0.1", str(port)]
                    wall, _, _ = run_client(argv)
                    rates.setdefault(pair, []).append(n / wall)
                else:
                    _, _, out = run_client(driver(client, "127.0.0.1", port))
                    res = driver_json(out)
                    if res["matches"] != n:
                        raise RuntimeError(f"{pair}: {res['matches']} matches, expected {n}")
                    rates.setdefault(pair, []).append(n / res["elapsed"])
    print(f"find: one C-FIND, {n} matches, median of {args.rounds}")
    pn = median(rates["pynetdicom -> pynetdicom SCP"])
    for pair, values in rates.items():
        report("find", pair, f"{median(values):.0f} matches/s", f"x{median(values) / pn:.1f} of pynetdicom")


@scenario
def archive_find(args, tmp: Path) -> None:
    """The archive (dicomdesk serve) answering one C-FIND with 10,000 study matches."""
    n = args.matches
    folder = tmp / "archive"
    _, _, out = run_client(driver("fill_archive", folder, n), timeout=600)
    print(f"filled an archive with {n} studies in {driver_json(out)['elapsed']:.1f} s", flush=True)
    rates: dict[str, list[float]] = {}
    port = free_port()
    with dd_serve(folder, port):
        for _ in range(args.rounds):
            for pair, client in (("dicomdesk -> dicomdesk serve (archive)", "dd_find_scu"),
                                 ("pynetdicom -> dicomdesk serve (archive)", "pn_find_scu")):
                _, _, out = run_client(driver(client, "127.0.0.1", port))
                res = driver_json(out)
                if res["matches"] != n:
                    raise RuntimeError(f"{pair}: {res['matches']} matches, expected {n}")
                rates.setdefault(pair, []).append(n / res["elapsed"])
    print(f"archive-find: {n} matches from the archive, median of {args.rounds}")
    for pair, values in rates.items():
        report("archive-find", pair, f"{median(values):.0f} matches/s")


# ----------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=500, help="small files [500]")
    parser.add_argument("--large", type=int, default=10, help="50 MB files [10]")
    parser.add_argument("--echo", type=int, default=200, help="associations in a row [200]")
    parser.add_argument("--matches", type=int, default=10000, help="C-FIND matches [10000]")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help="1 round, 100 small, 3 large, 50 echoes, 2000 matches")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.small, args.large, args.echo, args.matches = 1, 100, 3, 50, 2000
    names = args.only.split(",") if args.only else list(SCENARIOS)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dicomdesk-bench-") as tmp:
        for name in names:
            print(f"== {name}", flush=True)
            t0 = time.monotonic()
            SCENARIOS[name](args, Path(tmp))
            print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    print(f"\nAll done in {time.monotonic() - started:.0f} s. Table (markdown):\n")
    print("| scenario | pair | result | ratios, peak RSS |")
    print("|---|---|---|---|")
    for row in TABLE:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
