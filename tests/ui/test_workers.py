"""OperationWorker: callbacks become batched rows and coalesced progress on the GUI thread."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QThread

from dicomdesk.ui.workers import OperationWorker, TaskTracker


def test_rows_arrive_in_order_in_batches_before_finished(qtbot):
    batches: list[list[int]] = []
    events: list[str] = []

    def call(ctx):
        for i in range(5000):
            ctx.emit_row(i)
        return "result"

    worker = OperationWorker(call)
    worker.signals.rows.connect(lambda rows: (batches.append(rows), events.append("rows")))
    worker.signals.finished.connect(lambda r: events.append(f"finished:{r}"))
    with qtbot.waitSignal(worker.signals.done, timeout=20_000):
        worker.start()
    assert [i for batch in batches for i in batch] == list(range(5000))
    assert len(batches) < 5000
    assert events[-1] == "finished:result"


def test_progress_is_coalesced_and_the_last_value_is_delivered(qtbot):
    seen: list[int] = []

    def call(ctx):
        deadline = time.monotonic() + 0.5
        i = 0
        while time.monotonic() < deadline:
            i += 1
            ctx.report_progress(i)
        ctx.report_progress(-1)

    worker = OperationWorker(call)
    worker.signals.progress.connect(seen.append)
    with qtbot.waitSignal(worker.signals.done, timeout=20_000):
        worker.start()
    assert seen[-1] == -1
    assert len(seen) <= 0.5 * 15 + 3  # ~15 updates a second at most


def test_signals_are_delivered_on_the_gui_thread(qtbot):
    threads: list[object] = []
    worker = OperationWorker(lambda ctx: ctx.emit_row(threading.get_ident()))
    gui = QThread.currentThread()
    worker.signals.rows.connect(lambda rows: threads.append(QThread.currentThread()))
    with qtbot.waitSignal(worker.signals.done, timeout=20_000):
        worker.start()
    assert threads == [gui]


def test_cancel_sets_the_event_seen_by_the_operation(qtbot):
    started = threading.Event()

    def call(ctx):
        started.set()
        return ctx.cancel.wait(30)

    tracker = TaskTracker()
    worker = tracker.start(OperationWorker(call, label="slow"), transfer=True)
    assert tracker.transfer_count() == 1
    assert started.wait(30)
    with qtbot.waitSignal(worker.signals.finished, timeout=20_000) as blocker:
        tracker.cancel_all()
    assert blocker.args == [True]
    qtbot.waitUntil(lambda: tracker.transfer_count() == 0, timeout=20_000)


def test_exception_in_operation_becomes_a_sentence(qtbot):
    def call(ctx):
        raise OSError(2, "No such file or directory", "/nope")

    worker = OperationWorker(call)
    with qtbot.waitSignal(worker.signals.failed, timeout=20_000) as blocker:
        worker.start()
    assert blocker.args == ["File or folder not found: /nope."]


def test_an_operation_ending_after_its_window_is_gone_prints_no_traceback(qtbot, capfd):
    """Ctrl-C closes the window while the server's start-up work still runs: when that work
    ends, its signals object is already deleted; the end is dropped quietly, never as an
    "Error calling Python override of QRunnable::run()" traceback on stderr."""
    import shiboken6
    from PySide6.QtCore import QThreadPool

    release = threading.Event()
    pool = QThreadPool()
    worker = OperationWorker(lambda context: release.wait(10), label="late")
    worker.start(pool)
    shiboken6.delete(worker.signals)  # what deleting the window does to it
    release.set()
    assert pool.waitForDone(10_000)
    assert "Traceback" not in capfd.readouterr().err


_PAINT_EVERY_PANEL = """
import os, sys
from pathlib import Path
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from dicomdesk.ui.main_window import MainWindow

app = QApplication([])
folder = Path(sys.argv[1])
settings = QSettings(str(folder / "dicomdesk.ini"), QSettings.Format.IniFormat)
settings.setValue("server/storage_dir", str(folder / "storage"))
window = MainWindow(settings=settings, nodes_path=folder / "nodes.toml", autostart_server=False)
window.show()
for key in ("echo", "query", "send", "server", "nodes", "worklist", "commitment"):
    window.show_panel(key)
    window.grab()
    app.processEvents()
print(sorted({(Path("/proc/self/task") / t / "comm").read_text().strip()
              for t in os.listdir("/proc/self/task")}))
"""


def test_the_window_paints_without_waiting_for_helper_threads(tmp_path):
    """Qt's raster engine splits big alpha fills over a pool of helper threads and waits for
    them; on a loaded machine the GUI thread then stalls while they wait for a core. The main
    window keeps its painting on the GUI thread (favour_gui_thread): no pool thread is ever
    started, in a process of its own that starts without the variable set."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "QT_NO_GUI_THREADPOOL"}
    env["QT_QPA_PLATFORM"] = "offscreen"
    result = subprocess.run([sys.executable, "-c", _PAINT_EVERY_PANEL, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    threads = result.stdout.strip().splitlines()[-1]
    assert "pooled" not in threads, threads


def test_thread_relay_delivers_every_value_in_order_and_only_the_latest_progress(qtbot):
    """The one relay of the window: values put on many threads arrive in batches on the GUI
    thread, in the order each thread put them; ``put_latest`` keeps only the newest."""
    from dicomdesk.ui.workers import ThreadRelay

    relay = ThreadRelay()
    batches: list[list] = []
    latest: list = []
    relay.batch.connect(batches.append)
    relay.latest.connect(latest.append)

    def put(name: str) -> None:
        for i in range(2000):
            relay.put((name, i))
            relay.put_latest((name, i))

    threads = [threading.Thread(target=put, args=(n,)) for n in "ab"]
    relay.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    relay.stop()
    values = [v for batch in batches for v in batch]
    assert len(values) == 4000
    for name in "ab":
        assert [i for n, i in values if n == name] == list(range(2000))
    assert latest[-1] in (("a", 1999), ("b", 1999)) and len(latest) < 100
    relay.put("after stop")
    qtbot.wait(200)  # four drain periods of an event loop that runs
    assert batches[-1] != ["after stop"]  # nothing is delivered once stopped ...
    relay.drain()
    assert batches[-1] == ["after stop"]  # ... until someone drains again


def test_tracker_run_connects_the_slots_it_is_given(qtbot):
    tracker = TaskTracker()
    seen: list = []

    def call(ctx):
        ctx.emit_row(1)
        ctx.report_progress("half")
        return "result"

    worker = tracker.run(call, label="run", rows=seen.append, progress=seen.append,
                         finished=seen.append, done=lambda: seen.append("done"))
    qtbot.waitUntil(lambda: worker.is_done and "done" in seen, timeout=20_000)
    assert seen == [[1], "half", "result", "done"]
    assert tracker.active_count() == 0
