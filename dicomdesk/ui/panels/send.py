"""Send panel: drop files and folders, then C-STORE them (PS3.4 Annex B) to a chosen node.

Flow "drop to bytes" (ARCHITECTURE): a drop only records paths; a worker runs
``operations.scan_paths`` which reads the headers and fills the queue in batches (no file is read
on the GUI thread); Send runs ``operations.send`` whose per-file outcomes turn rows green or red.
Non-DICOM files stay in the queue as "skipped" with the reason.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui import calls, commands
from dicomdesk.ui.context import UiContext
from dicomdesk.ui.models.transfer_queue import SendState, TransferQueueModel
from dicomdesk.ui.widgets import NodePicker, StatusLabel, copy_to_clipboard, restore_view_state, \
    save_view_state
from dicomdesk.ui.workers import OperationWorker
from dicomdesk.units import human_size

__all__ = ["SendPanel", "local_paths"]

_log = logging.getLogger(__name__)


def local_paths(mime: Any) -> list[str]:
    """Local file and folder paths of a drop (text/uri-list of file: URLs, RFC 8089)."""
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


DROP_HINT = "Drop DICOM files or folders here, or use Add files / Add folder."


def _is_part10(row: Any) -> bool:
    """A queue row of a Part-10 file that is not an instance (a DICOMDIR)."""
    return bool(getattr(row.info, "part10", False))


class SendPanel(QWidget):
    """Queue table, drop target, Send / Cancel / Retry failed."""

    #: the queue scan finished (count of rows added)
    scan_finished = Signal(int)
    #: a send finished (the operations.SendResult, or None if the worker failed)
    send_finished = Signal(object)
    #: "Request commitment": the stored files and the node they went to
    commit_requested = Signal(list, str)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setAcceptDrops(True)
        self.model = TransferQueueModel(self)
        self._roots: list[str] = []
        self._scans: list[OperationWorker] = []
        self._send: OperationWorker | None = None
        self._send_started = 0.0
        self._send_bytes_done = 0
        self._send_paths: list[str] = []
        self._last_folder = ""

        self.drop_hint = QLabel(DROP_HINT, self)
        self.drop_hint.setObjectName("dropHint")
        self.drop_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(6, QHeaderView.ResizeMode.Stretch)
        # fixed starting widths (resize-to-contents would read every row of a 10,000-file queue),
        # narrow enough that the State column shows at the default size and at 1024x700
        for column, width in enumerate((130, 120, 100, 120, 112, 78)):  # Size: "512.7 KiB" whole
            self.table.horizontalHeader().resizeSection(column, width)
        self.table.horizontalHeader().setMinimumSectionSize(40)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)  # one line per file: long values are elided, not wrapped

        self.add_files_button = QPushButton("Add files…", self)
        self.add_folder_button = QPushButton("Add folder…", self)
        self.clear_button = QPushButton("Clear", self)
        self.add_files_button.clicked.connect(self.choose_files)
        self.add_folder_button.clicked.connect(self.choose_folder)
        self.clear_button.clicked.connect(self.clear)
        # Changes to what is sent (issue 15): never to the files on disk.
        self.deidentify_check = QCheckBox("De-identify", self)
        self.deidentify_check.setToolTip(
            "Send de-identified copies: PS3.15 Annex E Basic Profile, new UIDs consistent within "
            "the send; images with Burned In Annotation = YES are refused")
        self.edit_tags_button = QPushButton("Edit tags…", self)
        self.edit_tags_button.setToolTip("Correct attributes (e.g. PatientID) of the selected files, "
                                         "or of every file when none is selected, as they are sent")
        self.edit_tags_button.clicked.connect(self.edit_tags)
        self.edits_label = QLabel("", self)
        self._edits: tuple[Any, ...] = ()
        self._file_edits: dict[str, tuple[Any, ...]] = {}
        self.edit_dialog: Any = None

        self.node_picker = NodePicker(ctx.book, self)
        self.send_button = QPushButton("Send", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.retry_button = QPushButton("Retry failed", self)
        self.copy_button = QPushButton("Copy as command", self)
        self.send_button.clicked.connect(self.send)
        self.cancel_button.clicked.connect(self.cancel)
        self.retry_button.clicked.connect(self.retry_failed)
        self.copy_button.clicked.connect(self.copy_command)
        self.diagnose_button = QPushButton("Diagnose", self)
        self.diagnose_button.setToolTip("Explain what the node accepts for the selected (or failed) "
                                        "files (association doctor)")
        self.diagnose_button.clicked.connect(self.diagnose)
        self.doctor: Any = None

        self.commit_button = QPushButton("Request commitment…", self)
        self.commit_button.setToolTip("Ask the node whether it keeps the stored files safe "
                                      "(Storage Commitment)")
        self.commit_button.clicked.connect(self.request_commitment)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.rate_label = QLabel("", self)
        self.summary = StatusLabel(self)

        top = QHBoxLayout()
        for widget in (self.add_files_button, self.add_folder_button, self.clear_button):
            top.addWidget(widget)
        top.addStretch(1)
        for widget in (self.edits_label, self.edit_tags_button, self.deidentify_check):
            top.addWidget(widget)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("Send to", self))
        bottom.addWidget(self.node_picker, 1)
        for widget in (self.send_button, self.cancel_button, self.retry_button, self.copy_button,
                       self.diagnose_button):
            bottom.addWidget(widget)
        bottom.addWidget(self.commit_button)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.rate_label)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Send (C-STORE)</b>", self))
        layout.addLayout(top)
        layout.addWidget(self.drop_hint)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)
        layout.addLayout(progress_row)
        layout.addWidget(self.summary)
        self._update_buttons()

    # -- drop and add ----------------------------------------------------------------------
    def _highlight_drop(self, on: bool) -> None:
        """The drop zone lights up while files are dragged over the panel."""
        self.drop_hint.setProperty("dragOver", on)
        self.drop_hint.setText("Release to queue these files and folders." if on else DROP_HINT)
        self.drop_hint.style().unpolish(self.drop_hint)
        self.drop_hint.style().polish(self.drop_hint)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
            self._highlight_drop(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:
        event.acceptProposedAction()

    def dragLeaveEvent(self, event: Any) -> None:
        self._highlight_drop(False)
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self._highlight_drop(False)
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.add_paths(paths)

    def start_folder(self) -> str:
        """Where the file dialogs open: the last folder used, else the user's home."""
        last = self._last_folder
        return last if last and Path(last).is_dir() else str(Path.home())

    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add DICOM files", self.start_folder())
        if files:
            self._last_folder = str(Path(files[0]).parent)
            self.add_paths(files)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of DICOM files",
                                                  self.start_folder())
        if folder:
            self._last_folder = str(Path(folder).parent)
            self.add_paths([folder])

    def add_paths(self, paths: list[str]) -> OperationWorker:
        """Queue files/folders: a worker reads their headers and the rows arrive in batches."""
        paths = [str(p) for p in paths]
        self._roots += [p for p in paths if p not in self._roots]
        self.summary.show_message(f"Reading {len(paths)} item(s)…")
        def finished(infos: Any) -> None:
            self.model.add_file_infos(list(infos or []))
            self._show_queue_summary(self.model.take_requeued())

        def done() -> None:
            self._scans.remove(worker)
            self._update_buttons()
            self.scan_finished.emit(self.model.rowCount())

        worker = self.ctx.tracker.run(
            calls.scan_call(paths), label="read dropped files", rows=self.model.add_file_infos,
            finished=finished, failed=lambda s: self.summary.show_message(s, "error"), done=done)
        self._scans.append(worker)
        self._update_buttons()
        return worker

    def clear(self) -> None:
        if self._send is not None:
            return
        self.model.clear()
        self._roots.clear()
        self.summary.show_message("")
        self.progress.setValue(0)
        self.rate_label.setText("")
        self._update_buttons()

    def _show_queue_summary(self, requeued: int = 0) -> None:
        """What Send will do, truly: the files queued (those dropped again included), the
        Part-10 files that will not be sent named with their reason, the rest counted."""
        rows = self.model.rows()
        queued = [r for r in rows if r.is_dicom and r.state is SendState.QUEUED]
        size = sum(r.size for r in queued)
        text = f"{len(queued)} DICOM file(s) queued ({human_size(size)})"
        if requeued:
            text += f", {requeued} of them again"
        text += self._skipped_sentence(rows)
        self.summary.show_message(text + ".")

    @staticmethod
    def _skipped_sentence(rows: list[Any]) -> str:
        """", N skipped (not DICOM); not sent: DICOMDIR: …" for the rows that are not sent."""
        not_dicom = sum(1 for r in rows if not r.is_dicom and not _is_part10(r))
        named = [r for r in rows if not r.is_dicom and _is_part10(r)]
        text = f", {not_dicom} skipped (not DICOM)" if not_dicom else ""
        if named:
            listed = "; ".join(f"{Path(r.path).name} ({r.message})" for r in named[:3])
            more = f" and {len(named) - 3} more" if len(named) > 3 else ""
            text += f"; not sent: {listed}{more}"
        return text

    # -- send ------------------------------------------------------------------------------
    # -- remembered choices (the window's QSettings, GUI thread) ------------------------------
    def restore_settings(self, settings: QSettings) -> None:
        """The node sent to when the window last closed, and the column widths."""
        name = settings.value("send/node")
        if name:
            self.node_picker.select(str(name))
        restore_view_state(settings, "send_columns", self.table.horizontalHeader())

    def save_settings(self, settings: QSettings) -> None:
        settings.setValue("send/node", self.node_picker.currentData() or "")
        save_view_state(settings, "send_columns", self.table.horizontalHeader())

    def send(self) -> OperationWorker | None:
        return self._start_send((SendState.QUEUED,))

    def retry_failed(self) -> OperationWorker | None:
        return self._start_send((SendState.FAILED,))

    def _start_send(self, states: tuple[SendState, ...]) -> OperationWorker | None:
        if self._send is not None:
            return self._send
        node = self.node_picker.node()
        if node is None:
            self.summary.show_message("Choose a node to send to (add one in Nodes).", "error")
            return None
        paths = self.model.paths(states)
        if not paths:
            self.summary.show_message("Nothing to send: no queued DICOM file.", "error")
            return None
        for path in paths:
            self.model.set_state(path, SendState.QUEUED)
        target = calls.target_from_node(node, self.ctx.local_aet())
        call = calls.send_call(target, self.model.file_infos(paths), self.transform())
        self._send_paths = paths
        self._send_started = time.monotonic()
        self._send_bytes_done = 0
        self.progress.setRange(0, len(paths))
        self.progress.setValue(0)
        self.summary.show_message(f"Sending {len(paths)} file(s) to {node.name}…")
        self._send = self.ctx.tracker.run(
            call, label=f"send {len(paths)} file(s) to {node.name}", transfer=True,
            progress=self._on_progress, rows=self._on_file_outcomes,
            finished=self._on_send_finished, failed=self._on_send_failed,
            done=self._on_send_done)
        self._update_buttons()
        return self._send

    # -- changes to what is sent -----------------------------------------------------------
    def transform(self) -> Any:
        """The ``Transform`` for the next send (None: files go as they are, lossless ones
        decompressed if the node refuses their syntax)."""
        if not (self.deidentify_check.isChecked() or self._edits or self._file_edits):
            return None
        from dicomdesk.transform.deidentify import Profile
        from dicomdesk.transform.spec import Transform

        return Transform(deidentify=Profile() if self.deidentify_check.isChecked() else None,
                         edits=self._edits, file_edits=dict(self._file_edits))

    def command_options(self) -> list[str]:
        """The CLI options of "De-identify" and the edits for every file (edits of selected
        files only have no one-line equivalent and are left out)."""
        options = ["--deidentify", "basic"] if self.deidentify_check.isChecked() else []
        for edit in self._edits:
            options += ["--set", str(edit)]
        return options

    def selected_paths(self) -> list[str]:
        rows = self.model.rows()
        selected = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return [rows[i.row()].path for i in selected if 0 <= i.row() < len(rows)]

    def edit_tags(self) -> Any:
        """Open "Edit tags…" for the selected files (or all); returns the dialog (non-blocking)."""
        from dicomdesk.ui.edit_tags import EditTagsDialog

        paths = self.selected_paths()
        scope = f"the {len(paths)} selected file(s)" if paths else "every file sent"
        existing = self._file_edits.get(paths[0], ()) if paths else self._edits
        dialog = EditTagsDialog(scope, existing, self)
        dialog.accepted.connect(lambda: self.set_edits(dialog.edits, paths))
        self.edit_dialog = dialog
        dialog.open()
        return dialog

    def set_edits(self, edits: tuple[Any, ...], paths: list[str] | None = None) -> None:
        """Edits for ``paths`` (or for every file when empty), applied at the next send."""
        if paths:
            for path in paths:
                if edits:
                    self._file_edits[path] = tuple(edits)
                else:
                    self._file_edits.pop(path, None)
        else:
            self._edits = tuple(edits)
        count = len(self._edits) + sum(len(e) for e in self._file_edits.values())
        self.edits_label.setText(f"{count} tag edit(s)" if count else "")

    def cancel(self) -> None:
        if self._send is not None:
            self._send.cancel()
            self.summary.show_message("Cancelling…")
        for scan in self._scans:
            scan.cancel()

    def _on_progress(self, p: Any) -> None:
        """Coalesced SendProgress: the current file, files done, and the overall byte rate."""
        if getattr(p, "state", "") == SendState.SENDING:
            path = str(getattr(p, "path", ""))
            if self.model.state_of(path) == SendState.QUEUED:
                self.model.set_state(path, SendState.SENDING)
        self._show_files_done()
        self._send_bytes_done = int(getattr(p, "bytes_done", 0) or 0)
        elapsed = time.monotonic() - self._send_started
        if elapsed > 0.2 and self._send_bytes_done:
            self.rate_label.setText(f"{human_size(self._send_bytes_done / elapsed)}/s")

    def _show_files_done(self) -> None:
        done = sum(1 for path in self._send_paths
                   if (state := self.model.state_of(path)) and state.finished)
        self.progress.setRange(0, max(len(self._send_paths), 1))
        self.progress.setValue(done)

    def _apply_outcome(self, path: str, state: str, message: str) -> None:
        if state == SendState.SKIPPED and message == "cancelled":
            state = SendState.QUEUED  # not sent because of Cancel: Send picks it up again
        self.model.set_state(path, state, message)

    def _on_file_outcomes(self, outcomes: list[Any]) -> None:
        for p in outcomes:
            message = str(getattr(p, "message", "") or "")
            status = getattr(p, "status", None)
            if not message and status is not None and getattr(p, "state", "") != SendState.STORED:
                message = str(status)
            self._apply_outcome(str(getattr(p, "path", "")), getattr(p, "state", ""), message)
        self._show_files_done()

    def _on_send_finished(self, result: Any) -> None:
        for outcome in getattr(result, "outcomes", ()) or ():
            state = getattr(outcome, "state", "")
            if state:
                self._apply_outcome(str(getattr(outcome, "path", "")), state,
                                    str(getattr(outcome, "message", "") or ""))
        self._show_files_done()
        stored = getattr(result, "stored", 0)
        failed = getattr(result, "failed", 0)
        # the queue's skipped rows are the truth: Send is handed the queued files only
        rows = self.model.rows()
        skipped = sum(1 for r in rows if r.state is SendState.SKIPPED)
        text = f"Stored {stored}, failed {failed}, skipped {skipped}"
        named = [r for r in rows if not r.is_dicom and _is_part10(r)]
        text += (f" ({skipped - len(named)} not DICOM{self._skipped_sentence(named)})"
                 if named else " (not DICOM)" if skipped else "") + "."
        decompressed = len(getattr(result, "decompressed", ()) or ())
        if decompressed:
            text += f" {decompressed} sent decompressed (the node refused their compression)."
        error = getattr(result, "error", None)
        if getattr(result, "cancelled", False):
            text = f"Cancelled. {text}"
        if error:
            text = f"{error} ({text})"
        self.summary.show_message(text, "error" if (error or failed) else "ok")
        self.send_finished.emit(result)

    def _on_send_failed(self, sentence: str) -> None:
        for path in self._send_paths:
            row = next((r for r in self.model.rows() if r.path == path), None)
            if row is not None and row.state in (SendState.QUEUED, SendState.SENDING):
                self.model.set_state(path, SendState.FAILED, sentence)
        self.summary.show_message(sentence, "error")
        self.send_finished.emit(None)

    def _on_send_done(self) -> None:
        for path in self._send_paths:  # cancelled files go back to the queue
            row = next((r for r in self.model.rows() if r.path == path), None)
            if row is not None and row.state is SendState.SENDING:
                self.model.set_state(path, SendState.QUEUED, "cancelled")
        self._send = None
        elapsed = time.monotonic() - self._send_started
        if elapsed > 0 and self._send_bytes_done:
            self.rate_label.setText(f"{human_size(self._send_bytes_done / elapsed)}/s average")
        self._update_buttons()

    def request_commitment(self) -> list[str]:
        """Hand the stored files (and the node they went to) to the Commitment panel."""
        paths = [r.path for r in self.model.rows() if r.state is SendState.STORED]
        if paths:
            self.commit_requested.emit(paths, self.node_picker.currentData() or "")
        return paths

    def _update_buttons(self) -> None:
        sending = self._send is not None
        self.commit_button.setEnabled(not sending and self.model.count(SendState.STORED) > 0)
        self.send_button.setEnabled(not sending)
        self.retry_button.setEnabled(not sending)
        self.cancel_button.setEnabled(sending or bool(self._scans))
        self.clear_button.setEnabled(not sending)

    def copy_command(self) -> str:
        node = self.node_picker.node()
        if node is None or not self._roots:
            return ""
        text = commands.send_command(node.host, node.port, self._roots, self.ctx.local_aet(),
                                     node.aet, self.command_options())
        copy_to_clipboard(text, self)
        return text

    def diagnose(self) -> Any:
        """Association doctor for the selected files, else the failed ones, else the queue."""
        from dicomdesk.ui.doctor import open_doctor

        node = self.node_picker.node()
        if node is None:
            self.summary.show_message("Choose a node to diagnose (add one in Nodes).", "error")
            return None
        rows = self.model.rows()
        selected = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        paths = [rows[i.row()].path for i in selected if 0 <= i.row() < len(rows)]
        paths = (paths or self.model.paths((SendState.FAILED,))
                 or self.model.paths((SendState.QUEUED,)))
        target = calls.target_from_node(node, self.ctx.local_aet())
        self.doctor = open_doctor(self.ctx.tracker, target, self.model.file_infos(paths) or None, self)
        return self.doctor

    @property
    def is_busy(self) -> bool:
        return self._send is not None or bool(self._scans)

    def queued_paths(self) -> list[Path]:
        return [Path(p) for p in self.model.paths((SendState.QUEUED,))]
