"""Run one ``operations`` call in a QThreadPool and re-emit its callbacks as Qt signals.

``operations`` functions block and report through plain callbacks called on the worker thread
(docs/internals.md "operations.py"). Widgets may only be touched on the GUI thread, so the worker
never emits per callback: it hands values to a :class:`ThreadRelay` (a lock-protected list that a
QTimer on the GUI thread drains every 50 ms; the in-window server and the protocol inspector use
the same relay). Two consequences the panels rely on:

* ``rows`` arrive in batches (one model insert per batch), so a burst of thousands of C-FIND
  responses (PS3.4 C.4.1.2: one Pending response per match) never blocks the event loop;
* ``progress`` carries only the latest value, at most ~15 times a second; values that must not be
  lost (a file's final state) go through ``rows``.

Every value crossing the thread boundary is immutable (frozen dataclasses, tuples, str), and
cancellation is a ``threading.Event`` that the operation polls (internals.md: ``cancel``).

The GIL is the other shared resource: while a worker decodes thousands of responses in Python,
each call Qt makes into Python on the GUI thread (a model's ``index``/``data`` during a tree
layout, a slot) waits for the GIL, up to the interpreter's switch interval each time. So the
GUI thread can close the tracker's *gate* around a burst of such work (``TaskTracker.gui_work``):
workers pause at their next callback (``emit_row``/``report_progress``) until it reopens, and
the burst runs without contention.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal

from dicomdesk.ui.errors import describe_exception

__all__ = ["GUI_SWITCH_INTERVAL_S", "OperationWorker", "TaskTracker", "ThreadRelay", "WorkerContext",
           "WorkerSignals", "favour_gui_thread", "no_gc_pause", "settle_heap"]

_log = logging.getLogger(__name__)

#: GUI-side drain period: the longest a batch waits, and the budget per batch.
DRAIN_INTERVAL_MS = 50
#: Minimum seconds between two progress signals (~15 updates a second).
PROGRESS_PERIOD_S = 1.0 / 15.0


#: The interpreter's thread switch interval in the window's process. CPython's default (5 ms) is
#: how long the GUI thread may wait for the GIL at *each* call Qt makes into Python while a
#: worker decodes responses; 1 ms bounds that wait at a small cost in worker throughput.
GUI_SWITCH_INTERVAL_S = 0.001


#: Qt's raster engine hands every fill of 96 or more lines with alpha (and image conversions
#: and smooth scaling) to a pool of helper threads and *waits* for them. On a busy 2-core
#: machine those threads wait for a core, and the GUI thread with them: 35-90 ms stalls of
#: the event loop measured while the window painted (bench/_loop_probe.py: the GUI thread
#: blocked while the pool's threads sat in the run queue). Qt reads this variable once, when
#: the pool is first needed; set, the GUI thread paints alone (a few ms more CPU per paint).
QT_NO_GUI_THREADPOOL = "QT_NO_GUI_THREADPOOL"


def favour_gui_thread() -> None:
    """Shorten the GIL switch interval (process-wide) so the GUI thread gets the GIL back
    quickly from worker and server threads, and keep Qt's painting on the GUI thread
    (``QT_NO_GUI_THREADPOOL``); called once by the main window, before its first paint."""
    import os
    import sys

    if sys.getswitchinterval() > GUI_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
    os.environ.setdefault(QT_NO_GUI_THREADPOOL, "1")


@contextmanager
def no_gc_pause():
    """Build many Qt wrappers without a cyclic-GC pass in the middle.

    Creating thousands of QStandardItems triggers collections; a full one walks every object of
    the process (pydicom data, models) and was the longest event-loop stall measured
    (bench/ui_responsiveness.py). Collection resumes afterwards, between event-loop passes.
    """
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def settle_heap(collect: bool = True) -> None:
    """After start-up, move the objects that live as long as the window out of the
    collector's sight (``gc.freeze``), so later full collections stay short.

    ``collect`` False freezes without a collection first (a full one is itself a pause of
    the thread that runs it): for what came after start-up and stays as long, e.g. the
    network stack and archive the in-window server imported and opened — otherwise every
    full collection, often run by the GUI thread, walked them again (45-100 ms measured)."""
    import gc

    if collect:
        gc.collect()
    gc.freeze()


class ThreadRelay(QObject):
    """The one way values cross from other threads to the GUI thread: a lock, a list and a
    GUI-thread QTimer that drains the list every ``interval_ms`` into one ``batch`` signal.

    Workers (their rows and progress), the in-window server (association and store events)
    and the protocol inspector (trace records) all use it, so a burst of thousands of values
    costs the event loop one slot call per interval, never one queued call per value.

    ``put`` and ``put_latest`` may be called on any thread and touch only plain Python state
    under the lock (no Qt object), so they stay safe even after the relay's Qt side is gone
    (a window closed while a worker ends). ``drain``, ``start`` and ``stop`` are GUI-thread only.
    """

    #: ``list``: every value ``put`` since the last drain, in the order they were put (only
    #: when some). Declared ``object``, not ``list``: PySide converts a ``list`` argument to a
    #: QVariantList element by element and back (GUI-thread time per row: docs/internals.md,
    #: timings); an ``object`` passes the list itself, which the relay no longer holds.
    batch = Signal(object)
    #: the newest value of ``put_latest``; older ones not yet shown are dropped on purpose, and
    #: it is emitted at most once per ``latest_period_s`` (and at the final drain)
    latest = Signal(object)

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = DRAIN_INTERVAL_MS,
                 latest_period_s: float = PROGRESS_PERIOD_S) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._values: list[Any] = []
        self._latest: Any = None
        self._latest_seq = 0
        self._emitted_seq = 0
        self._latest_at = 0.0
        self._latest_period_s = latest_period_s
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.drain)

    # -- any thread --------------------------------------------------------------------------
    def put(self, value: Any) -> None:
        """Queue a value that must reach the GUI thread (a match, a file's outcome, an event)."""
        with self._lock:
            self._values.append(value)

    def put_latest(self, value: Any) -> None:
        """Remember the latest value (progress); it replaces one not yet delivered."""
        with self._lock:
            self._latest = value
            self._latest_seq += 1

    # -- GUI thread --------------------------------------------------------------------------
    def start(self) -> None:
        self._timer.start()

    def stop(self, deliver: bool = True) -> None:
        """Stop the timer and deliver what is left (``deliver`` False: the receivers are
        going away with the window; what is left is dropped)."""
        self._timer.stop()
        if deliver:
            self.drain(final=True)

    def drain(self, final: bool = False) -> None:
        with self._lock:
            values, self._values = self._values, []
            latest, seq = self._latest, self._latest_seq
        if values:
            self.batch.emit(values)
        now = time.monotonic()
        if seq != self._emitted_seq and (final or now - self._latest_at >= self._latest_period_s):
            self._emitted_seq = seq
            self._latest_at = now
            self.latest.emit(latest)


class WorkerContext:
    """What the operation's callable receives on the worker thread.

    Its callbacks only pass the gate and hand values to the worker's :class:`ThreadRelay`:
    no Qt object is used from the worker thread.
    """

    #: longest a worker waits at a closed gate (the GUI thread reopens it much sooner)
    GATE_TIMEOUT_S = 0.25

    def __init__(self, cancel: threading.Event, relay: ThreadRelay) -> None:
        self.cancel = cancel
        self.gate: threading.Event | None = None  # set = open (see TaskTracker.gui_work)
        self._relay = relay

    def _pass_gate(self) -> None:
        gate = self.gate
        if gate is not None and not gate.is_set():
            gate.wait(self.GATE_TIMEOUT_S)

    def report_progress(self, value: Any) -> None:
        """Remember the latest progress value; older ones not yet shown are dropped on purpose."""
        self._pass_gate()
        self._relay.put_latest(value)

    def emit_row(self, value: Any) -> None:
        """Queue a value that must reach the GUI (a match, a file's outcome)."""
        self._pass_gate()
        self._relay.put(value)


class WorkerSignals(QObject):
    """Signals of one worker; lives on the GUI thread, so its slots and relay run there.

    Order: any number of ``rows`` and ``progress``, then ``finished`` or ``failed``, then ``done``.
    """

    #: the latest progress value the operation reported (coalesced, ~15 a second at most)
    progress = Signal(object)
    #: ``list`` of row values (``WorkerContext.emit_row``), in the order the operation produced
    #: them (``object``: see ``ThreadRelay.batch``; receivers must not change it)
    rows = Signal(object)
    #: the operation's return value
    finished = Signal(object)
    #: a sentence (str), when the callable raised (operations themselves report errors in the result)
    failed = Signal(str)
    #: always emitted last, after ``finished`` or ``failed``
    done = Signal()
    #: private: the worker thread ended (queued to the GUI thread, which then emits the above)
    _worker_done = Signal()


class OperationWorker(QRunnable):
    """A QRunnable calling ``call(context)`` once; construct and start it on the GUI thread.

    ``call`` typically imports ``dicomdesk.operations`` lazily and passes ``context.cancel``,
    ``context.report_progress`` and ``context.emit_row`` as the operation's callbacks.
    Panels start one through :meth:`TaskTracker.run`.
    """

    def __init__(self, call: Callable[[WorkerContext], Any], label: str = "") -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.label = label
        self.signals = WorkerSignals()
        self._relay = ThreadRelay(self.signals)
        self._relay.batch.connect(self.signals.rows)
        self._relay.latest.connect(self.signals.progress)
        self._call = call
        self._cancel = threading.Event()
        self._context = WorkerContext(self._cancel, self._relay)
        self._result: Any = None
        self._error: str | None = None
        self.signals._worker_done.connect(self._on_worker_done)
        self.is_running = False
        self.is_done = False

    # -- GUI thread -------------------------------------------------------------------------
    def start(self, pool: QThreadPool | None = None) -> None:
        """Queue the call on ``pool`` (default: the global pool) and start draining."""
        self.is_running = True
        self._relay.start()
        (pool or QThreadPool.globalInstance()).start(self)

    def cancel(self) -> None:
        """Ask the operation to stop; it ends at its next cancellation point (PS3.7 9.3.2.3)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def _on_worker_done(self) -> None:
        self._relay.stop()
        self.is_running = False
        self.is_done = True
        if self._error is not None:
            self.signals.failed.emit(self._error)
        else:
            self.signals.finished.emit(self._result)
        self.signals.done.emit()

    # -- worker thread ----------------------------------------------------------------------
    def run(self) -> None:  # noqa: D401 - QRunnable API
        try:
            self._result = self._call(self._context)
        except Exception as exc:  # the UI's promise: no traceback reaches a user
            _log.exception("operation %r raised", self.label)
            self._error = describe_exception(exc)
        finally:
            try:
                self.signals._worker_done.emit()
            except RuntimeError:
                # The window closed (Ctrl-C, close button) while this operation was ending:
                # its signals object is deleted with it and nobody is left to tell.
                _log.debug("operation %r ended after its window closed", self.label)


class TaskTracker(QObject):
    """The window's running operations: one pool, a count for the status bar, cancel-all on close.

    A dedicated pool (not the global one) so a slow peer's 30 s timeout in one echo cannot starve
    the others on a 2-core machine (QThreadPool sizes itself by cores).
    """

    #: number of running transfers (operations started with ``transfer=True``)
    changed = Signal(int)

    def __init__(self, parent: QObject | None = None, max_threads: int = 8) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._workers: dict[int, tuple[OperationWorker, bool]] = {}
        self.gate = threading.Event()
        self.gate.set()

    @contextmanager
    def gui_work(self) -> Iterator[None]:
        """Pause the workers at their next callback while the GUI thread does a burst of
        Python work (GUI thread only; keep the block short: a batch insert and its layout)."""
        if not self.gate.is_set():  # nested
            yield
            return
        self.gate.clear()
        try:
            yield
        finally:
            self.gate.set()

    def run(self, call: Callable[[WorkerContext], Any], *, label: str = "", transfer: bool = False,
            rows: Callable[[list[Any]], Any] | None = None,
            progress: Callable[[Any], Any] | None = None,
            finished: Callable[[Any], Any] | None = None,
            failed: Callable[[str], Any] | None = None,
            done: Callable[[], Any] | None = None) -> OperationWorker:
        """Run ``call`` in a worker with the given slots connected (GUI thread): the one way a
        panel starts work. Slots are called on the GUI thread in ``WorkerSignals``' order."""
        worker = OperationWorker(call, label=label)
        signals = worker.signals
        for signal, slot in ((signals.rows, rows), (signals.progress, progress),
                             (signals.finished, finished), (signals.failed, failed),
                             (signals.done, done)):
            if slot is not None:
                signal.connect(slot)
        return self.start(worker, transfer=transfer)

    def start(self, worker: OperationWorker, transfer: bool = True) -> OperationWorker:
        """Run ``worker``; transfers are counted in the status bar and confirmed before quit."""
        key = id(worker)
        worker._context.gate = self.gate
        self._workers[key] = (worker, transfer)
        # a bound slot, not a lambda: Qt drops the connection when the tracker is destroyed,
        # so a worker ending after its window closed does not call into a deleted object
        worker.signals.done.connect(self._on_worker_done)
        worker.start(self.pool)
        self.changed.emit(self.transfer_count())
        return worker

    def _on_worker_done(self) -> None:
        signals = self.sender()
        for key, (worker, _transfer) in list(self._workers.items()):
            if worker.signals is signals:
                self._forget(key)
                return

    def _forget(self, key: int) -> None:
        self._workers.pop(key, None)
        self.changed.emit(self.transfer_count())

    def transfer_count(self) -> int:
        return sum(1 for _, transfer in self._workers.values() if transfer)

    def active_count(self) -> int:
        return len(self._workers)

    def labels(self) -> list[str]:
        return [w.label for w, transfer in self._workers.values() if transfer]

    def cancel_all(self) -> None:
        for worker, _ in list(self._workers.values()):
            worker.cancel()

    def wait(self, msecs: int) -> bool:
        """Block until the pool is idle; only for tests and for the last moment of shutdown."""
        return self.pool.waitForDone(msecs)
