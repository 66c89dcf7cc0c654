"""Server panel: the local Storage SCP / Q/R SCP — start and stop, association log, received
objects (the archive browser) and a preview of the selected image.

Flow "bytes to row" (ARCHITECTURE) ends here: ``LocalServer`` calls ``on_stored`` after the object
is durable and indexed; ``ServerHost`` batches those into ``stored`` signals that append rows.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui import commands, preview
from dicomdesk.ui.context import UiContext
from dicomdesk.ui.models.records import RecordTableModel
from dicomdesk.ui.models.transfer_queue import human_size
from dicomdesk.ui.panels.nodes import AeTitleValidator
from dicomdesk.ui.server_host import ServerState
from dicomdesk.ui.widgets import StatusLabel, copy_to_clipboard
from dicomdesk.ui.workers import OperationWorker, WorkerContext

__all__ = ["ServerPanel"]

_log = logging.getLogger(__name__)


def _now() -> str:
    return _dt.datetime.now().strftime("%H:%M:%S")


def _uid_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        return UID(uid).name
    except Exception:
        return uid


class _Stamped:
    """A server event with the time the window saw it (events carry no wall-clock time)."""

    __slots__ = ("time", "event")

    def __init__(self, event: Any) -> None:
        self.time = _now()
        self.event = event


def _contexts(event: Any) -> str:
    contexts = getattr(event, "contexts", None)
    if not contexts:
        return ""
    try:
        return ", ".join(_uid_name(str(c)) for c in contexts)
    except TypeError:
        return str(contexts)


ASSOCIATION_COLUMNS = [
    ("Time", lambda r: r.time),
    ("Peer", lambda r: str(r.event.peer_address)),
    ("Calling AE", lambda r: r.event.calling_aet),
    ("Called AE", lambda r: r.event.called_aet),
    ("State", lambda r: r.event.state),
    ("Reason", lambda r: r.event.reason or ""),
    ("Duration", lambda r: f"{r.event.duration_s:.2f} s" if r.event.duration_s is not None else ""),
    ("Contexts", lambda r: _contexts(r.event)),
]
STORED_COLUMNS = [
    ("Time", lambda r: r.time),
    ("Patient", lambda r: str(r.event.patient_name or "").replace("^", " ")),
    ("SOP class", lambda r: _uid_name(str(r.event.sop_class_uid))),
    ("From", lambda r: r.event.calling_aet or ""),
    ("Size", lambda r: human_size(r.event.size or 0)),
    ("SOP instance UID", lambda r: r.event.sop_instance_uid),
    ("File", lambda r: str(r.event.path) if r.event.path else f"not stored: {r.event.error}"),
]

FORWARD_COLUMNS = [
    ("Time", lambda r: r.time),
    ("SOP instance UID", lambda r: r.event.sop_instance_uid),
    ("Destination", lambda r: r.event.destination),
    ("State", lambda r: r.event.state),
    ("Attempts", lambda r: str(r.event.attempts)),
    ("Error", lambda r: r.event.error or ""),
]


class ServerPanel(QWidget):
    """Start/stop form on top, association log and received objects in tabs, preview at right."""

    preview_ready = Signal(object)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._preview_worker: OperationWorker | None = None
        self._preview_pending: str | None = None

        state = ctx.server.state
        self.aet_edit = QLineEdit(state.aet, self)
        self.aet_edit.setValidator(AeTitleValidator(self))
        self.port_spin = QSpinBox(self)
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(state.port)
        self.storage_edit = QLineEdit(state.storage_dir, self)
        self.browse_button = QPushButton("Browse…", self)
        self.browse_button.clicked.connect(self._choose_storage)
        self.start_button = QPushButton("Start", self)
        self.stop_button = QPushButton("Stop", self)
        self.copy_button = QPushButton("Copy as command", self)
        self.start_button.clicked.connect(self.start_server)
        self.stop_button.clicked.connect(ctx.server.stop)
        self.copy_button.clicked.connect(self.copy_command)
        self.state_label = StatusLabel(self)

        storage_row = QHBoxLayout()
        storage_row.addWidget(self.storage_edit, 1)
        storage_row.addWidget(self.browse_button)
        form = QFormLayout()
        form.addRow("AE title", self.aet_edit)
        form.addRow("Port", self.port_spin)
        form.addRow("Storage folder", storage_row)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.copy_button):
            buttons.addWidget(button)
        buttons.addWidget(self.state_label, 1)

        self.associations = RecordTableModel(ASSOCIATION_COLUMNS, parent=self)
        self.stored = RecordTableModel(STORED_COLUMNS, parent=self)
        self.association_view = self._table(self.associations)
        self.stored_view = self._table(self.stored)
        self.stored_view.selectionModel().currentRowChanged.connect(self._on_stored_selected)
        tabs = QTabWidget(self)
        tabs.addTab(self.stored_view, "Received objects")
        tabs.addTab(self.association_view, "Associations")
        self.forwarding = RecordTableModel(FORWARD_COLUMNS, parent=self)
        self.forwarding_view = self._table(self.forwarding)
        tabs.addTab(self.forwarding_view, "Forwarding")
        self.preview_label = QLabel("Select a received object to preview it.", self)
        self.preview_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview_label.setWordWrap(True)
        self.preview_label.setMinimumWidth(220)
        self.preview_caption = QLabel("", self)
        preview_box = QWidget(self)
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.addWidget(self.preview_label, 1)
        preview_layout.addWidget(self.preview_caption)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(tabs)
        splitter.addWidget(preview_box)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Local server</b> — Storage SCP and Query/Retrieve SCP", self))
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)

        ctx.server.state_changed.connect(self._on_state)
        ctx.server.associations.connect(
            lambda events: self.associations.append([_Stamped(e) for e in events]))
        ctx.server.stored.connect(lambda objs: self.stored.append([_Stamped(o) for o in objs]))
        ctx.server.forwarded.connect(
            lambda events: self.forwarding.append([_Stamped(e) for e in events]))
        self._on_state(state)

    def _table(self, model: RecordTableModel) -> QTableView:
        view = QTableView(self)
        view.setModel(model)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.verticalHeader().setVisible(False)
        view.horizontalHeader().setStretchLastSection(True)
        view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        view.setAlternatingRowColors(True)
        return view

    # -- server control --------------------------------------------------------------------
    def start_server(self, port: int | None = None) -> None:
        if not self.aet_edit.hasAcceptableInput():
            self.state_label.show_message("The AE title is not valid (1-16 characters, no \\).",
                                          "error")
            return
        if port:
            self.port_spin.setValue(int(port))
        self.ctx.server.start(self.aet_edit.text().strip(), self.port_spin.value(),
                              self.storage_edit.text().strip())

    def _choose_storage(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Storage folder", self.storage_edit.text())
        if folder:
            self.storage_edit.setText(folder)

    def _on_state(self, state: ServerState) -> None:
        running = state.status in ("listening", "starting", "stopping")
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(state.status == "listening")
        for widget in (self.aet_edit, self.port_spin, self.storage_edit, self.browse_button):
            widget.setEnabled(not running)
        kind = {"listening": "ok", "port_taken": "error", "error": "error"}.get(state.status, "info")
        if state.status == "listening" and state.message:
            kind = "warning"  # listening beyond this computer (ServerState.message says how)
        text = state.sentence()
        if state.status == "port_taken" and state.suggested_port:
            text += f" — try port {state.suggested_port} (see the status bar)."
        self.state_label.show_message(text, kind)

    def copy_command(self) -> str:
        text = commands.serve_command(self.port_spin.value(), self.aet_edit.text().strip(),
                                      self.storage_edit.text().strip())
        copy_to_clipboard(text)
        return text

    # -- preview ---------------------------------------------------------------------------
    def _on_stored_selected(self, current: Any, _previous: Any) -> None:
        if current.isValid():
            path = self.stored.record(current.row()).event.path
            if path:
                self.show_preview(str(path))

    def show_preview(self, path: str) -> None:
        """Decode in a worker; while one runs, only the latest request is kept."""
        if self._preview_worker is not None:
            self._preview_pending = path
            return
        self.preview_label.setText("Loading preview…")

        def call(ctx: WorkerContext) -> preview.Preview:
            return preview.load_preview(path)

        worker = OperationWorker(call, label="preview")
        worker.signals.finished.connect(self._show_image)
        worker.signals.failed.connect(
            lambda s: self.preview_label.setText(f"No preview: {s}"))
        worker.signals.done.connect(self._preview_done)
        self._preview_worker = worker
        self.ctx.tracker.start(worker, transfer=False)

    def _preview_done(self) -> None:
        self._preview_worker = None
        pending, self._preview_pending = self._preview_pending, None
        if pending:
            self.show_preview(pending)

    def _show_image(self, image: preview.Preview) -> None:
        fmt = QImage.Format.Format_RGB888 if image.rgb else QImage.Format.Format_Grayscale8
        stride = image.width * (3 if image.rgb else 1)
        qimage = QImage(image.pixels, image.width, image.height, stride, fmt).copy()
        pixmap = QPixmap.fromImage(qimage)
        self.preview_label.setPixmap(pixmap.scaled(
            self.preview_label.size(), Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation))
        self.preview_caption.setText(image.caption)
        self.preview_ready.emit(image)

    def storage_dir(self) -> Path:
        return Path(self.storage_edit.text().strip())
