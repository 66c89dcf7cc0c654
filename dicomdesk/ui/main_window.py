"""The main window: side bar + stacked panels, menus, status bar, remembered choices.

QSettings is read and written on the GUI thread: the window keeps its geometry and current panel,
and hands the settings to each panel's ``restore_settings`` / ``save_settings``, so every panel
owns what it remembers (ARCHITECTURE "ui/"). Closing while transfers run asks first, then cancels them and closes once
the workers have stopped (without blocking the event loop meanwhile).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QWidget,
)

from dicomdesk import __version__
from dicomdesk.ui.assets import load_icon
from dicomdesk.ui.context import UiContext
from dicomdesk.ui.nodebook import NodeBook
from dicomdesk.ui.panels.echo import EchoPanel
from dicomdesk.ui.panels.inspector import InspectorPanel
from dicomdesk.ui.panels.nodes import NodesPanel
from dicomdesk.ui.panels.query import QueryPanel
from dicomdesk.ui.panels.send import SendPanel
from dicomdesk.ui.panels.server import ServerPanel
from dicomdesk.ui.panels.worklist import WorklistPanel
from dicomdesk.ui.panels.commitment import CommitmentPanel
from dicomdesk.ui.server_host import ServerHost, ServerState, ServerStatus
from dicomdesk.ui.workers import TaskTracker, favour_gui_thread

__all__ = ["MainWindow", "PANELS"]

_log = logging.getLogger(__name__)

#: (key, title, icon) in side bar order; View > Ctrl+1..5 follow this order.
PANELS = (
    ("echo", "Echo", "echo"),
    ("query", "Query / Retrieve", "query"),
    ("send", "Send", "send"),
    ("server", "Local server", "server"),
    ("nodes", "Nodes", "nodes"),
    ("worklist", "Worklist", "worklist"),
    ("commitment", "Commitment", "commitment"),
)


def _default_storage_dir() -> str:
    try:
        from dicomdesk import config

        return str(config.default_storage_dir())
    except Exception:  # config unavailable: the server will use its own default
        return ""


class MainWindow(QMainWindow):
    """Hosts the panels; ``settings`` and ``nodes_path`` are injectable for tests."""

    def __init__(
        self,
        settings: QSettings | None = None,
        nodes_path: str | Path | None = None,
        autostart_server: bool | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings if settings is not None else QSettings()
        self.setWindowTitle("dicomdesk")
        self.setWindowIcon(load_icon("dicomdesk"))
        self._closing = False
        self._close_confirmed = False

        favour_gui_thread()
        self.tracker = TaskTracker(self)
        self.book = NodeBook(nodes_path, self)
        self.server_host = ServerHost(self.tracker, self, nodes_path=self.book.path)
        s = self.settings
        self.server_host.configure(
            str(s.value("server/aet", "DICOMDESK")),
            int(s.value("server/port", 11112)),
            str(s.value("server/storage_dir", "") or _default_storage_dir()),
        )
        try:
            self.book.load()
        except ImportError:
            self.book.load_error = "The address book is not available (dicomdesk.config missing)."
        self.ctx = UiContext(self.tracker, self.book, self.server_host)

        self.echo_panel = EchoPanel(self.ctx)
        self.query_panel = QueryPanel(self.ctx)
        self.send_panel = SendPanel(self.ctx)
        self.server_panel = ServerPanel(self.ctx)
        self.nodes_panel = NodesPanel(self.ctx)
        self.worklist_panel = WorklistPanel(self.ctx)
        self.commitment_panel = CommitmentPanel(self.ctx)
        self.inspector_panel = InspectorPanel()
        self.panels: dict[str, QWidget] = {
            "worklist": self.worklist_panel,
            "commitment": self.commitment_panel,
            "echo": self.echo_panel,
            "query": self.query_panel,
            "send": self.send_panel,
            "server": self.server_panel,
            "nodes": self.nodes_panel,
        }

        self.nodes_panel.echoed.connect(self.echo_panel.record)
        self.send_panel.commit_requested.connect(self._commit_objects)
        self.server_panel.commit_requested.connect(self._commit_objects)

        self.side_bar = QListWidget(self)
        self.side_bar.setObjectName("sideBar")
        self.side_bar.setIconSize(QSize(28, 28))
        self.side_bar.setFixedWidth(170)
        self.stack = QStackedWidget(self)
        for key, title, icon in PANELS:
            item = QListWidgetItem(load_icon(icon), title)
            item.setData(Qt.ItemDataRole.UserRole, key)
            self.side_bar.addItem(item)
            self.stack.addWidget(self.panels[key])
        self.side_bar.currentRowChanged.connect(self.stack.setCurrentIndex)

        central = QWidget(self)
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.side_bar)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self._build_menus()
        self._build_status_bar()
        self._restore()
        if autostart_server is None:
            autostart_server = s.value("server/autostart", True, type=bool)
        if autostart_server:
            self.server_panel.start_server()

    # -- construction ----------------------------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.add_files_action = QAction("&Add files…", self)
        self.add_files_action.setShortcut(QKeySequence.StandardKey.Open)
        self.add_files_action.triggered.connect(self._add_files)
        file_menu.addAction(self.add_files_action)
        file_menu.addSeparator()
        self.quit_action = QAction("&Quit", self)
        self.quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        self.quit_action.triggered.connect(self.close)
        file_menu.addAction(self.quit_action)

        view_menu = self.menuBar().addMenu("&View")
        self.panel_actions: list[QAction] = []
        for row, (_key, title, icon) in enumerate(PANELS):
            action = QAction(load_icon(icon), title, self)
            action.setShortcut(QKeySequence(f"Ctrl+{row + 1}"))
            action.triggered.connect(lambda _checked=False, r=row: self.show_panel_row(r))
            view_menu.addAction(action)
            self.panel_actions.append(action)
        # the protocol inspector is a dock under the panels (hidden until asked for)
        self.inspector_dock = QDockWidget("Protocol inspector", self)
        self.inspector_dock.setObjectName("inspectorDock")
        self.inspector_dock.setWidget(self.inspector_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.inspector_dock)
        self.inspector_dock.hide()
        self.inspector_action = self.inspector_dock.toggleViewAction()
        self.inspector_action.setIcon(load_icon("inspector"))
        self.inspector_action.setShortcut(QKeySequence("Ctrl+Shift+I"))
        view_menu.addSeparator()
        view_menu.addAction(self.inspector_action)
        self.addAction(self.inspector_action)  # shortcut whatever has the focus
        # also on the window, so the shortcuts work whatever has the focus
        self.addActions(self.panel_actions + [self.add_files_action, self.quit_action])

        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About dicomdesk", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)

    def _build_status_bar(self) -> None:
        self.server_status = QLabel(self)
        self.other_port_button = QPushButton(self)
        self.other_port_button.setFlat(True)
        self.other_port_button.setVisible(False)
        self.other_port_button.clicked.connect(self._use_other_port)
        self.transfers_status = QLabel(self)
        bar = self.statusBar()
        bar.addWidget(self.server_status)
        bar.addWidget(self.other_port_button)
        bar.addPermanentWidget(self.transfers_status)
        self.server_host.state_changed.connect(self._on_server_state)
        self.tracker.changed.connect(self._on_transfers)
        self.server_host.incoming_changed.connect(lambda *_: self._on_transfers(
            self.tracker.transfer_count()))
        self._on_server_state(self.server_host.state)
        self._on_transfers(0)

    # -- navigation ------------------------------------------------------------------------
    def show_panel(self, key: str) -> None:
        for row, (k, _title, _icon) in enumerate(PANELS):
            if k == key:
                self.show_panel_row(row)

    def show_panel_row(self, row: int) -> None:
        self.side_bar.setCurrentRow(row)

    def current_panel_key(self) -> str:
        return PANELS[max(0, self.side_bar.currentRow())][0]

    def _commit_objects(self, paths: list[str], node: str) -> None:
        """Objects to commit from a send or the local server: the Commitment panel takes them."""
        self.commitment_panel.set_files(paths, node or None)
        self.show_panel("commitment")

    def _add_files(self) -> None:
        self.show_panel("send")
        self.send_panel.choose_files()

    def _about(self) -> None:
        QMessageBox.about(
            self, "About dicomdesk",
            f"<b>dicomdesk {__version__}</b><p>A desktop DICOM network client and server: "
            "verification, storage, query/retrieve and a local archive.</p>"
            "<p>Every action can be copied as the equivalent <tt>dicomdesk</tt> command.</p>")

    # -- status bar ------------------------------------------------------------------------
    def _on_server_state(self, state: ServerState) -> None:
        self.server_status.setText(state.sentence())
        suggested = state.suggested_port if state.status is ServerStatus.PORT_TAKEN else None
        self.other_port_button.setVisible(bool(suggested))
        if suggested:
            self.other_port_button.setText(f"Use port {suggested}")

    def _use_other_port(self) -> None:
        suggested = self.server_host.state.suggested_port
        if suggested:
            self.server_panel.start_server(port=suggested)

    def _on_transfers(self, count: int) -> None:
        associations, objects = self.server_host.incoming
        parts = []
        if count:
            parts.append(f"{count} transfer{'s' if count > 1 else ''} under way")
        if associations:
            parts.append(f"receiving on {associations} association{'s' if associations > 1 else ''}"
                         f" ({objects} object{'' if objects == 1 else 's'} so far)")
        if parts:
            text = "; ".join(parts)
            self.transfers_status.setText(text[:1].upper() + text[1:])
            self.transfers_status.setToolTip("\n".join(self.tracker.labels()))
        else:
            self.transfers_status.setText("No transfer under way")
            self.transfers_status.setToolTip("")
        if self._closing and self.tracker.transfer_count() == 0:
            QTimer.singleShot(0, self.close)

    # -- remembered choices ----------------------------------------------------------------
    def _restore(self) -> None:
        """The window's own geometry and panel; each panel restores what it remembers."""
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1100, 720)
        self.show_panel(str(s.value("window/panel", "echo")))
        for panel in self.panels.values():
            restore = getattr(panel, "restore_settings", None)
            if restore is not None:
                restore(s)

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/panel", self.current_panel_key())
        for panel in self.panels.values():
            save = getattr(panel, "save_settings", None)
            if save is not None:
                save(s)
        s.sync()

    # -- closing ---------------------------------------------------------------------------
    def confirm_close(self, count: int) -> bool:
        """Ask before cancelling running transfers (tests replace this method)."""
        answer = QMessageBox.question(
            self, "Quit dicomdesk",
            f"{count} transfer{'s are' if count > 1 else ' is'} under way. "
            "Cancel and quit?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        count = self.tracker.transfer_count()
        if count and not self._closing:
            if not self.confirm_close(count):
                event.ignore()
                return
            self._closing = True
            self.statusBar().showMessage("Cancelling transfers before quitting…")
            self.tracker.cancel_all()
            QTimer.singleShot(10_000, self._force_close)  # an operation ignoring cancel
            event.ignore()
            return
        if count and not self._close_confirmed:
            event.ignore()  # still waiting for the cancelled transfers
            return
        self.save_settings()
        self.tracker.cancel_all()
        self.server_host.stop_now()
        self.server_panel.shutdown()
        event.accept()

    def _force_close(self) -> None:
        self._close_confirmed = True
        self.close()

    def sizeHint(self) -> QSize:  # noqa: D401 - Qt API
        return QSize(1100, 720)

    def panel(self, key: str) -> Any:
        return self.panels[key]
