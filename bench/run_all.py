"""Run every benchmark the way a user meets it: whole processes on both sides, defaults.

    .venv/bin/python bench/run_all.py [--quick] [--rounds N] [--small N] [--large N] [--only NAMES]
                                      [--pairs WORDS]

Every pair is timed the same way on both sides: the client is a whole process, timed from
exec to exit (interpreter start-up, imports, walking the folder, association, release),
started with the folder itself (``dicomdesk send DIR`` as ``storescu +sd DIR``); the server
runs at its default settings (``dicomdesk serve`` is durable by default, ``--no-durable`` is
reported as its own row; ``storescp`` as it comes, or with its best options where a row
says so). DCMTK runs with ``TCP_NODELAY=1`` (without it every message waits ~40 ms for a
delayed ACK). After each run every sent file is checked on the server's disk: as many files
as were sent, each with the same data set bytes (size and digest). Pairs alternate
(A B C A B C ...) ``--rounds`` times; the figures are medians, and the ratios compare pairs
of the same run. Peak RSS: ``ru_maxrss`` of each client, ``VmHWM`` of each server.

dicomdesk's modules are byte-compiled first and ``PYTHONDONTWRITEBYTECODE`` is dropped for
the processes started here, as in a user's installation (see ``_common.ENV``).

Scenarios:
  store-small   500 CT images of 0.525 MB, every pair
  store-large   10 multi-frame objects of 52 MB, every pair, peak RSS
  startup       ``dicomdesk send`` (1 file) / ``echo`` / ``find`` (1 match) vs DCMTK, median of 10
  find          one C-FIND with 10,000 matches: ``dicomdesk find`` vs ``findscu``, one SCP
  archive-find  the same from ``dicomdesk serve``'s archive (10,000 studies)
  echo-loop     200 associations with C-ECHO in one process (in-process timing, labelled)

The last lines printed are a markdown table, ready for the README.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import startup  # noqa: E402
from _common import (DICOMDESK, PY, Server, check_received, dd_serve, driver, driver_json,  # noqa: E402
                     free_port, make_large, make_small, median, run_client, storescp, total_size)

SCENARIOS: dict[str, Callable] = {}
#: (scenario, pair, result, ratios and notes): the markdown table printed at the end.
TABLE: list[tuple[str, str, str, str]] = []


def scenario(fn: Callable) -> Callable:
    SCENARIOS[fn.__name__.replace("_", "-")] = fn
    return fn


def report(name: str, pair: str, value: str, note: str = "") -> None:
    TABLE.append((name, pair, value, note))
    print(f"  {pair:<58} {value:>14}  {note}", flush=True)


def _settle() -> None:
    """Write dirty pages back before a timed run: otherwise a pair competes with the kernel's
    writeback of the data just generated, or of what the previous pair received."""
    if hasattr(os, "sync"):
        os.sync()


# ----------------------------------------------------------------------------- C-STORE
def _dd_send(port: int, folder: Path) -> list[str]:
    return DICOMDESK + ["send", "--aec", "ANY-SCP", "127.0.0.1", str(port), str(folder)]


def _storescu(port: int, folder: Path, best: bool = False) -> list[str]:
    return ["storescu", "-aec", "ANY-SCP", *(["-pdu", "131072"] if best else []), "+sd", "+r",
            "127.0.0.1", str(port), str(folder)]


#: Reference pairs of the ratios.
DCMTK_DEFAULT = "storescu +sd -> storescp"
DCMTK_BEST = "storescu +sd -> storescp (128 KiB PDU, +B)"
DD_DURABLE = "dicomdesk send DIR -> dicomdesk serve (default: durable)"
DD_FAST = "dicomdesk send DIR -> dicomdesk serve --no-durable"
DD_TO_STORESCP = "dicomdesk send DIR -> storescp (16 KiB PDU peer)"

#: pair -> (server factory (folder, port), client argv factory (port, data folder)).
STORE_PAIRS: dict[str, tuple[Callable, Callable]] = {
    DD_DURABLE: (lambda d, p: dd_serve(d, p), _dd_send),
    DD_FAST: (lambda d, p: dd_serve(d, p, durable=False), _dd_send),
    DCMTK_DEFAULT: (lambda d, p: storescp(d, p), _storescu),
    DCMTK_BEST: (lambda d, p: storescp(d, p, best=True), lambda p, f: _storescu(p, f, best=True)),
    DD_TO_STORESCP: (lambda d, p: storescp(d, p), _dd_send),
    "dicomdesk send DIR -> storescp (128 KiB PDU, +B)": (lambda d, p: storescp(d, p, best=True), _dd_send),
    "storescu +sd -> dicomdesk serve --no-durable": (lambda d, p: dd_serve(d, p, durable=False), _storescu),
}


def _selected_pairs(words: str | None) -> dict[str, tuple[Callable, Callable]]:
    """The store pairs whose name holds one of the comma-separated ``words`` (all without
    ``--pairs``); DCMTK's two reference pairs always run: the ratios are to them."""
    if not words:
        return STORE_PAIRS
    wanted = [w.strip() for w in words.split(",") if w.strip()]
    return {pair: run for pair, run in STORE_PAIRS.items()
            if pair in (DCMTK_DEFAULT, DCMTK_BEST) or any(w in pair for w in wanted)}


def _run_store(name: str, folder: Path, files: list[Path], rounds: int, tmp: Path, unit: str,
               pairs: dict[str, tuple[Callable, Callable]] = STORE_PAIRS) -> None:
    size = total_size(files)
    walls: dict[str, list[float]] = {k: [] for k in pairs}
    rss: dict[str, tuple[float, float]] = {k: (0.0, 0.0) for k in pairs}
    cpus: dict[str, list[tuple[float, float]]] = {k: [] for k in pairs}
    for r in range(rounds):
        for pair, (server, client) in pairs.items():
            out_dir = tmp / "out"
            _settle()  # each pair starts without the previous pair's dirty pages
            port = free_port()
            srv = server(out_dir, port)
            with srv:
                wall, client_mb, _, client_cpu = run_client(client(port, folder), with_cpu=True)
            check_received(out_dir, files)  # after the server stopped: everything it kept
            walls[pair].append(wall)
            cpus[pair].append((client_cpu, srv.cpu))
            rss[pair] = (max(client_mb, rss[pair][0]), max(srv.peak_mb, rss[pair][1]))
            shutil.rmtree(out_dir, ignore_errors=True)
            print(f"    round {r + 1} {pair}: {wall:.2f} s", flush=True)
    print(f"{name}: {len(files)} files, {size / 1e6:.0f} MB, whole processes, median of {rounds}")
    ref_default, ref_best = median(walls[DCMTK_DEFAULT]), median(walls[DCMTK_BEST])
    for pair, times in walls.items():
        t = median(times)
        value = f"{len(files) / t:.0f} files/s" if unit == "files" else f"{size / 1e6 / t:.0f} MB/s"
        note = f"x{ref_default / t:.2f} DCMTK default, x{ref_best / t:.2f} DCMTK best"
        if pair == DD_DURABLE and walls.get(DD_FAST):
            note += f", x{median(walls[DD_FAST]) / t:.2f} of --no-durable (the fsyncs)"
        per = 1000 / len(files)
        note += (f"; CPU per file client {median([c for c, _ in cpus[pair]]) * per:.2f} ms, "
                 f"server {median([c for _, c in cpus[pair]]) * per:.2f} ms")
        note += f"; peak RSS client {rss[pair][0]:.0f} MB, server {rss[pair][1]:.0f} MB"
        report(name, pair, value, note)


@scenario
def store_small(args, tmp: Path) -> None:
    t0 = time.monotonic()
    files = make_small(tmp / "small", args.small)
    print(f"generated {len(files)} small files in {time.monotonic() - t0:.1f} s", flush=True)
    _run_store("store-small", tmp / "small", files, args.rounds, tmp, "files", _selected_pairs(args.pairs))
    shutil.rmtree(tmp / "small")


@scenario
def store_large(args, tmp: Path) -> None:
    t0 = time.monotonic()
    files = make_large(tmp / "large", args.large)
    print(f"generated {len(files)} large files in {time.monotonic() - t0:.1f} s", flush=True)
    _run_store("store-large", tmp / "large", files, args.rounds, tmp, "MB", _selected_pairs(args.pairs))
    shutil.rmtree(tmp / "large")


# ----------------------------------------------------------------------------- start-up
@scenario
def startup_(args, tmp: Path) -> None:
    """``dicomdesk send`` of one file, ``echo``, ``find`` of one match, next to DCMTK."""
    rows = startup.measure(args.startup_runs, tmp / "startup")
    print(f"startup: whole process, exec to exit, median of {args.startup_runs} alternating runs")
    for command, peer, wall, cpu, note in rows:
        report("start-up", f"`{command}` → {peer}", f"{wall:.0f} ms", f"CPU {cpu:.0f} ms; {note}".rstrip("; "))


SCENARIOS["startup"] = SCENARIOS.pop("startup-")


# ----------------------------------------------------------------------------- C-FIND
def _dd_find(port: int) -> list[str]:
    return DICOMDESK + ["find", "--aec", "ANY-SCP", "--timeout", "300", "--level", "STUDY", "-k", "PatientName=*",
                        "-k", "StudyInstanceUID", "-k", "PatientID", "-k", "StudyDate",
                        "-k", "AccessionNumber", "-k", "StudyDescription", "-k", "ModalitiesInStudy",
                        "127.0.0.1", str(port)]


def _findscu(port: int) -> list[str]:
    return ["findscu", "-S", "-aec", "ANY-SCP", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=*",
            "-k", "StudyInstanceUID", "-k", "PatientID", "-k", "StudyDate", "-k", "AccessionNumber",
            "-k", "StudyDescription", "-k", "ModalitiesInStudy", "127.0.0.1", str(port)]


def _dd_find_count(out: str) -> int:
    """Matches ``dicomdesk find`` printed: its table has a header and a rule line."""
    return max(0, len([line for line in out.splitlines() if line.strip()]) - 2)


def _run_find(name: str, server: Server, n: int, rounds: int, peer: str) -> None:
    walls: dict[str, list[float]] = {"dicomdesk find": [], "findscu": []}
    with server:
        # Untimed: the server answers (an archive may still be opening its index), so neither
        # client's first run pays for the server's start.
        run_client(DICOMDESK + ["echo", "--aec", "ANY-SCP", "--timeout", "300", "127.0.0.1", str(server.port)])
        for _ in range(rounds):
            wall, _, out = run_client(_dd_find(server.port))
            if _dd_find_count(out) != n:
                raise RuntimeError(f"dicomdesk find printed {_dd_find_count(out)} matches, expected {n}")
            walls["dicomdesk find"].append(wall)
            wall, _, _ = run_client(_findscu(server.port))
            walls["findscu"].append(wall)
    ref = median(walls["findscu"])
    print(f"{name}: one C-FIND, {n} matches, whole processes, median of {rounds}")
    for client, values in walls.items():
        t = median(values)
        report(name, f"{client} → {peer}", f"{n / t:.0f} matches/s", f"x{ref / t:.2f} findscu")


@scenario
def find(args, tmp: Path) -> None:
    """One C-FIND with 10,000 matches from a dicomdesk AE whose hook yields prebuilt matches."""
    port = free_port()
    _run_find("find", Server(driver("dd_find_scp", port, args.matches), port), args.matches, args.rounds,
              "dicomdesk Q/R SCP (prebuilt matches)")


@scenario
def archive_find(args, tmp: Path) -> None:
    """The archive (``dicomdesk serve``) answering one C-FIND with 10,000 study matches."""
    folder = tmp / "archive"
    _, _, out = run_client(driver("fill_archive", folder, args.matches), timeout=600)
    print(f"filled an archive with {args.matches} studies in {driver_json(out)['elapsed']:.1f} s", flush=True)
    port = free_port()
    _run_find("archive-find", dd_serve(folder, port), args.matches, args.rounds, "dicomdesk serve (archive)")
    shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- echo
@scenario
def echo_loop(args, tmp: Path) -> None:
    """Association + C-ECHO + release, ``--echo`` in a row in one process: in-process timing
    (the whole-process echo is in ``startup``), against dicomdesk serve and storescp."""
    n = args.echo
    means: dict[str, list[float]] = {}
    pairs = {"dicomdesk (in-process loop) → dicomdesk serve": lambda p: dd_serve(tmp / "e", p),
             "dicomdesk (in-process loop) → storescp": lambda p: storescp(tmp / "e", p)}
    for _ in range(args.rounds):
        for pair, server in pairs.items():
            port = free_port()
            with server(port):
                _, _, out = run_client(driver("dd_echo_loop", "127.0.0.1", port, n))
            means.setdefault(pair, []).append(driver_json(out)["mean"])
        port = free_port()  # DCMTK: one echoscu process, n associations
        with storescp(tmp / "e", port):
            wall, _, _ = run_client(["echoscu", "-aec", "ANY-SCP", "--repeat", str(n), "127.0.0.1", str(port)])
        means.setdefault("echoscu --repeat (whole process / n) → storescp", []).append(wall / n)
    print(f"echo-loop: association + C-ECHO + release, {n} in a row, median of {args.rounds}")
    for pair, values in means.items():
        report("echo loop", pair, f"{median(values) * 1000:.2f} ms", "per association")
    shutil.rmtree(tmp / "e", ignore_errors=True)


# ----------------------------------------------------------------------------- main
def markdown_table(command: str) -> str:
    lines = [f"`{command}` on {datetime.date.today().isoformat()}:", "",
             "| scenario | pair (whole processes unless labelled) | result | ratios, notes |",
             "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in TABLE]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=500, help="small files [500]")
    parser.add_argument("--large", type=int, default=10, help="52 MB files [10]")
    parser.add_argument("--echo", type=int, default=200, help="associations in a row [200]")
    parser.add_argument("--matches", type=int, default=10000, help="C-FIND matches [10000]")
    parser.add_argument("--startup-runs", type=int, default=10, help="runs of each start-up pair [10]")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--pairs", default=None,
                        help="store scenarios: only the pairs whose name holds one of these "
                             "comma-separated words (DCMTK's two reference pairs always run)")
    parser.add_argument("--quick", action="store_true",
                        help="1 round, 100 small, 3 large, 50 echoes, 2000 matches, 3 start-ups")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.small, args.large, args.echo, args.matches, args.startup_runs = 1, 100, 3, 50, 2000, 3
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    started = time.monotonic()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory(prefix="dicomdesk-bench-") as tmp:
        for name in names:
            print(f"== {name}", flush=True)
            t0 = time.monotonic()
            SCENARIOS[name](args, Path(tmp))
            print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    command = "bench/run_all.py " + " ".join(sys.argv[1:])
    print(f"\nAll done in {time.monotonic() - started:.0f} s (load average at start {load:.1f}, "
          f"{os.cpu_count()} CPUs). Table (markdown):\n")
    print(markdown_table(command.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
