"""Echo panel: the Verification service (PS3.4 Annex A, C-ECHO) against one node or all.

Each node shows a green or red state, the round-trip time, the failure reason in words, and on
demand what was negotiated (the peer's Implementation Class UID / Version Name, PS3.7 D.3.3.2-3,
and its Maximum Length Received, PS3.8 D.1).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QSettings, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui import calls, commands
from dicomdesk.ui.context import UiContext
from dicomdesk.ui.panels.nodes import AeTitleValidator, PortValidator
from dicomdesk.ui.widgets import copy_to_clipboard, restore_view_state, save_view_state
from dicomdesk.ui.workers import OperationWorker

__all__ = ["EchoPanel"]

_log = logging.getLogger(__name__)

_GREEN = QColor("#1e7d32")
_RED = QColor("#c62828")
COL_NAME, COL_ADDRESS, COL_STATE, COL_RTT, COL_MESSAGE = range(5)


class EchoPanel(QWidget):
    """One row per address-book node; results are kept per node name until the next echo."""

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._results: dict[str, Any] = {}
        self._workers: dict[str, OperationWorker] = {}
        #: addresses echoed without a node (typed here, or unsaved in the Nodes form):
        #: row name -> (host, port, called AE title)
        self._typed: dict[str, tuple[str, int, str]] = {}

        self.table = QTableWidget(0, 5, self)
        self.table.setHorizontalHeaderLabels(["Node", "Address", "State", "Round trip", "Result"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(COL_MESSAGE, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._show_details)
        self.table.itemDoubleClicked.connect(lambda _item: self.echo_selected())

        self.echo_button = QPushButton("Echo", self)
        self.echo_button.setToolTip("Send a C-ECHO to the selected node")
        self.echo_all_button = QPushButton("Echo all", self)
        self.details_button = QPushButton("Details", self)
        self.details_button.setCheckable(True)
        self.copy_button = QPushButton("Copy as command", self)
        self.diagnose_button = QPushButton("Diagnose", self)
        self.diagnose_button.setToolTip("Explain what the selected node accepts (association doctor)")
        self.diagnose_button.clicked.connect(self.diagnose_selected)
        self.doctor: Any = None
        self.echo_button.clicked.connect(self.echo_selected)
        self.echo_all_button.clicked.connect(self.echo_all)
        self.copy_button.clicked.connect(self.copy_command)
        self.details_button.toggled.connect(self._show_details)

        # an address typed in directly, echoed without saving it as a node first
        self.host_edit = QLineEdit(self)
        self.host_edit.setPlaceholderText("host or address")
        self.port_edit = QLineEdit("104", self)
        self.port_edit.setValidator(PortValidator(self))
        self.port_edit.setMaximumWidth(70)
        self.aet_edit = QLineEdit("ANY-SCP", self)
        self.aet_edit.setValidator(AeTitleValidator(self))
        self.aet_edit.setMaximumWidth(150)
        self.echo_address_button = QPushButton("Echo address", self)
        self.echo_address_button.setToolTip("C-ECHO this address without saving it as a node")
        self.echo_address_button.clicked.connect(self.echo_typed)
        for edit in (self.host_edit, self.port_edit, self.aet_edit):
            edit.returnPressed.connect(self.echo_typed)
        self.address_message = QLabel("", self)
        self.empty_hint = QLabel(
            "No node yet. Add one in <b>Nodes</b> (Ctrl+5), or type an address below and "
            "press <b>Echo address</b>.", self)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setObjectName("emptyHint")

        self.details = QPlainTextEdit(self)
        self.details.setReadOnly(True)
        self.details.setVisible(False)
        self.details.setMaximumHeight(140)

        buttons = QHBoxLayout()
        for button in (self.echo_button, self.echo_all_button, self.details_button, self.copy_button,
                       self.diagnose_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        title = QLabel("<b>Verification (C-ECHO)</b> — is each node reachable and willing to talk to us?")
        address = QHBoxLayout()
        address.addWidget(QLabel("Address", self))
        address.addWidget(self.host_edit, 1)
        address.addWidget(QLabel("Port", self))
        address.addWidget(self.port_edit)
        address.addWidget(QLabel("AE title", self))
        address.addWidget(self.aet_edit)
        address.addWidget(self.echo_address_button)
        layout.addWidget(title)
        layout.addLayout(buttons)
        layout.addWidget(self.empty_hint)
        layout.addWidget(self.table, 1)
        layout.addLayout(address)
        layout.addWidget(self.address_message)
        layout.addWidget(self.details)
        ctx.book.changed.connect(self._refill)
        self._refill(ctx.book.nodes)

    # -- table -----------------------------------------------------------------------------
    def _refill(self, nodes: list[Any]) -> None:
        selected = self.selected_name()
        names = {node.name for node in nodes}
        entries = [(node.name, node.aet, node.host, node.port) for node in nodes]
        entries += [(name, aet, host, port) for name, (host, port, aet) in self._typed.items()
                    if name not in names]
        self.empty_hint.setVisible(not nodes)
        self.table.setRowCount(len(entries))
        for row, (name, aet, host, port) in enumerate(entries):
            self.table.setItem(row, COL_NAME, QTableWidgetItem(name))
            self.table.setItem(row, COL_ADDRESS, QTableWidgetItem(f"{aet}@{host}:{port}"))
            for column in (COL_STATE, COL_RTT, COL_MESSAGE):
                self.table.setItem(row, column, QTableWidgetItem(""))
            if name in self._results:
                self._paint(row, self._results[name])
            elif name in self._workers:
                self._paint_running(row)
        for column in (COL_NAME, COL_ADDRESS):  # names and addresses readable, not elided
            self.table.resizeColumnToContents(column)
        if selected:
            self.select(selected)
        elif nodes:
            self._select_row(0)

    def row_of(self, name: str) -> int:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, COL_NAME)
            if item is not None and item.text() == name:
                return row
        return -1

    # -- remembered choices (the window's QSettings, GUI thread) ------------------------------
    def restore_settings(self, settings: QSettings) -> None:
        """The node selected when the window last closed, and the column widths."""
        name = settings.value("echo/node")
        if name:
            self.select(str(name))
        restore_view_state(settings, "echo_columns", self.table.horizontalHeader())

    def save_settings(self, settings: QSettings) -> None:
        settings.setValue("echo/node", self.selected_name())
        save_view_state(settings, "echo_columns", self.table.horizontalHeader())

    def select(self, name: str) -> None:
        row = self.row_of(name)
        if row >= 0:
            self._select_row(row)

    def _select_row(self, row: int) -> None:
        """Select ``row`` whatever keys are held: ``QTableView.selectRow`` takes the keyboard's
        modifiers into account, and with Ctrl down (a shortcut being typed) it *deselects* a
        row that is already selected."""
        index = self.table.model().index(row, 0)
        flags = (QItemSelectionModel.SelectionFlag.ClearAndSelect
                 | QItemSelectionModel.SelectionFlag.Rows)
        self.table.selectionModel().setCurrentIndex(index, flags)

    def selected_name(self) -> str:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return ""
        item = self.table.item(rows[0].row(), COL_NAME)
        return item.text() if item else ""

    def state_text(self, name: str) -> str:
        row = self.row_of(name)
        return self.table.item(row, COL_STATE).text() if row >= 0 else ""

    def message_text(self, name: str) -> str:
        row = self.row_of(name)
        return self.table.item(row, COL_MESSAGE).text() if row >= 0 else ""

    def _paint_running(self, row: int) -> None:
        self.table.item(row, COL_STATE).setText("…")
        self.table.item(row, COL_STATE).setForeground(QBrush())
        self.table.item(row, COL_RTT).setText("")
        self.table.item(row, COL_MESSAGE).setText("Echoing…")

    def _paint(self, row: int, result: Any) -> None:
        state = self.table.item(row, COL_STATE)
        if getattr(result, "ok", False):
            state.setText("● OK")
            state.setForeground(QBrush(_GREEN))
            message = str(getattr(result, "status", "") or "Success")
        else:
            state.setText("● Failed")
            state.setForeground(QBrush(_RED))
            message = getattr(result, "error", None) or str(getattr(result, "status", "")) \
                or "The peer did not answer the echo."
        rtt = getattr(result, "rtt_ms", None)
        ok = getattr(result, "ok", False)
        self.table.item(row, COL_RTT).setText(format_rtt(rtt) if ok and rtt is not None else "")
        self.table.item(row, COL_MESSAGE).setText(message)
        self.table.item(row, COL_MESSAGE).setToolTip(message)

    # -- actions ---------------------------------------------------------------------------
    def echo_selected(self) -> None:
        name = self.selected_name()
        if name:
            self.echo(name)

    def echo_all(self) -> None:
        for node in self.ctx.book.nodes:
            self.echo(node.name)

    def echo_typed(self) -> OperationWorker | None:
        """C-ECHO the address typed in (host, port, AE title) without saving a node; it
        appears as a row of its own, named after the address."""
        host, port, aet = (self.host_edit.text().strip(), self.port_edit.text().strip(),
                           self.aet_edit.text().strip())
        problem = ("Type the host or address to echo." if not host or any(c.isspace() for c in host)
                   else "The port is a number from 1 to 65535." if not self.port_edit.hasAcceptableInput()
                   else "The AE title has 1 to 16 characters, no backslash."
                   if not self.aet_edit.hasAcceptableInput() else "")
        if problem:
            self.address_message.setText(problem)
            return None
        self.address_message.setText("")
        name = f"{host}:{port}"
        self._typed[name] = (host, int(port), aet)
        self._refill(self.ctx.book.nodes)
        self.select(name)
        return self.echo(name)

    def record(self, node: Any, result: Any) -> None:
        """An echo done elsewhere (the Nodes form) is listed here too: on its node's row, or,
        for a node not saved yet, on a row of its own."""
        saved = self.ctx.book.find(node.name)
        same = saved is not None and (saved.host, int(saved.port), saved.aet) == \
            (node.host, int(node.port), node.aet)
        name = node.name if same else f"{node.host}:{node.port}"
        if not same:
            self._typed[name] = (node.host, int(node.port), node.aet)
            self._refill(self.ctx.book.nodes)
        self._results[name] = result
        row = self.row_of(name)
        if row >= 0:
            self._paint(row, result)

    def _target(self, name: str) -> calls.Target | None:
        node = self.ctx.book.find(name)
        if node is not None:
            return calls.target_from_node(node, self.ctx.local_aet())
        if name in self._typed:
            host, port, aet = self._typed[name]
            return calls.Target(name, host, port, aet, self.ctx.local_aet())
        return None

    def echo(self, name: str) -> OperationWorker | None:
        """Start a C-ECHO to the node ``name``; the row turns green or red when it ends."""
        target = self._target(name)
        if target is None or name in self._workers:
            return self._workers.get(name)
        self._results.pop(name, None)
        row = self.row_of(name)
        if row >= 0:
            self._paint_running(row)

        def finished(result: Any) -> None:
            self._results[name] = result
            r = self.row_of(name)
            if r >= 0:
                self._paint(r, result)
            self._show_details()

        def failed(sentence: str) -> None:
            finished(_Failure(sentence))

        worker = self.ctx.tracker.run(calls.echo_call(target), label=f"echo {name}",
                                      finished=finished, failed=failed,
                                      done=lambda: self._workers.pop(name, None))
        self._workers[name] = worker
        return worker

    def diagnose_selected(self) -> Any:
        """Open the association doctor (``ui/doctor.py``) for the selected node."""
        from dicomdesk.ui.doctor import open_doctor

        node = self.ctx.book.find(self.selected_name())
        if node is None:
            return None
        target = calls.target_from_node(node, self.ctx.local_aet())
        self.doctor = open_doctor(self.ctx.tracker, target, None, self)
        return self.doctor

    def copy_command(self) -> str:
        target = self._target(self.selected_name())
        if target is None:
            return ""
        text = commands.echo_command(target.host, target.port, self.ctx.local_aet(),
                                     target.called_aet)
        copy_to_clipboard(text, self)
        return text

    def _show_details(self, *_: Any) -> None:
        show = self.details_button.isChecked()
        self.details.setVisible(show)
        if not show:
            return
        name = self.selected_name()
        result = self._results.get(name)
        if result is None:
            self.details.setPlainText("No echo yet for this node.")
            return
        lines = [
            f"Node: {name}",
            f"Result: {'success' if getattr(result, 'ok', False) else 'failure'}",
            f"Status: {getattr(result, 'status', None)}",
            f"Round trip: {format_rtt(getattr(result, 'rtt_ms', None))}",
            f"Peer implementation class UID: {getattr(result, 'peer_implementation_uid', None)}",
            f"Peer implementation version: {getattr(result, 'peer_implementation_version', None)}",
            f"Peer maximum PDU length: {getattr(result, 'peer_max_pdu', None)}",
        ]
        if getattr(result, "error", None):
            lines.append(f"Reason: {result.error}")
        self.details.setPlainText("\n".join(lines))


def format_rtt(rtt_ms: float | None) -> str:
    """A round-trip time as a person reads it: tenths below 10 ms, whole ms above."""
    if rtt_ms is None:
        return "—"
    return f"{rtt_ms:.1f} ms" if rtt_ms < 10 else f"{rtt_ms:.0f} ms"


class _Failure:
    """Stand-in result when the echo callable itself raised (shown as a red row)."""

    ok = False
    status = None
    rtt_ms = None

    def __init__(self, error: str) -> None:
        self.error = error
