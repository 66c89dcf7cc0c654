"""Runs ``operations.LocalServer`` (Storage SCP + Q/R SCP) inside the window's process.

The server accepts associations on its own threads (PS3.8 7.1: each association is independent);
its ``on_association`` / ``on_stored`` callbacks arrive on those threads, so they are buffered
under a lock and drained by a GUI-thread QTimer every 50 ms into batched signals — a peer sending
a thousand small images must not flood the event loop with a thousand queued calls.
Start and stop run in a worker (binding and joining threads never happen on the GUI thread).
"""

from __future__ import annotations

import errno
import logging
import threading
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from dicomdesk.ui.errors import describe_exception
from dicomdesk.ui.workers import OperationWorker, TaskTracker, WorkerContext

__all__ = ["ServerHost", "ServerState"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerState:
    """What the status bar shows: status is stopped|starting|listening|stopping|port_taken|error."""

    status: str
    aet: str
    port: int
    storage_dir: str = ""
    message: str = ""
    suggested_port: int | None = None

    def sentence(self) -> str:
        if self.status == "listening":
            # ``message`` holds the warning of a server reachable beyond this computer.
            return f"Local server {self.aet} listening on port {self.port}" + (
                f" — {self.message}" if self.message else "")
        if self.status == "port_taken":
            return f"Local server stopped: port {self.port} is taken by another program"
        if self.status == "starting":
            return f"Local server {self.aet} starting on port {self.port}…"
        if self.status == "stopping":
            return "Local server stopping…"
        if self.status == "error":
            return f"Local server stopped: {self.message}"
        return f"Local server {self.aet} stopped (port {self.port})"


def _is_port_taken(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return True
        if "address already in use" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


class ServerHost(QObject):
    """Owns the in-process LocalServer; all public methods are called on the GUI thread."""

    state_changed = Signal(object)
    #: list of operations.AssociationEvent
    associations = Signal(list)
    #: list of operations.StoredObject
    stored = Signal(list)
    #: list of archive forwarding events (ForwardEvent: uid, destination, state, attempts, error)
    forwarded = Signal(list)

    def __init__(self, tracker: TaskTracker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tracker = tracker
        self._server: Any = None
        self._lock = threading.Lock()
        self._pending_assoc: list[Any] = []
        self._pending_stored: list[Any] = []
        self._pending_forward: list[Any] = []
        self._state = ServerState("stopped", "DICOMDESK", 11112)
        self._timer = QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._drain)
        self._busy: OperationWorker | None = None

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def is_running(self) -> bool:
        return self._state.status == "listening"

    def configure(self, aet: str, port: int, storage_dir: str) -> None:
        """Set what ``start`` will use while stopped (read from QSettings by the window)."""
        if self._server is None and self._busy is None:
            self._set_state(ServerState("stopped", aet, int(port), storage_dir))

    def _set_state(self, state: ServerState) -> None:
        self._state = state
        self.state_changed.emit(state)

    # -- callbacks from server threads: only a lock and a list -----------------------------
    def _on_association(self, event: Any) -> None:
        with self._lock:
            self._pending_assoc.append(event)

    def _on_stored(self, obj: Any) -> None:
        with self._lock:
            self._pending_stored.append(obj)

    def _on_forward(self, event: Any) -> None:
        with self._lock:
            self._pending_forward.append(event)

    def _drain(self) -> None:
        with self._lock:
            assoc, self._pending_assoc = self._pending_assoc, []
            stored, self._pending_stored = self._pending_stored, []
            forwarded, self._pending_forward = self._pending_forward, []
        if assoc:
            self.associations.emit(assoc)
        if stored:
            self.stored.emit(stored)
        if forwarded:
            self.forwarded.emit(forwarded)

    def report_stored(self, objects: list[Any]) -> None:
        """Objects put into the archive by the window itself (a C-GET's files, imported).

        They are announced like objects the server received, so the archive browser lists a
        study however it arrived. GUI thread only.
        """
        if objects:
            self.stored.emit(list(objects))

    # -- control ---------------------------------------------------------------------------
    def start(self, aet: str, port: int, storage_dir: str, bind: str | None = None) -> None:
        """Start listening; the outcome arrives as ``state_changed`` (listening or port_taken).

        ``bind`` None keeps the settings file's address (127.0.0.1 unless the user opened it
        wider there); the state then carries a warning sentence (``operations.server.bind_warning``)."""
        if self._busy is not None or self._server is not None:
            return
        self._set_state(ServerState("starting", aet, port, storage_dir))
        on_association, on_stored, on_forward = self._on_association, self._on_stored, self._on_forward

        def call(ctx: WorkerContext) -> Any:
            import dataclasses

            from dicomdesk import config, operations

            # Forwarding rules and the worklist folder come from the settings file (shared
            # with `dicomdesk serve --settings`); the panel's own fields win for the rest.
            base = config.load_server_settings(config.default_settings_path())
            extra = {"storage_dir": storage_dir} if storage_dir else {}
            if bind:
                extra["bind"] = bind
            settings = dataclasses.replace(base, aet=aet, port=port, **extra)
            server = operations.LocalServer(settings, on_association=on_association,
                                            on_stored=on_stored, on_forward=on_forward)
            try:
                server.start()
            except Exception as exc:
                if _is_port_taken(exc):
                    return ("port_taken", None, str(exc))
                raise
            from dicomdesk.operations.server import bind_warning

            return ("listening", server, bind_warning(settings) or "")

        def finished(outcome: tuple[str, Any, str]) -> None:
            status, server, message = outcome
            self._busy = None
            if status == "listening":
                self._server = server
                actual = int(getattr(server, "port", port) or port)
                self._timer.start()
                self._set_state(ServerState("listening", aet, actual, storage_dir, message))
            else:
                self._set_state(ServerState("port_taken", aet, port, storage_dir, message,
                                            suggested_port=port + 1 if port < 65535 else 1024))

        def failed(sentence: str) -> None:
            self._busy = None
            self._set_state(ServerState("error", aet, port, storage_dir, sentence))

        worker = OperationWorker(call, label="start local server")
        worker.signals.finished.connect(finished)
        worker.signals.failed.connect(failed)
        self._busy = worker
        self._tracker.start(worker, transfer=False)

    def stop(self) -> None:
        """Stop listening (running associations are ended by LocalServer.stop)."""
        server, self._server = self._server, None
        if server is None:
            return
        state = self._state
        self._set_state(ServerState("stopping", state.aet, state.port, state.storage_dir))

        def call(ctx: WorkerContext) -> None:
            server.stop()

        def done() -> None:
            self._busy = None
            self._drain()
            self._timer.stop()
            self._set_state(ServerState("stopped", state.aet, state.port, state.storage_dir))

        worker = OperationWorker(call, label="stop local server")
        worker.signals.done.connect(done)
        self._busy = worker
        self._tracker.start(worker, transfer=False)

    def stop_now(self) -> None:
        """Last-moment stop when the window closes (the event loop is about to end)."""
        server, self._server = self._server, None
        self._timer.stop()
        if server is not None:
            try:
                server.stop()
            except Exception as exc:  # closing anyway; say why in the log only
                _log.warning("local server did not stop cleanly: %s", describe_exception(exc))
