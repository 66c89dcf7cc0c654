"""Server panel: the local Storage SCP / Q/R SCP — its form (AE title, port, storage folder,
allowed calling AE titles), start and stop, and the layout of what shows its work: the archive
browser (``archive_browser.py``), the logs (``server_logs.py``: associations, received objects,
forwarding) and the preview of the selected object (``preview_pane.py``).

Flow "bytes to row" (ARCHITECTURE) ends here: ``LocalServer`` calls ``on_stored`` after the object
is durable and indexed; ``ServerHost`` batches those into ``stored`` signals that append rows to
the received-objects list (the last ``STORED_LIMIT``) and hand the new instances to the archive
browser (``archive_browser.py``: a lazy tree over the index), which reads their rows in its reader
thread and inserts them under the parents it already shows.

Disk and index work (browsing, decode, tag dump, delete, export) runs off the GUI thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QValidator
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui import commands
from dicomdesk.ui.context import UiContext
from dicomdesk.ui.panels.archive_browser import ArchiveBrowser
from dicomdesk.ui.panels.nodes import AeTitleValidator, PortValidator
from dicomdesk.ui.panels.preview_pane import PreviewPane
from dicomdesk.ui.panels.server_logs import STORED_LIMIT, ServerLogs
from dicomdesk.ui.server_host import ServerState, ServerStatus, parse_allowed_calling_aets
from dicomdesk.ui.widgets import StatusLabel, copy_to_clipboard, restore_view_state, save_view_state
from dicomdesk.ui.workers import OperationWorker

__all__ = ["STORED_LIMIT", "ServerPanel"]

_log = logging.getLogger(__name__)

#: how the state line shows a server state (StatusLabel kinds; others are "info")
_STATE_KINDS = {ServerStatus.LISTENING: "ok", ServerStatus.PORT_TAKEN: "error",
                ServerStatus.ERROR: "error"}


class PortSpinBox(QSpinBox):
    """A port field that says why a keystroke was refused (as the Nodes form does), instead
    of silently keeping 9999 of a typed 99999 or ignoring "abc"."""

    #: the reason a keystroke was refused
    rejected = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(1, 65535)
        self._explain = PortValidator(self)

    def validate(self, text: str, pos: int) -> Any:  # noqa: D401 - Qt API
        verdict = super().validate(text, pos)
        state = verdict[0] if isinstance(verdict, tuple) else verdict
        if state == QValidator.State.Invalid:
            self._explain.validate(text, pos)
            self.rejected.emit(self._explain.reason or "The port is a number from 1 to 65535.")
        return verdict


class ServerPanel(QWidget):
    """Start/stop form on top; archive browser and logs in tabs; preview and tags at right."""

    #: the ``preview.Preview`` the preview pane just showed
    preview_ready = Signal(object)
    #: the archive browser finished a (re)load or an incremental insert
    archive_updated = Signal()
    #: (action, sentence) after Delete or Export ended
    archive_action_done = Signal(str, str)
    #: "Request commitment" for the selected received objects (their file paths)
    commit_requested = Signal(list, str)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        #: a port used for this run only because the usual one was taken (see start_server)
        self.borrowed_port: int | None = None
        #: the window's settings, once ``restore_settings`` gave them
        self._settings: QSettings | None = None

        state = ctx.server.state
        self.aet_edit = QLineEdit(state.aet, self)
        self._aet_validator = AeTitleValidator(self)
        self.aet_edit.setValidator(self._aet_validator)
        self.port_spin = PortSpinBox(self)
        self.port_spin.setValue(state.port)
        #: a sentence about the form's fields shown instead of the server state (until fixed)
        self._form_error = ""
        self.aet_edit.inputRejected.connect(
            lambda: self._show_form_error(self._aet_validator.reason))
        self.aet_edit.textChanged.connect(self._aet_changed)
        self.port_spin.rejected.connect(self._show_form_error)
        self.port_spin.valueChanged.connect(lambda _v: self._clear_form_error())
        self.storage_edit = QLineEdit(state.storage_dir, self)
        self.browse_button = QPushButton("Browse…", self)
        self.browse_button.clicked.connect(self._choose_storage)
        self.open_folder_button = QPushButton("Open folder", self)
        self.open_folder_button.setToolTip("Show the storage folder in the file manager")
        self.open_folder_button.clicked.connect(self.open_storage_folder)
        self.allowed_edit = QLineEdit(self)
        self.allowed_edit.setPlaceholderText("any calling AE title — or e.g.  STORESCU; CT1@10.0.0.5")
        self.allowed_edit.setToolTip(
            "Calling AE titles allowed to associate, separated by spaces or ';'. An entry "
            "AET@ADDRESS[,ADDRESS] also ties the title to addresses. Empty: anyone. Others are "
            "rejected and shown as \"rejected\" in the association log.")
        self.start_button = QPushButton("Start", self)
        self.stop_button = QPushButton("Stop", self)
        self.copy_button = QPushButton("Copy as command", self)
        self.start_button.clicked.connect(self.start_server)
        self.stop_button.clicked.connect(ctx.server.stop)
        self.copy_button.clicked.connect(self.copy_command)
        self.commit_button = QPushButton("Request commitment…", self)
        self.commit_button.setToolTip("Ask a node whether it keeps the selected received "
                                      "objects safe (Storage Commitment)")
        self.commit_button.clicked.connect(self.request_commitment)
        self.state_label = StatusLabel(self)

        storage_row = QHBoxLayout()
        storage_row.addWidget(self.storage_edit, 1)
        storage_row.addWidget(self.browse_button)
        storage_row.addWidget(self.open_folder_button)
        form = QFormLayout()
        form.addRow("AE title", self.aet_edit)
        form.addRow("Port", self.port_spin)
        form.addRow("Storage folder", storage_row)
        form.addRow("Allowed calling AE titles", self.allowed_edit)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.copy_button):
            buttons.addWidget(button)
        buttons.addWidget(self.commit_button)
        buttons.addWidget(self.state_label, 1)

        # archive browser (its own widget: a lazy tree over the index, archive_browser.py)
        self.archive_browser = ArchiveBrowser(ctx, self.storage_dir, self)
        self.archive_browser.instance_selected.connect(self.show_preview)
        self.archive_browser.updated.connect(self.archive_updated)
        self.archive_browser.action_done.connect(self.archive_action_done)
        self.archive_model = self.archive_browser.model
        self.archive_view = self.archive_browser.view
        self.archive_label = self.archive_browser.label
        self.refresh_button = self.archive_browser.refresh_button
        self.export_button = self.archive_browser.export_button
        self.delete_button = self.archive_browser.delete_button
        self.deidentify_export = self.archive_browser.deidentify_export
        archive_box = self.archive_browser

        # the server's logs (server_logs.py): associations, received objects, forwarding
        self.logs = ServerLogs(self)
        self.associations, self.stored = self.logs.associations, self.logs.stored
        self.forwarding = self.logs.forwarding
        self.association_view = self.logs.association_view
        self.stored_view = self.logs.stored_view
        self.forwarding_view = self.logs.forwarding_view
        self.stored_view.selectionModel().currentRowChanged.connect(self._on_stored_selected)
        self.stored_view.doubleClicked.connect(self._show_stored_in_archive)
        tabs = QTabWidget(self)
        self.tabs = tabs
        tabs.addTab(archive_box, "Archive")
        tabs.addTab(self.association_view, "Associations")
        tabs.addTab(self.stored_view, "Received objects")
        tabs.addTab(self.forwarding_view, "Forwarding")

        # preview: picture (with window/level drag) and tag dump (preview_pane.py)
        self.preview = PreviewPane(ctx, self)
        self.preview.preview_ready.connect(self.preview_ready)
        self.preview_tabs = self.preview
        self.preview_label = self.preview.image_view
        self.preview_caption = self.preview.caption
        self.reset_window_button = self.preview.reset_window_button
        self.frame_slider = self.preview.frame_slider
        self.tags_view = self.preview.tags_view
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(tabs)
        splitter.addWidget(self.preview)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        self.splitter = splitter  # its position is remembered by the window
        self.preview.setMinimumWidth(360)  # the tag dump's values stay readable
        splitter.setSizes([560, 460])

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Local server</b> — Storage SCP and Query/Retrieve SCP", self))
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)

        ctx.server.state_changed.connect(self._on_state)
        ctx.server.state_changed.connect(self._remember)
        ctx.server.associations.connect(self.logs.add_associations)
        ctx.server.association_progress.connect(self.logs.update_open_associations)
        ctx.server.stored.connect(self._on_stored)
        ctx.server.forwarded.connect(self.logs.add_forwarded)
        self._on_state(state)
        if not self.archive_browser.shown_root:
            # at once, read-only: the browser never waits for the server's start (recovery)
            self.archive_browser.reload()

    # -- server control --------------------------------------------------------------------
    def allowed_calling_aets(self) -> tuple[str, ...]:
        """The allow-list field's entries; raises ValueError with the reason when one is invalid."""
        return parse_allowed_calling_aets(self.allowed_edit.text())

    def _show_form_error(self, reason: str) -> None:
        self._form_error = reason
        self.state_label.show_message(reason, "error")

    def _clear_form_error(self) -> None:
        """A fixed field takes its error away: the server's state is shown again."""
        if self._form_error:
            self._form_error = ""
            self._show_state(self.ctx.server.state)

    def _aet_changed(self, text: str) -> None:
        if self.aet_edit.hasAcceptableInput():
            self._clear_form_error()
        else:
            self._aet_validator.validate(text, 0)
            self._show_form_error(self._aet_validator.reason)

    def start_server(self, port: int | None = None) -> None:
        if not self.aet_edit.hasAcceptableInput():
            self._show_form_error("The AE title is not valid (1-16 characters, no \\).")
            return
        try:
            allowed = self.allowed_calling_aets()
        except ValueError as exc:
            self.state_label.show_message(f"Allowed calling AE titles: {exc}", "error")
            self.allowed_edit.setFocus()
            return
        if port:
            # "Use port N" of the status bar: another program holds the usual port; this
            # one is borrowed for this run and never saved as the server's port
            self.borrowed_port = int(port)
            self.port_spin.setValue(int(port))
        elif self.port_spin.value() != self.borrowed_port:
            self.borrowed_port = None
        # an empty field keeps the settings file's allow-list (as `dicomdesk serve --settings`)
        self.ctx.server.start(self.aet_edit.text().strip(), self.port_spin.value(),
                              self.storage_edit.text().strip(),
                              allowed_calling_aets=allowed or None)

    def _choose_storage(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Storage folder", self.storage_edit.text())
        if folder:
            self.storage_edit.setText(folder)
            self.reload_archive()

    def open_storage_folder(self) -> bool:
        """Show the storage folder in the desktop's file manager (created if missing)."""
        folder = self.storage_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.state_label.show_message(f"Cannot create {folder}: {exc.strerror}", "error")
            return False
        ok = QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
        if not ok:
            self.state_label.show_message(f"No file manager could open {folder}.", "warning")
        return ok

    def _on_state(self, state: ServerState) -> None:
        running = state.status.busy
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(state.status is ServerStatus.LISTENING)
        for widget in (self.aet_edit, self.port_spin, self.storage_edit, self.browse_button,
                       self.allowed_edit):
            widget.setEnabled(not running)
        if not self._form_error:
            self._show_state(state)
        if (state.status in (ServerStatus.LISTENING, ServerStatus.STOPPED)
                and self.archive_browser.needs_reload()):
            self.archive_browser.follow_source()

    def _show_state(self, state: ServerState) -> None:
        kind = _STATE_KINDS.get(state.status, "info")
        if state.status is ServerStatus.LISTENING and state.message:
            kind = "warning"  # listening beyond this computer (ServerState.message says how)
        text = state.sentence()
        if state.status is ServerStatus.PORT_TAKEN and state.suggested_port:
            text += f" — try port {state.suggested_port} (see the status bar)."
        self.state_label.show_message(text, kind)

    # -- remembered choices (the window's QSettings, GUI thread) ------------------------------
    def restore_settings(self, settings: QSettings) -> None:
        """The splitter's position; from now on a server that listens has its port and AE
        title remembered at once (``_remember``). The fields' values came from the window's
        ``ServerHost.configure`` (read before the panel was built)."""
        self._settings = settings
        restore_view_state(settings, "server_splitter", self.splitter)

    def save_settings(self, settings: QSettings) -> None:
        state = self.ctx.server.state
        settings.setValue("server/aet", self.aet_edit.text().strip() or state.aet)
        if self.port_spin.value() != self.borrowed_port:
            settings.setValue("server/port", self.port_spin.value())
        settings.setValue("server/storage_dir", self.storage_edit.text().strip())
        save_view_state(settings, "server_splitter", self.splitter)

    def _remember(self, state: ServerState) -> None:
        """A server that listens: its port and AE title are the ones to start with next time.
        A port borrowed because another program holds the usual one is for this run only:
        saving it would move the server for the next start, away from the address the PACS
        know for us (issue 17)."""
        if self._settings is None or state.status is not ServerStatus.LISTENING:
            return
        if state.port != self.borrowed_port:
            self._settings.setValue("server/port", state.port)
        self._settings.setValue("server/aet", state.aet)

    def copy_command(self) -> str:
        try:
            allowed = self.allowed_calling_aets()
        except ValueError:
            allowed = ()
        text = commands.serve_command(self.port_spin.value(), self.aet_edit.text().strip(),
                                      self.storage_edit.text().strip(), allowed)
        copy_to_clipboard(text, self)
        return text

    # -- received objects ------------------------------------------------------------------
    def request_commitment(self) -> list[str]:
        """The selected received objects (all of them when none is selected) go to the
        Commitment panel."""
        paths = self.logs.stored_paths()
        if paths:
            self.commit_requested.emit(paths, "")
        return paths

    def _on_stored(self, objects: list[Any]) -> None:
        self.logs.add_stored(objects)
        uids = [str(o.sop_instance_uid) for o in objects
                if getattr(o, "error", None) is None and getattr(o, "sop_instance_uid", "")]
        if uids:
            self.archive_browser.arrived(uids)

    def _show_stored_in_archive(self, index: Any) -> None:
        event = self.stored.record(index.row()).event
        if getattr(event, "error", None) is None and getattr(event, "sop_instance_uid", ""):
            self.tabs.setCurrentWidget(self.archive_browser)
            self.archive_browser.reveal(str(event.sop_instance_uid))

    # -- archive browser ---------------------------------------------------------------------
    def reload_archive(self) -> None:
        """Show the storage folder's archive again from its first page."""
        self.archive_browser.reload()

    def selected_studies(self) -> list[str]:
        return self.archive_browser.selected_studies()

    def delete_studies(self, studies: list[str]) -> OperationWorker:
        return self.archive_browser.delete_studies(studies)

    def export_studies(self, studies: list[str], folder: str | Path) -> OperationWorker:
        return self.archive_browser.export_studies(studies, folder)

    # -- preview (preview_pane.py) -----------------------------------------------------------
    def _on_stored_selected(self, current: Any, _previous: Any) -> None:
        if current.isValid():
            path = self.stored.record(current.row()).event.path
            if path:
                self.show_preview(str(path))

    def show_preview(self, path: str, frame: int = 0) -> None:
        self.preview.show_preview(path, frame)

    def set_window(self, center: float, width: float) -> None:
        self.preview.set_window(center, width)

    def reset_window(self) -> None:
        self.preview.reset_window()

    def shutdown(self) -> None:
        """The window closes: the archive browser's reader thread lets go of the index."""
        self.archive_browser.shutdown()

    def storage_dir(self) -> Path:
        return Path(self.storage_edit.text().strip())
