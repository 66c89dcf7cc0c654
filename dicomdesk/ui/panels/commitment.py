"""Commitment panel: "do you now keep these objects safe?" (Storage Commitment, PS3.4 J.3).

Objects come from a finished send (Send panel) or from the local server's received objects;
the window calls ``operations.commit`` as ``dicomdesk commit`` does: one N-ACTION, then the
SCP's N-EVENT-REPORT, on the same association or on a new one to our listener (J.3.3). Each
object's row then says committed, or failed with the reason (Failure Reason, PS3.3 C.14.1.1).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui import calls, commands
from dicomdesk.ui.context import UiContext
from dicomdesk.ui.widgets import NodePicker, StatusLabel, copy_to_clipboard, restore_view_state, \
    save_view_state
from dicomdesk.ui.workers import OperationWorker

__all__ = ["CommitmentPanel"]

_log = logging.getLogger(__name__)

COL_FILE, COL_UID, COL_STATE = range(3)
_COLOURS = {calls.CommitState.COMMITTED: QColor("#1e7d32"),
            calls.CommitState.FAILED: QColor("#c62828"),
            calls.CommitState.NOT_REQUESTED: QColor("#8a8a8a")}


class CommitmentPanel(QWidget):
    """Objects to commit, the node to ask, and each object's outcome."""

    #: the request ended (a ``calls.CommitOutcome``, or None when the worker failed)
    commit_finished = Signal(object)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._worker: OperationWorker | None = None
        self._paths: list[str] = []

        self.node_picker = NodePicker(ctx.book, self)
        self.listen_spin = QSpinBox(self)
        self.listen_spin.setRange(0, 65535)
        self.listen_spin.setSpecialValueText("any free port")
        self.listen_spin.setToolTip(
            "Where we also accept the result when the node sends it on a new association "
            "(PS3.4 J.3.3). A result sent to the local server's port (the address a PACS "
            "usually knows for our AE title) is taken by the running local server.")
        self.add_button = QPushButton("Add files…", self)
        self.clear_button = QPushButton("Clear", self)
        self.request_button = QPushButton("Request commitment", self)
        self.request_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.copy_button = QPushButton("Copy as command", self)
        self.add_button.clicked.connect(self.choose_files)
        self.clear_button.clicked.connect(self.clear)
        self.request_button.clicked.connect(self.request)
        self.cancel_button.clicked.connect(self.cancel)
        self.copy_button.clicked.connect(self.copy_command)

        self.table = QTableWidget(0, 3, self)
        self.table.setHorizontalHeaderLabels(["File", "SOP Instance UID", "Result"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(COL_STATE, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(COL_FILE, 220)
        header.resizeSection(COL_UID, 330)
        self.hint = QLabel("Objects come from a send (Send → Request commitment), from the "
                           "local server's received objects, or from Add files.", self)
        self.hint.setWordWrap(True)
        self.outcome = StatusLabel(self)

        top = QHBoxLayout()
        top.addWidget(QLabel("Commitment SCP", self))
        top.addWidget(self.node_picker, 1)
        top.addWidget(QLabel("Result port", self))
        top.addWidget(self.listen_spin)
        buttons = QHBoxLayout()
        for button in (self.add_button, self.clear_button, self.request_button,
                       self.cancel_button, self.copy_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Storage commitment</b> — does the node keep these objects "
                                "safe? (N-ACTION / N-EVENT-REPORT, PS3.4 J.3)", self))
        layout.addLayout(top)
        layout.addWidget(self.hint)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.outcome)
        self._update_buttons()

    # -- objects ---------------------------------------------------------------------------
    def set_files(self, paths: list[str], node: str | None = None) -> None:
        """Replace the objects to commit (from a send or the server panel)."""
        if self._worker is not None:
            return
        self._paths = [str(p) for p in paths]
        self.table.setRowCount(len(self._paths))
        for row, path in enumerate(self._paths):
            item = QTableWidgetItem(Path(path).name)
            item.setToolTip(path)
            self.table.setItem(row, COL_FILE, item)
            self.table.setItem(row, COL_UID, QTableWidgetItem(""))
            self.table.setItem(row, COL_STATE, QTableWidgetItem("to request"))
        if node:
            self.node_picker.select(node)
        self.outcome.show_message(f"{len(self._paths)} object(s) to commit." if paths else "")
        self._update_buttons()

    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Objects to commit", str(Path.home()))
        if files:
            self.set_files(self._paths + [f for f in files if f not in self._paths])

    def clear(self) -> None:
        self.set_files([])

    def state_of(self, row: int) -> str:
        item = self.table.item(row, COL_STATE)
        return item.text() if item is not None else ""

    # -- request ---------------------------------------------------------------------------
    def request(self) -> OperationWorker | None:
        node = self.node_picker.node()
        if node is None:
            self.outcome.show_message("Choose the node to ask (add one in Nodes).", "error")
            return None
        if not self._paths:
            self.outcome.show_message("Nothing to commit: add objects first.", "error")
            return None
        if self._worker is not None:
            return self._worker
        target = calls.target_from_node(node, self.ctx.local_aet())
        for row in range(self.table.rowCount()):
            self.table.item(row, COL_STATE).setText("waiting for the result…")
            self.table.item(row, COL_STATE).setForeground(QBrush())
        self.outcome.show_message(f"Asking {node.name} to commit {len(self._paths)} object(s)…")
        self._worker = self.ctx.tracker.run(
            calls.commit_call(target, self._paths, timeout=max(target.timeout, 60.0),
                              listen_port=self.listen_spin.value(),
                              reports=self.ctx.server.commitment_reports()),
            label=f"storage commitment at {node.name}", transfer=True,
            progress=self._on_listening, finished=self._on_finished, failed=self._on_failed,
            done=self._on_done)
        self._update_buttons()
        return self._worker

    # -- remembered choices (the window's QSettings, GUI thread) ------------------------------
    def restore_settings(self, settings: QSettings) -> None:
        restore_view_state(settings, "commitment_columns", self.table.horizontalHeader())

    def save_settings(self, settings: QSettings) -> None:
        save_view_state(settings, "commitment_columns", self.table.horizontalHeader())

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    def _on_listening(self, port: Any) -> None:
        where = f"port {port}"
        if self.ctx.server.is_running:
            where = f"the local server's port {self.ctx.server.state.port} or {where}"
        self.outcome.show_message(
            f"Request sent; waiting for the result on the same association or on {where} "
            f"(AE title {self.ctx.local_aet()})…")

    def _on_finished(self, outcome: calls.CommitOutcome) -> None:
        committed = 0
        for row, (path, uid, state, reason) in enumerate(outcome.rows):
            if row >= self.table.rowCount():
                break
            self.table.item(row, COL_UID).setText(uid)
            text = state if not reason else f"{state}: {reason}"
            item = self.table.item(row, COL_STATE)
            item.setText(text)
            item.setToolTip(text)
            if state in _COLOURS:
                item.setForeground(QBrush(_COLOURS[state]))
            committed += state is calls.CommitState.COMMITTED
        total = len(outcome.rows)
        result = outcome.result
        error = getattr(result, "error", None)
        if committed == total:
            self.outcome.show_message(f"All {total} object(s) committed.", "ok")
        else:
            self.outcome.show_message(
                f"{committed} of {total} object(s) committed" + (f": {error}" if error else "."),
                "error")
        self.commit_finished.emit(outcome)

    def _on_failed(self, sentence: str) -> None:
        self.outcome.show_message(sentence, "error")
        self.commit_finished.emit(None)

    def _on_done(self) -> None:
        self._worker = None
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self._worker is not None
        self.request_button.setEnabled(not busy and bool(self._paths))
        self.cancel_button.setEnabled(busy)
        self.clear_button.setEnabled(not busy)
        self.add_button.setEnabled(not busy)

    def copy_command(self) -> str:
        node = self.node_picker.node()
        if node is None or not self._paths:
            return ""
        text = commands.commit_command(node.host, node.port, self._paths, self.ctx.local_aet(),
                                       node.aet, self.listen_spin.value())
        copy_to_clipboard(text, self)
        return text
