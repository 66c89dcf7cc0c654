"""The archive at scale: 1k -> 1M instances, dicomdesk beside Orthanc (issue 14).

    .venv/bin/python bench/archive_scale.py [--levels 1000,10000,100000,1000000]
        [--orthanc-max 100000] [--band 1000] [--port-base 27000] [--keep DIR]

One archive grows level by level (``_archive_gen.generate``: small files straight into the
storage folder, rows through ``Index.upsert_many``, the archive's bulk import). At each level:

- ingest: a band of ``--band`` new objects sent by DCMTK ``storescu`` (one association) to
  ``dicomdesk serve --no-durable`` (Orthanc does not fsync either; bench/run_all.py measures
  the durable cost) and to Orthanc (same files) — objects per second;
- index size: bytes of ``index.sqlite3`` (after a checkpoint) and per instance;
- start -> echo: from spawning ``dicomdesk serve`` on the archive to its first C-ECHO answer;
- queries: each C-FIND as the desktop app runs it (``operations.find``, dicomdesk's SCU, in
  this process, the same for both servers), timed from the call (the identifier built, the
  association requested: what a user waits for too) to the first and to the last match
  received; matches per second = matches / that last-match time (wall), and per CPU second
  of the server process and of this process (the client); "done" adds the A-RELEASE;
- GUI: a window (offscreen) on the archive: time from ``show()`` to a usable browser (first
  page of patients and the archive's counts shown), the longest event-loop gap meanwhile
  (a 5 ms QTimer probe), then RSS (VmRSS, and VmHWM) after opening a patient, a study and a
  series.

Orthanc (Debian's ``orthanc``) runs with a config of our own on our ports, storage in a temp
dir, up to ``--orthanc-max`` instances. The ingest bands add ``--band`` objects per level.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _archive_gen import generate, values_of, write_files  # noqa: E402
from _common import ENV, PY, cpu_seconds, vm_hwm_mb, wait_port  # noqa: E402

QUERIES = [
    ("all studies", "STUDY", {"PatientName": "*", "PatientID": "", "StudyInstanceUID": "",
                              "StudyDate": "", "AccessionNumber": "", "StudyDescription": "",
                              "ModalitiesInStudy": "", "NumberOfStudyRelatedSeries": "",
                              "NumberOfStudyRelatedInstances": ""}),
    ("one patient's studies", "STUDY", {"PatientID": "P0000007", "StudyInstanceUID": "",
                                        "StudyDate": "", "NumberOfStudyRelatedInstances": ""}),
    ("studies of 2020 (date range)", "STUDY", {"StudyDate": "20200101-20201231",
                                                "StudyInstanceUID": "", "PatientName": "",
                                                "NumberOfStudyRelatedInstances": ""}),
    ("PatientBirthDate", "STUDY", {"PatientBirthDate": "19470808", "StudyInstanceUID": "",
                                   "PatientName": ""}),
    ("CT series (Modality)", "SERIES", {"Modality": "CT", "SeriesInstanceUID": "",
                                        "StudyInstanceUID": "", "SeriesNumber": "",
                                        "NumberOfSeriesRelatedInstances": ""}),
]


def _free(port_base: int, offset: int) -> int:
    return port_base + offset


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        with open(f"/proc/{pid}/status") as fp:
            for line in fp:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ----------------------------------------------------------------------------- servers
class Proc:
    def __init__(self, argv: list[str], port: int, cwd: str | None = None) -> None:
        self.argv, self.port, self.cwd = argv, port, cwd
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Proc":
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, env=ENV, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def dicomdesk_serve(root: Path, port: int) -> Proc:
    return Proc([PY, "-m", "dicomdesk", "serve", "--port", str(port), "--aet", "DICOMDESK",
                 "--storage", str(root), "--no-durable"], port)


def orthanc(folder: Path, port: int, http_port: int) -> Proc:
    config = {
        "Name": "bench", "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"), "DicomAet": "ORTHANC", "DicomPort": port,
        "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False, "StorageCompression": False, "Plugins": [],
        "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True, "UnknownSopClassAccepted": True, "LimitFindResults": 0,
        "LimitFindInstances": 0, "StorageAccessOnFind": "Never", "HttpServerEnabled": True,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config))
    return Proc(["Orthanc", str(path)] if shutil.which("Orthanc") else ["orthanc", str(path)], port)


def first_echo(port: int, proc: subprocess.Popen, t0: float, timeout: float = 600) -> float:
    """Seconds from ``t0`` to the first C-ECHO answered on ``port``."""
    from dicomdesk.operations import Peer
    from dicomdesk.operations.verification import echo

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[:3]} exited {proc.returncode}")
            time.sleep(0.005)
            continue
        result = echo(Peer("127.0.0.1", port, called_aet="ANY-SCP", timeout=60))
        if result.ok:
            return time.perf_counter() - t0
        time.sleep(0.005)
    raise RuntimeError("no echo answer")


def storescu(port: int, aec: str, files: list[Path]) -> float:
    listing = Path(tempfile.mkdtemp()) / "band"
    listing.mkdir()
    for f in files:
        os.link(f, listing / f.name)
    t0 = time.perf_counter()
    result = subprocess.run(["storescu", "-aec", aec, "+sd", "127.0.0.1", str(port), str(listing)],
                            env=dict(ENV, TCP_NODELAY="1"), capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(listing.parent)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-500:])
    return elapsed


def wait_idle(pid: int, timeout: float = 900) -> float:
    """Wait until a server is idle (start-up work such as recovery done): seconds waited."""
    t0 = time.perf_counter()
    quiet = 0
    while time.perf_counter() - t0 < timeout and quiet < 2:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        quiet = quiet + 1 if cpu_seconds(pid) - before < 0.05 else 0
    return time.perf_counter() - t0


def timed_find(port: int, aec: str, level: str, keys: dict, pid: int | None = None
               ) -> tuple[float, float, int, float | None, float, float]:
    """(first match s, last match s, matches, server CPU s, done s, client CPU s) of one
    C-FIND, timed from the call of ``find`` (building the identifier and requesting the
    association included) to the first and the last match received; "done" is when ``find``
    returned (after the A-RELEASE). CPU times are what a busy machine does not distort:
    matches per server CPU second is the server's own cost, per client CPU second this
    process's (decoding each identifier into a pydicom Dataset, as the window does)."""
    from dicomdesk.operations import Peer, find

    times: list[float] = []
    cpu0 = cpu_seconds(pid) if pid else None
    client0 = time.process_time()
    t0 = time.perf_counter()
    result = find(Peer("127.0.0.1", port, called_aet=aec, timeout=600), level, keys,
                  model="study", on_match=lambda _m: times.append(time.perf_counter()),
                  keep_matches=False)
    end = time.perf_counter()
    client = time.process_time() - client0
    cpu = cpu_seconds(pid) - cpu0 if pid and cpu0 is not None else None
    if result.error:
        raise RuntimeError(f"find failed: {result.error}")
    first = (times[0] - t0) if times else end - t0
    last = (times[-1] - t0) if times else end - t0
    return first, last, len(times), cpu, end - t0, client


# ----------------------------------------------------------------------------- GUI
def gui_probe(root: str, port: int, serve: bool = True) -> None:
    """In a process of its own: the window as a user starts it (settings naming the archive,
    its server autostarted on ``port``; ``serve`` False: the browser alone, what the window
    costs before the server's start-up work), offscreen; prints one JSON line.

    The event loop is probed every 5 ms (``_loop_probe.LoopProbe``): each interval's wall time,
    the GUI thread's CPU time and the time it waited for a core (the machine's load), so the
    "own" gap (wall - that wait: what our process made the loop wait) is told apart from the
    scheduler's share, which a shared 2-core machine makes large and random."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QSettings
    from PySide6.QtWidgets import QApplication

    from _loop_probe import LoopProbe
    from dicomdesk.ui.main_window import MainWindow
    from dicomdesk.ui.workers import settle_heap

    app = QApplication.instance() or QApplication([])
    folder = tempfile.mkdtemp()
    settings = QSettings(os.path.join(folder, "dicomdesk.ini"), QSettings.Format.IniFormat)
    settings.setValue("server/storage_dir", root)
    settings.setValue("server/port", port)
    clock = QElapsedTimer()
    probe = LoopProbe(5)
    window = MainWindow(settings=settings, nodes_path=Path(folder) / "nodes.toml",
                        autostart_server=serve)
    panel = window.server_panel
    model = panel.archive_model
    usable: list[float] = []

    def loaded() -> None:
        if not usable and model.rowCount() > 0 and model.totals:
            usable.append(clock.nsecsElapsed() / 1e9)

    model.rows_loaded.connect(loaded)
    model.totals_changed.connect(lambda _t: loaded())
    window.show()
    settle_heap()  # as dicomdesk.ui.app.main does, before its event loop runs
    clock.start()
    probe.start()
    window.show_panel("server") if hasattr(window, "show_panel") else None
    panel.tabs.setCurrentWidget(panel.archive_browser)
    deadline = time.monotonic() + 60
    while not usable and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.001)
    settle = time.monotonic() + 1.0
    while time.monotonic() < settle:
        app.processEvents()
        time.sleep(0.001)
    opening = probe.mark()
    # open the first patient, its first study and series (pages on expand)
    view = panel.archive_view
    index = model.index(0, 0)
    for _ in range(3):
        view.expand(index)
        until = time.monotonic() + 10
        while model.rowCount(index) == 0 and time.monotonic() < until:
            app.processEvents()
            time.sleep(0.001)
        index = model.index(0, 0, index)
    for _ in range(100):
        app.processEvents()
        time.sleep(0.005)
    probe.stop()
    intervals = probe.intervals
    first, loading, expanding = intervals[:1], intervals[1:opening], intervals[opening:]
    worst = sorted(loading, key=lambda i: i.own, reverse=True)[:3]
    start = intervals[0].end - intervals[0].wall if intervals else 0.0
    out = {"usable_s": usable[0] if usable else None,
           "first_paint_ms": first[0].wall * 1000 if first else None,
           "first_paint_cpu_ms": first[0].cpu * 1000 if first else None,
           "worst_gaps": [(round(i.own * 1000), round(i.wall * 1000), round(i.end - start, 3))
                          for i in worst],
           "schedstat": probe.available,
           "rows_loaded": model.loaded(), "rss_mb": rss_mb(os.getpid()),
           "hwm_mb": rss_mb(os.getpid(), "VmHWM"), "totals": model.totals}
    for phase, part in (("", loading), ("_expanding", expanding)):
        for key, value in LoopProbe.summary(part).items():
            out[key.replace("_ms", f"{phase}_ms")] = value
    print(json.dumps(out), flush=True)
    window.server_host.stop_now()
    panel.archive_browser.shutdown()


def run_gui(root: Path, port: int, serve: bool = True) -> dict:
    out = subprocess.run([PY, __file__, "--gui", str(root), "--port-base", str(port),
                          *([] if serve else ["--gui-no-server"])], env=ENV,
                         capture_output=True, text=True, timeout=900)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(out.stderr[-1000:])
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- main
def index_size(root: Path) -> int:
    conn = sqlite3.connect(root / "index.sqlite3")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sum(p.stat().st_size for p in root.glob("index.sqlite3*"))


def _generated(root: Path) -> int:
    """Instances of the generator (not of the ingest bands) in the archive at ``root``."""
    from _archive_gen import ROOT_UID

    if not (root / "index.sqlite3").exists():
        return 0
    conn = sqlite3.connect(root / "index.sqlite3")
    try:
        return conn.execute("SELECT COUNT(*) FROM instance WHERE sop_instance_uid GLOB ?",
                            (f"{ROOT_UID}.3.*",)).fetchone()[0]
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="1000,10000,100000,1000000")
    ap.add_argument("--orthanc-max", type=int, default=100_000)
    ap.add_argument("--band", type=int, default=1000)
    ap.add_argument("--port-base", type=int, default=27000)
    ap.add_argument("--keep", default="")
    ap.add_argument("--gui", default="")
    ap.add_argument("--gui-no-server", action="store_true")
    args = ap.parse_args()
    if args.gui:
        gui_probe(args.gui, args.port_base, not args.gui_no_server)
        return
    levels = [int(x) for x in args.levels.split(",")]
    work = Path(args.keep or tempfile.mkdtemp(prefix="archive_scale_"))
    root = work / "dicomdesk"
    band_dir = work / "band"
    band_dir.mkdir(parents=True, exist_ok=True)
    orthanc_dir = work / "orthanc"
    orthanc_dir.mkdir(exist_ok=True)
    dd_port, or_port, or_http = args.port_base + 11, args.port_base + 12, args.port_base + 13
    done = _generated(root)  # --keep: an archive of an earlier run grows from where it is
    state_file = work / "state.json"
    orthanc_count = json.loads(state_file.read_text())["orthanc"] if state_file.exists() else 0
    rows: list[dict] = []
    for level_no, level in enumerate(levels):
        if level < done:
            print(f"== {level:,} instances: skipped (the kept archive holds {done:,})", flush=True)
            continue
        print(f"== {level:,} instances", flush=True)
        row: dict = {"level": level}
        if level > done:
            gen = generate(root, done, level)
            row["bulk_rate"] = (level - done) / gen["seconds"]
            print(f"  generated {level - done:,} in {gen['seconds']:.1f} s "
                  f"({row['bulk_rate']:,.0f}/s bulk)", flush=True)
            done = level
        run_tag = f"9{level_no}{int(time.time()) % 100000}"  # new objects at every run
        band = write_files(band_dir / f"l{run_tag}", 0, args.band, run=run_tag)
        size = index_size(root)
        row["index_mb"] = size / 1e6
        row["index_b_per_instance"] = size / level
        # dicomdesk: start -> echo, ingest band, queries
        with dicomdesk_serve(root, dd_port) as server:
            row["start_echo_s"] = first_echo(dd_port, server.proc, server.t0)
            row["start_idle_s"] = row["start_echo_s"] + wait_idle(server.proc.pid)
            row["dd_ingest"] = args.band / storescu(dd_port, "DICOMDESK", band)
            row["dd_queries"] = [timed_find(dd_port, "DICOMDESK", lvl, keys, server.proc.pid)
                                 for _, lvl, keys in QUERIES]
            row["dd_server_hwm_mb"] = vm_hwm_mb(server.proc.pid)
        # Orthanc beside it
        if level <= args.orthanc_max and (shutil.which("orthanc") or shutil.which("Orthanc")):
            if True:
                with orthanc(orthanc_dir, or_port, or_http) as server:
                    wait_port(or_port, server.proc, timeout=120)
                    first_echo(or_port, server.proc, server.t0)
                    wait_idle(server.proc.pid)
                    t0 = time.perf_counter()
                    studies = sorted({values_of(i)["StudyInstanceUID"]
                                      for i in range(orthanc_count, level)})
                    if studies:
                        fill = subprocess.run(
                            ["storescu", "-aec", "ORTHANC", "+sd", "+r", "127.0.0.1",
                             str(or_port), *[str(root / s) for s in studies]],
                            env=dict(ENV, TCP_NODELAY="1"), capture_output=True, text=True)
                        if fill.returncode != 0:
                            raise RuntimeError(fill.stderr[-500:])
                    orthanc_count = level
                    state_file.write_text(json.dumps({"orthanc": orthanc_count}))
                    print(f"  Orthanc filled with {level:,} in {time.perf_counter() - t0:.0f} s",
                          flush=True)
                    row["or_ingest"] = args.band / storescu(or_port, "ORTHANC", band)
                    row["or_queries"] = [timed_find(or_port, "ORTHANC", lvl, keys, server.proc.pid)
                                         for _, lvl, keys in QUERIES]
                row["or_index_mb"] = sum(p.stat().st_size for p in (orthanc_dir / "storage").glob("index*")) / 1e6
        row["gui"] = run_gui(root, args.port_base + 14)
        row["gui_browser"] = run_gui(root, args.port_base + 14, serve=False)
        rows.append(row)
        _print_row(row)
    _print_table(rows)
    (work / "archive_scale.json").write_text(json.dumps(rows, indent=1))
    print(f"results: {work / 'archive_scale.json'}")


def _q(q: list) -> str:
    first, last, n = q[:3]
    cpu = q[3] if len(q) > 3 else None
    client = q[5] if len(q) > 5 else None
    rate = f", {n / last:,.0f}/s" if n > 100 else ""
    if n > 100 and cpu:
        rate += f", {n / cpu:,.0f}/server-CPU-s"
    if n > 100 and client:
        rate += f", {n / client:,.0f}/client-CPU-s"
    done = f", done {q[4] * 1000:,.0f}" if len(q) > 4 else ""
    return f"{first * 1000:.0f} / {last * 1000:,.0f}{done} ms ({n:,}{rate})"


def _print_row(row: dict) -> None:
    print(f"  index {row['index_mb']:.1f} MB ({row['index_b_per_instance']:.0f} B/instance); "
          f"start->echo {row['start_echo_s']:.2f} s (idle after {row['start_idle_s']:.1f} s); ingest dicomdesk {row['dd_ingest']:,.0f}/s"
          + (f", Orthanc {row['or_ingest']:,.0f}/s" if "or_ingest" in row else ""), flush=True)
    for (name, _, _), dd, orr in zip(QUERIES, row["dd_queries"], row.get("or_queries", [None] * 9)):
        print(f"  {name:<30} dicomdesk {_q(dd):<36}" + (f" Orthanc {_q(orr)}" if orr else ""),
              flush=True)
    for label, key in (("GUI (server autostarted)", "gui"), ("GUI (browser alone)", "gui_browser")):
        _print_gui(label, row.get(key))


def _print_gui(label: str, g: dict | None) -> None:
    if not g:
        return
    print(f"  {label}: usable {g['usable_s']:.2f} s after show (first paint {g['first_paint_ms']:.0f} ms), "
          f"max event-loop gap {g['max_gap_ms']:.0f} ms loading, "
          f"{g['max_gap_expanding_ms']:.0f} ms expanding; without the machine's share (own gap) "
          f"{g.get('max_own_gap_ms', 0):.0f} / {g.get('max_own_gap_expanding_ms', 0):.0f} ms "
          f"(GUI-thread CPU in one interval at most {g.get('max_gui_cpu_ms', 0):.0f} / "
          f"{g.get('max_gui_cpu_expanding_ms', 0):.0f} ms, blocked in the process at most "
          f"{g.get('max_blocked_ms', 0):.0f} / {g.get('max_blocked_expanding_ms', 0):.0f} ms); "
          f"{g['rows_loaded']} rows loaded, "
          f"RSS {g['rss_mb']:.0f} MB (peak {g['hwm_mb']:.0f} MB)", flush=True)


def _print_table(rows: list[dict]) -> None:
    head = "| | " + " | ".join(f"{r['level']:,}" for r in rows) + " |"
    print("\n" + head)
    print("|---" * (len(rows) + 1) + "|")

    def line(name: str, fn) -> None:
        cells = []
        for r in rows:
            try:
                cells.append(fn(r))
            except (KeyError, TypeError):
                cells.append("—")
        print(f"| {name} | " + " | ".join(cells) + " |")

    line("C-STORE ingest, dicomdesk / Orthanc (obj/s)",
         lambda r: f"{r['dd_ingest']:,.0f} / " + (f"{r['or_ingest']:,.0f}" if "or_ingest" in r else "—"))
    line("index size (B/instance), dicomdesk", lambda r: f"{r['index_b_per_instance']:.0f}")
    line("`dicomdesk serve` start → first C-ECHO (→ idle: recovery done)",
         lambda r: f"{r['start_echo_s']:.2f} s ({r['start_idle_s']:.1f} s)")
    for qi, (name, _, _) in enumerate(QUERIES):
        line(f"C-FIND {name}: first / last match, dicomdesk",
             lambda r, qi=qi: _q(r["dd_queries"][qi]))
        line(f"C-FIND {name}: first / last match, Orthanc",
             lambda r, qi=qi: _q(r["or_queries"][qi]))
    line("window → usable browser", lambda r: f"{r['gui']['usable_s']:.2f} s")
    line("window's first paint (all panels)", lambda r: f"{r['gui']['first_paint_ms']:.0f} ms")
    line("max event-loop gap while the browser loads / opening 3 levels (browser alone)",
         lambda r: f"{r['gui_browser']['max_gap_ms']:.0f} / "
                   f"{r['gui_browser']['max_gap_expanding_ms']:.0f} ms")
    line("GUI thread's CPU in the longest interval: loading / opening (browser alone)",
         lambda r: f"{r['gui_browser']['max_gui_cpu_ms']:.0f} / "
                   f"{r['gui_browser']['max_gui_cpu_expanding_ms']:.0f} ms")
    line("max event-loop gap loading / opening (server autostarted: recovery in-process)",
         lambda r: f"{r['gui']['max_gap_ms']:.0f} / {r['gui']['max_gap_expanding_ms']:.0f} ms")
    for key, name in (("gui_browser", "browser alone"), ("gui", "server autostarted")):
        line(f"max own gap (wall - wait for a core) loading / opening ({name})",
             lambda r, key=key: f"{r[key]['max_own_gap_ms']:.0f} / "
                                f"{r[key]['max_own_gap_expanding_ms']:.0f} ms")
        line(f"GUI thread's CPU / blocked in the process, most in one interval ({name})",
             lambda r, key=key: f"{max(r[key]['max_gui_cpu_ms'], r[key]['max_gui_cpu_expanding_ms']):.0f} / "
                                f"{max(r[key]['max_blocked_ms'], r[key]['max_blocked_expanding_ms']):.0f} ms")
    line("app RSS (peak), server autostarted", lambda r: f"{r['gui']['rss_mb']:.0f} MB ({r['gui']['hwm_mb']:.0f})")
    line("app RSS (peak), browser alone",
         lambda r: f"{r['gui_browser']['rss_mb']:.0f} MB ({r['gui_browser']['hwm_mb']:.0f})")


if __name__ == "__main__":
    main()
