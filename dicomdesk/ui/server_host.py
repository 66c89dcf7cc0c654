"""Runs ``operations.LocalServer`` (Storage SCP + Q/R SCP) inside the window's process.

The server accepts associations on its own threads (PS3.8 7.1: each association is independent);
its ``on_association`` / ``on_stored`` callbacks arrive on those threads, so they go through a
``ThreadRelay`` (workers.py: a locked list drained by a GUI-thread QTimer every 50 ms) into
batched signals — a peer sending a thousand small images must not flood the event loop with a
thousand queued calls.
Start and stop run in a worker (binding and joining threads never happen on the GUI thread).

Objects received per association: ``on_stored`` and the association events of one association
are called on that association's thread (the acceptor runs the DIMSE service there), so a
per-thread counter opened at "open" and closed at "released"/"aborted" counts them without any
help from the network layer (each event crosses the relay with the thread that reported it; the
counting happens on the GUI thread, in the order the server reported the events).
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from dicomdesk.ui.errors import describe_exception
from dicomdesk.ui.workers import OperationWorker, TaskTracker, ThreadRelay, WorkerContext, \
    settle_heap

__all__ = ["AssociationRecord", "AssociationState", "ServerHost", "ServerState", "ServerStatus",
           "parse_allowed_calling_aets"]

_log = logging.getLogger(__name__)

# what crosses the relay: (kind, reporting thread, value)
_ASSOCIATION, _STORED, _FORWARDED = "association", "stored", "forwarded"


class ServerStatus(StrEnum):
    """Where the in-window server is; a ``str`` so settings and logs read the plain word."""

    STOPPED = "stopped"
    STARTING = "starting"
    LISTENING = "listening"
    STOPPING = "stopping"
    #: another program holds the port (``ServerState.suggested_port`` offers another)
    PORT_TAKEN = "port_taken"
    ERROR = "error"

    @property
    def busy(self) -> bool:
        """Running or on its way: the form's fields are locked."""
        return self in (ServerStatus.LISTENING, ServerStatus.STARTING, ServerStatus.STOPPING)


class AssociationState(StrEnum):
    """``operations.AssociationEvent.state``: the words the server reports, as one vocabulary
    (a ``str``, so an event's plain word compares equal to it)."""

    OPEN = "open"
    #: ended by A-RELEASE (PS3.8 7.2)
    RELEASED = "released"
    #: ended by A-ABORT or a lost connection (PS3.8 7.3-7.4)
    ABORTED = "aborted"
    #: A-ASSOCIATE-RJ, e.g. a calling AE title not on the allow-list (PS3.8 Table 9-21)
    REJECTED = "rejected"


@dataclass(frozen=True)
class ServerState:
    """What the status bar shows."""

    status: ServerStatus
    aet: str
    port: int
    storage_dir: str = ""
    message: str = ""
    suggested_port: int | None = None

    def sentence(self) -> str:
        if self.status is ServerStatus.LISTENING:
            # ``message`` holds the warning of a server reachable beyond this computer.
            return f"Local server {self.aet} listening on port {self.port}" + (
                f" — {self.message}" if self.message else "")
        if self.status is ServerStatus.PORT_TAKEN:
            return f"Local server stopped: port {self.port} is taken by another program"
        if self.status is ServerStatus.STARTING:
            return f"Local server {self.aet} starting on port {self.port}…"
        if self.status is ServerStatus.STOPPING:
            return "Local server stopping…"
        if self.status is ServerStatus.ERROR:
            return f"Local server stopped: {self.message}"
        return f"Local server {self.aet} stopped (port {self.port})"


@dataclass(frozen=True)
class AssociationRecord:
    """An association event (``operations.AssociationEvent``) with the number of objects the
    server stored on that association so far (C-STORE successes, PS3.4 B.2.3)."""

    event: Any
    objects: int = 0


def parse_allowed_calling_aets(text: str) -> tuple[str, ...]:
    """The allow-list field: entries ``AET`` or ``AET@ADDR[,ADDR]`` separated by spaces or ";"
    (commas belong to an entry's address list); raises ``ValueError`` with the reason."""
    import re

    from dicomdesk.security import AllowedCaller, PolicyError

    entries = tuple(e for e in re.split(r"[;\s]+", text.strip()) if e)
    for entry in entries:
        try:
            AllowedCaller.parse(entry)
        except PolicyError as exc:
            raise ValueError(str(exc)) from None
    return entries


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

    #: ``ServerState``, at every change
    state_changed = Signal(object)
    # The list signals are declared ``object`` (see ``ThreadRelay.batch``: no element-wise
    # conversion); every receiver gets the same list and must not change it.
    #: ``list[AssociationRecord]`` (an operations.AssociationEvent and its objects received)
    associations = Signal(object)
    #: ``list`` of operations.StoredObject
    stored = Signal(object)
    #: ``list`` of archive forwarding events (ForwardEvent: uid, destination, state, attempts,
    #: error)
    forwarded = Signal(object)
    #: ``list[AssociationRecord]`` of open associations whose object count grew (coalesced)
    association_progress = Signal(object)
    #: (open associations, objects received on them so far), when either changed
    incoming_changed = Signal(int, int)

    #: the network stack and archive modules the first start imported are frozen (gc)
    _heap_settled = False

    def __init__(self, tracker: TaskTracker, parent: QObject | None = None, *,
                 nodes_path: str | Path | None = None) -> None:
        """``nodes_path``: the window's address book, the server's C-MOVE destinations and
        forwarding nodes (PS3.4 C.4.2.2: the SCP resolves the Move Destination AE title)."""
        super().__init__(parent)
        self._tracker = tracker
        self.nodes_path = Path(nodes_path) if nodes_path is not None else None
        self._objects: dict[int, int] = {}  # association thread id -> objects stored
        self._open_events: dict[int, Any] = {}  # association thread id -> its "open" event
        self._shown_counts: dict[int, int] = {}  # what association_progress last said
        self._incoming = (0, 0)
        self._server: Any = None
        self._relay = ThreadRelay(self)
        self._relay.batch.connect(self._on_batch)
        self._state = ServerState(ServerStatus.STOPPED, "DICOMDESK", 11112)
        self._busy: OperationWorker | None = None

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def incoming(self) -> tuple[int, int]:
        """(open associations, objects received on them), as last drained."""
        return self._incoming

    @property
    def is_running(self) -> bool:
        return self._state.status is ServerStatus.LISTENING

    def configure(self, aet: str, port: int, storage_dir: str) -> None:
        """Set what ``start`` will use while stopped (read from QSettings by the window)."""
        if self._server is None and self._busy is None:
            self._set_state(ServerState(ServerStatus.STOPPED, aet, int(port), storage_dir))

    def _set_state(self, state: ServerState) -> None:
        self._state = state
        self.state_changed.emit(state)

    # -- callbacks from server threads: into the relay, with the thread that called ------------
    def _on_association(self, event: Any) -> None:
        self._relay.put((_ASSOCIATION, threading.get_ident(), event))

    def _on_stored(self, obj: Any) -> None:
        self._relay.put((_STORED, threading.get_ident(), obj))

    def _on_forward(self, event: Any) -> None:
        self._relay.put((_FORWARDED, 0, event))

    # -- GUI thread ------------------------------------------------------------------------
    def _on_batch(self, items: list[tuple[str, int, Any]]) -> None:
        """Count objects per association thread, in the order the server reported them, and
        emit one batch per signal."""
        assoc: list[AssociationRecord] = []
        stored: list[Any] = []
        forwarded: list[Any] = []
        for kind, thread, value in items:
            if kind == _ASSOCIATION:
                if value.state == AssociationState.OPEN:
                    self._objects[thread] = 0
                    self._open_events[thread] = value
                    objects = 0
                else:
                    objects = self._objects.pop(thread, 0)
                    self._open_events.pop(thread, None)
                    self._shown_counts.pop(thread, None)
                assoc.append(AssociationRecord(value, objects))
            elif kind == _STORED:
                if getattr(value, "error", None) is None and thread in self._objects:
                    self._objects[thread] += 1
                stored.append(value)
            else:
                forwarded.append(value)
        grown = [AssociationRecord(event, self._objects.get(thread, 0))
                 for thread, event in self._open_events.items()
                 if self._objects.get(thread, 0) != self._shown_counts.get(thread, 0)]
        self._shown_counts = {t: self._objects.get(t, 0) for t in self._open_events}
        if assoc:
            self.associations.emit(assoc)
        if grown:
            self.association_progress.emit(grown)
        self._update_incoming()
        if stored:
            self.stored.emit(stored)
        if forwarded:
            self.forwarded.emit(forwarded)

    def _update_incoming(self) -> None:
        incoming = (len(self._open_events), sum(self._shown_counts.values()))
        if incoming != self._incoming:
            self._incoming = incoming
            self.incoming_changed.emit(*incoming)

    def report_stored(self, objects: list[Any]) -> None:
        """Objects put into the archive by the window itself (a C-GET's files, imported).

        They are announced like objects the server received, so the archive browser lists a
        study however it arrived. GUI thread only.
        """
        if objects:
            self.stored.emit(list(objects))

    # -- control ---------------------------------------------------------------------------
    def commitment_reports(self) -> Any:
        """The running server's mailbox for commitment results sent to our AE title's
        address (``operations.commitment.CommitmentReports``), None when stopped."""
        server = self._server
        ae = getattr(server, "ae", None) if server is not None else None
        return getattr(ae, "commitment_reports", None)

    def running_archive(self) -> Any:
        """The running server's ``archive.Archive`` (None when stopped): the window's deletes go
        through it, so they serialise with the server's own commits (``Archive._lock``)."""
        server = self._server
        ae = getattr(server, "ae", None) if server is not None else None
        return getattr(ae, "archive", None)

    def start(self, aet: str, port: int, storage_dir: str, bind: str | None = None,
              allowed_calling_aets: Sequence[str] | None = None) -> None:
        """Start listening; the outcome arrives as ``state_changed`` (listening or port_taken).

        ``bind`` None keeps the settings file's address (127.0.0.1 unless the user opened it
        wider there); the state then carries a warning sentence (``operations.server.bind_warning``).
        ``allowed_calling_aets`` (``AET`` or ``AET@ADDR`` entries) replaces the settings file's
        allow-list; an association from another calling AE title is rejected (PS3.8 Table 9-21,
        "calling AE title not recognized") and logged as "rejected"."""
        if self._busy is not None or self._server is not None:
            return
        self._set_state(ServerState(ServerStatus.STARTING, aet, port, storage_dir))
        on_association, on_stored, on_forward = self._on_association, self._on_stored, self._on_forward
        # the window's address book; an absent file is an empty book, not the user's default one
        book = self.nodes_path
        book_args: dict[str, Any] = {}
        if book is not None:
            book_args = {"nodes_path": book} if book.exists() else {"nodes": []}

        def call(ctx: WorkerContext) -> Any:
            import dataclasses

            from dicomdesk import config, operations

            # Forwarding rules and the worklist folder come from the settings file (shared
            # with `dicomdesk serve --settings`); the panel's own fields win for the rest.
            base = config.load_server_settings(config.default_settings_path())
            extra = {"storage_dir": storage_dir} if storage_dir else {}
            if bind:
                extra["bind"] = bind
            if allowed_calling_aets is not None:
                extra["allowed_calling_aets"] = tuple(allowed_calling_aets)
            settings = dataclasses.replace(base, aet=aet, port=port, **extra)
            server = operations.LocalServer(settings, on_association=on_association,
                                            on_stored=on_stored, on_forward=on_forward,
                                            **book_args)
            try:
                server.start()
            except Exception as exc:
                if _is_port_taken(exc):
                    return (ServerStatus.PORT_TAKEN, None, str(exc))
                raise
            from dicomdesk.operations.server import bind_warning

            return (ServerStatus.LISTENING, server, bind_warning(settings) or "")

        def finished(outcome: tuple[ServerStatus, Any, str]) -> None:
            status, server, message = outcome
            self._busy = None
            if status is ServerStatus.LISTENING:
                self._server = server
                actual = int(getattr(server, "port", port) or port)
                self._relay.start()
                if not ServerHost._heap_settled:  # the stack it imported lives as long
                    ServerHost._heap_settled = True  # as the process (once: a restart
                    settle_heap(collect=False)       # would freeze the last one's garbage)
                self._set_state(ServerState(ServerStatus.LISTENING, aet, actual, storage_dir,
                                            message))
            else:
                self._set_state(ServerState(ServerStatus.PORT_TAKEN, aet, port, storage_dir,
                                            message,
                                            suggested_port=port + 1 if port < 65535 else 1024))

        def failed(sentence: str) -> None:
            self._busy = None
            self._set_state(ServerState(ServerStatus.ERROR, aet, port, storage_dir, sentence))

        self._busy = self._tracker.run(call, label="start local server", finished=finished,
                                       failed=failed)

    def stop(self) -> None:
        """Stop listening (running associations are ended by LocalServer.stop)."""
        server, self._server = self._server, None
        if server is None:
            return
        state = self._state
        self._set_state(ServerState(ServerStatus.STOPPING, state.aet, state.port,
                                    state.storage_dir))

        def call(ctx: WorkerContext) -> None:
            server.stop()

        def done() -> None:
            self._busy = None
            self._relay.stop()
            self._open_events.clear()
            self._shown_counts.clear()
            self._update_incoming()
            self._set_state(ServerState(ServerStatus.STOPPED, state.aet, state.port,
                                        state.storage_dir))

        self._busy = self._tracker.run(call, label="stop local server", done=done)

    def stop_now(self) -> None:
        """Last-moment stop when the window closes (the event loop is about to end)."""
        server, self._server = self._server, None
        self._relay.stop(deliver=False)
        if server is not None:
            try:
                server.stop()
            except Exception as exc:  # closing anyway; say why in the log only
                _log.warning("local server did not stop cleanly: %s", describe_exception(exc))
