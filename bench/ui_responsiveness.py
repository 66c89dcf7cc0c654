"""Does the window stay responsive while the network works? And how fast does it open?

    .venv/bin/python bench/ui_responsiveness.py [--matches N] [--files N] [--launches N]

Two figures, each against its target from the desktop-application issue:

* **Event-loop stall** (target < 50 ms): the window is shown with every panel built; the Query
  panel searches a peer that answers N (10,000) STUDY-level matches (a pynetdicom Q/R SCP in
  another process, PS3.4 C.4.1.2: one Pending C-FIND response per match) while the Send panel
  sends M (500) small generated CT files to a ``dicomdesk serve`` process. A QTimer probe ticks
  every 5 ms on the GUI thread; the longest gap between two ticks, minus the interval, is the
  longest time the event loop could not run (so the longest a click or a repaint waited).
* **Launch to window shown** (target < 1.5 s): a fresh ``python`` process that imports
  dicomdesk's UI, builds the main window (local server auto-start included, as a user gets it)
  and shows it; measured from just before the process is spawned until the window's first
  expose, median of ``--launches`` runs. Interpreter start-up is included.

Runs offscreen (``QT_QPA_PLATFORM=offscreen``) unless a platform is already set. Settings,
address book and archives live in a temp folder (XDG_CONFIG_HOME/XDG_DATA_HOME point there).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

STALL_TARGET_MS = 50.0
LAUNCH_TARGET_S = 1.5
PROBE_INTERVAL_MS = 5

#: The C-FIND SCP, run in its own process as a remote PACS would be: N distinct studies.
FIND_PEER = r"""
import sys
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
count = int(sys.argv[1])
def on_find(event):
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for i in range(count):
        if event.is_cancelled:
            yield 0xFE00, None
            return
        ds.PatientName = f"BENCH^N{i:05d}"
        ds.PatientID = f"P{i:05d}"
        ds.StudyDate = f"2024{1 + i % 12:02d}{1 + i % 28:02d}"
        ds.StudyDescription = f"Study {i}"
        ds.AccessionNumber = f"A{i:06d}"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.999.{i + 1}"
        ds.NumberOfStudyRelatedSeries = 1
        ds.NumberOfStudyRelatedInstances = 1
        yield 0xFF00, ds
ae = AE("BENCHQR")
ae.add_supported_context("1.2.840.10008.5.1.4.1.2.2.1")
ae.add_supported_context("1.2.840.10008.5.1.4.1.2.1.1")
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
print(server.server_address[1], flush=True)
sys.stdin.read()
server.shutdown()
"""

#: The launch child: what `dicomdesk` does (QApplication, style, icon, MainWindow.show()).
LAUNCH_CHILD = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QSettings, QTimer
from PySide6.QtWidgets import QApplication
from dicomdesk.ui.assets import load_icon, load_style
from dicomdesk.ui.main_window import MainWindow
QCoreApplication.setOrganizationName("dicomdesk")
QCoreApplication.setApplicationName("dicomdesk")
app = QApplication(["dicomdesk"])
app.setWindowIcon(load_icon("dicomdesk"))
app.setStyleSheet(load_style())
settings = QSettings(os.path.join(sys.argv[2], "launch.ini"), QSettings.Format.IniFormat)
settings.setValue("server/port", int(sys.argv[3]))
settings.setValue("server/storage_dir", os.path.join(sys.argv[2], "launch-storage"))
window = MainWindow(settings=settings, nodes_path=os.path.join(sys.argv[2], "nodes.toml"))
class Exposed(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Expose and window.windowHandle().isExposed():
            print("shown", time.time(), flush=True)
            QTimer.singleShot(0, app.quit)
        return False
window.show()
window.windowHandle().installEventFilter(Exposed(app))
app.exec()
window.server_host.stop_now()
window.tracker.wait(5000)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _make_files(folder: Path, count: int) -> list[Path]:
    """``count`` small CT images (64x64x16 bit, ~9 KB each), one study and series."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    pixels = bytes(range(256)) * 32
    paths = []
    for i in range(count):
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientName, ds.PatientID, ds.Modality = "Bench^Send", "SEND1", "CT"
        ds.InstanceNumber = i + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = 64
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"ct{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def measure_stall(tmp: Path, matches: int, files: int) -> dict:
    """Search N matches and send M files at once; the probe's longest gap between ticks."""
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from dicomdesk import config
    from dicomdesk.ui.main_window import MainWindow

    paths = _make_files(tmp / "send", files)
    serve_port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    serve = subprocess.Popen(
        [sys.executable, "-m", "dicomdesk", "serve", "--port", str(serve_port), "--aet", "SINK",
         "--storage", str(tmp / "sink"), "--no-durable"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    find_peer = subprocess.Popen([sys.executable, "-c", FIND_PEER, str(matches)], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        find_port = int(find_peer.stdout.readline())  # type: ignore[union-attr]
        _wait_port(serve_port)
        nodes = tmp / "nodes.toml"
        config.save_nodes(nodes, [config.Node("bench-qr", "BENCHQR", "127.0.0.1", find_port),
                                  config.Node("sink", "SINK", "127.0.0.1", serve_port)])
        app = QApplication.instance() or QApplication(["dicomdesk"])
        settings = QSettings(str(tmp / "bench.ini"), QSettings.Format.IniFormat)
        settings.setValue("server/storage_dir", str(tmp / "storage"))
        window = MainWindow(settings=settings, nodes_path=nodes, autostart_server=False)
        window.resize(1280, 800)
        window.show()
        from dicomdesk.ui.workers import settle_heap

        settle_heap()  # as dicomdesk.ui.app.main does once the window is shown
        window.show_panel("query")
        query, send = window.query_panel, window.send_panel
        query.node_picker.select("bench-qr")
        send.node_picker.select("sink")
        send.add_paths([str(tmp / "send")])
        _run_until(app, lambda: not send._scans, 60)

        ticks: list[float] = []
        probe = QTimer()
        probe.setInterval(PROBE_INTERVAL_MS)
        probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
        probe.start()
        _run_until(app, lambda: len(ticks) > 20, 5)
        start = time.perf_counter()
        ticks.clear()
        query.search()
        send.send()
        find_done: list[float] = []
        send_done: list[float] = []
        query.search_finished.connect(lambda _r: find_done.append(time.perf_counter()))
        send.send_finished.connect(lambda _r: send_done.append(time.perf_counter()))
        _run_until(app, lambda: find_done and send_done, 300)
        probe.stop()
        gaps = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:])]
        stalls = sorted(max(0.0, g - PROBE_INTERVAL_MS) for g in gaps)
        figures = {
            "matches_shown": query.model.study_count(),
            "files_stored": send.model.count("stored"),
            "find_s": round(find_done[0] - start, 2),
            "send_s": round(send_done[0] - start, 2),
            "probe_ticks": len(ticks),
            "longest_stall_ms": round(stalls[-1], 1) if stalls else None,
            "p99_stall_ms": round(stalls[int(len(stalls) * 0.99)], 1) if stalls else None,
        }
        window.confirm_close = lambda count: True  # type: ignore[method-assign]
        window.close()
        window.tracker.cancel_all()
        window.tracker.wait(10_000)
        return figures
    finally:
        find_peer.stdin.close()  # type: ignore[union-attr]
        for proc in (find_peer, serve):
            proc.terminate()
            proc.wait(10)


def _run_until(app: object, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark did not finish in time")
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.001)


def measure_launch(tmp: Path, runs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    times = []
    for _ in range(runs):
        started = time.time()
        out = subprocess.run([sys.executable, "-c", LAUNCH_CHILD, str(REPO), str(tmp),
                              str(_free_port())], env=env, capture_output=True, text=True,
                             timeout=60)
        line = next((x for x in out.stdout.splitlines() if x.startswith("shown ")), None)
        if line is None:
            raise RuntimeError(f"the window did not show: {out.stderr[-2000:]}")
        times.append(float(line.split()[1]) - started)
    return {"launch_to_shown_s_median": round(statistics.median(times), 3),
            "launch_to_shown_s_all": [round(t, 3) for t in times]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matches", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--launches", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dicomdesk-ui-bench-") as name:
        tmp = Path(name)
        os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
        os.environ["XDG_DATA_HOME"] = str(tmp / "data")
        launch = measure_launch(tmp, args.launches)
        stall = measure_stall(tmp, args.matches, args.files)
    figures = {**stall, **launch}
    ok_stall = stall["longest_stall_ms"] is not None and stall["longest_stall_ms"] < STALL_TARGET_MS
    ok_launch = launch["launch_to_shown_s_median"] < LAUNCH_TARGET_S
    print(f"C-FIND of {args.matches} matches + send of {args.files} files at once:")
    print(f"  shown {stall['matches_shown']} matches in {stall['find_s']} s, "
          f"stored {stall['files_stored']} files in {stall['send_s']} s")
    print(f"  longest event-loop stall {stall['longest_stall_ms']} ms "
          f"(99th percentile {stall['p99_stall_ms']} ms) — target < {STALL_TARGET_MS:.0f} ms: "
          f"{'OK' if ok_stall else 'MISSED'}")
    print(f"launch to window shown: median {launch['launch_to_shown_s_median']} s "
          f"({', '.join(str(t) for t in launch['launch_to_shown_s_all'])}) — target < "
          f"{LAUNCH_TARGET_S} s: {'OK' if ok_launch else 'MISSED'}")
    print(json.dumps(figures))
    return 0 if ok_stall and ok_launch else 1


if __name__ == "__main__":
    sys.exit(main())
