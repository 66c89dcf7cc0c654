"""The archive browser: the local archive's patients, studies, series and instances, a search
box over the index, and Export/Delete of the selected studies.

The tree is ``ArchiveTreeModel``, a lazy model over the index: the window shows an archive of
any size at once and holds only the rows the user reached. The view asks for the next page
when the user opens a row (Qt's ``fetchMore`` on expand) or scrolls to the end of what is loaded
(``_fetch_visible``: Qt itself only does that for the top level). Typing in the search box asks
the index again after a short pause (``SEARCH_DELAY_MS``), never filters the model.

Export and Delete run in workers, on the running server's archive when it serves this folder
(so they serialise with its commits) or on one opened for the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QModelIndex, QPoint, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui.context import UiContext
from dicomdesk.ui.models.archive_tree import ArchiveTreeModel
from dicomdesk.ui.widgets import StatusLabel
from dicomdesk.ui.workers import OperationWorker, WorkerContext

__all__ = ["ArchiveBrowser"]

#: Pause after the last keystroke before the search goes to the index.
SEARCH_DELAY_MS = 250


class ArchiveBrowser(QWidget):
    """Search box, lazy tree, Refresh/Export/Delete and a status line."""

    #: absolute path of the instance the user selected (the panel previews it)
    instance_selected = Signal(str)
    #: a page, a search result or arrivals were inserted
    updated = Signal()
    #: (action, sentence) after Delete or Export ended
    action_done = Signal(str, str)

    def __init__(self, ctx: UiContext, storage_dir: Callable[[], Path],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.storage_dir = storage_dir
        self.shown_root = ""
        self._source: Any = None  # the running archive the model reads, if any

        self.model = ArchiveTreeModel(self)
        self.search_edit = QLineEdit(self)
        self.search_edit.setPlaceholderText(
            "Search: patient name or ID, accession number, study date (YYYY-MM-DD)")
        self.search_edit.setClearButtonEnabled(True)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self._search_now)
        self.search_edit.textChanged.connect(lambda _text: self._search_timer.start())
        self.search_edit.returnPressed.connect(self._search_now)

        self.view = QTreeView(self)
        self.view.setModel(self.model)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.view.setColumnWidth(0, 240)
        self.view.selectionModel().currentRowChanged.connect(self._on_current)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.view.verticalScrollBar().valueChanged.connect(lambda _v: self._fetch_visible())
        # PySide creates the Python type of the viewport's wrapper (and its enums) on first
        # use (docs/internals.md, timings): paid here, not in the event-loop pass that shows the first page
        self.view.viewport()

        self.refresh_button = QPushButton("Refresh", self)
        self.export_button = QPushButton("Export…", self)
        self.delete_button = QPushButton("Delete…", self)
        self.export_button.setToolTip("Copy the files of the selected studies to a folder")
        self.delete_button.setToolTip("Remove the selected studies from the archive (files and index)")
        self.refresh_button.clicked.connect(self.reload)
        self.export_button.clicked.connect(self._export_clicked)
        self.delete_button.clicked.connect(self._delete_clicked)
        self.deidentify_export = QCheckBox("De-identify", self)
        self.deidentify_export.setToolTip(
            "Export de-identified copies (PS3.15 Annex E Basic Profile); the mapping to the "
            "original identifiers is written beside them as deidentification-map.json")
        self.label = StatusLabel(self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search_edit)
        layout.addWidget(self.view, 1)
        buttons = QHBoxLayout()
        for button in (self.refresh_button, self.export_button, self.deidentify_export,
                       self.delete_button):
            buttons.addWidget(button)
        buttons.addWidget(self.label, 1)
        layout.addLayout(buttons)

        self.model.rows_loaded.connect(self._rows_loaded)
        self.model.totals_changed.connect(lambda _t: self._show_counts())
        self.model.failed.connect(lambda s: self.label.show_message(s, "error"))
        self.model.modelReset.connect(self._update_buttons)
        self._update_buttons()

    # -- source ------------------------------------------------------------------------------
    def _archive_for_root(self) -> Any:
        archive = self.ctx.server.running_archive()
        return archive if archive is not None and Path(archive.root) == self.storage_dir() else None

    def reload(self) -> None:
        """Show the storage folder's archive from its first page (in the reader thread)."""
        root = self.storage_dir()
        archive = self._archive_for_root()
        self._source = archive
        self.shown_root = str(root)
        self.model.open(root, _opener(root, archive), self.search_edit.text())

    def needs_reload(self) -> bool:
        """The folder changed, or the server now serves it (read through its archive)."""
        return str(self.storage_dir()) != self.shown_root or \
            self._archive_for_root() is not self._source

    def follow_source(self) -> None:
        """Read through the running server's archive once it serves the folder shown (or
        the folder's own index once it stopped), or show another folder from its first page.

        The same folder is the same index file, so the rows shown stay (with what the user
        opened) and only the reader's connection changes: an autostarted server becoming
        ready does not reset and reload the browser while the window is still loading. The
        counts are read again (the server's recovery may have indexed journaled objects)."""
        if str(self.storage_dir()) != self.shown_root:
            self.reload()
            return
        archive = self._archive_for_root()
        if archive is not self._source:
            self._source = archive
            self.model.set_source(_opener(self.storage_dir(), archive))

    def arrived(self, sop_instance_uids: list[str]) -> None:
        """Objects the server just stored: placed under the rows shown."""
        if self.needs_reload():
            self.follow_source()
        self.model.arrived(sop_instance_uids)

    def reveal(self, sop_instance_uid: str) -> None:
        """Show an instance (loading its patient, study and series) and select it."""
        self._reveal_pending = sop_instance_uid
        self.model.reveal(sop_instance_uid)

    def shutdown(self) -> None:
        self.model.close()

    # -- lazy loading ------------------------------------------------------------------------
    def _rows_loaded(self) -> None:
        pending = getattr(self, "_reveal_pending", None)
        if pending:
            index = self.model.find("instance", pending)
            if index.isValid():
                self._reveal_pending = None
                parent = index.parent()
                while parent.isValid():
                    self.view.expand(parent)
                    parent = parent.parent()
                self.view.setCurrentIndex(index)
                self.view.scrollTo(index)
        QTimer.singleShot(0, self._fetch_visible)  # after the view laid the rows out
        self.updated.emit()

    def _fetch_visible(self) -> None:
        """Read the next page of each open level whose last loaded row is in view (Qt reads
        only a level's first page, ``ArchiveTreeModel.canFetchMore``)."""
        viewport = self.view.viewport()
        if not viewport.isVisible() or viewport.height() < 2:
            return  # a hidden tab asks for nothing; showing it scrolls and asks again
        index = self.view.indexAt(QPoint(viewport.width() // 2, viewport.height() - 2))
        if not index.isValid():  # the rows end above the bottom: the last open chain
            parent = QModelIndex()
            while True:
                self.model.fetch_next(parent)
                rows = self.model.rowCount(parent)
                last = self.model.index(rows - 1, 0, parent) if rows else QModelIndex()
                if not last.isValid() or not self.view.isExpanded(last):
                    return
                parent = last
        index = index.siblingAtColumn(0)
        while index.isValid():
            parent = index.parent()
            if index.row() == self.model.rowCount(parent) - 1:
                self.model.fetch_next(parent)
            index = parent

    def _search_now(self) -> None:
        self._search_timer.stop()
        if self.search_edit.text().strip() != self.model.search:
            self.model.set_search(self.search_edit.text())

    def _show_counts(self) -> None:
        t = self.model.totals
        text = (f"{t.get('patient', 0)} patient(s), {t.get('study', 0)} study(ies), "
                f"{t.get('instance', 0)} instance(s)")
        if self.model.search:
            text += f" — showing patients matching “{self.model.search}”"
        self.label.show_message(text)

    # -- selection ---------------------------------------------------------------------------
    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._update_buttons()
        if current.isValid() and self.model.kind(current) == "instance":
            self.instance_selected.emit(self.model.path(current))

    def _selection(self) -> tuple[list[str], list[object]]:
        """(studies, patients not fully loaded) of the selected rows."""
        studies: list[str] = []
        patients: list[object] = []
        for index in self.view.selectionModel().selectedRows(0):
            ref = self.model.patient_ref(index)
            if ref is not None:
                patients.append(ref)
                continue
            for uid in self.model.studies_under(index):
                if uid not in studies:
                    studies.append(uid)
        return studies, patients

    def selected_studies(self) -> list[str]:
        """Study Instance UIDs of the selected rows that are loaded (a patient row: its
        loaded studies; Delete and Export also ask the index for the rest)."""
        return self._selection()[0]

    def _update_buttons(self) -> None:
        studies, patients = self._selection()
        has = bool(studies or patients)
        self.export_button.setEnabled(has)
        self.delete_button.setEnabled(has)

    # -- actions -----------------------------------------------------------------------------
    def confirm_delete(self, count: int) -> bool:
        """Ask before deleting (replaced in tests)."""
        answer = QMessageBox.question(
            self, "Delete studies",
            f"Delete {count} study(ies) from the local archive? Their files are removed "
            "from the storage folder; this cannot be undone.")
        return answer == QMessageBox.StandardButton.Yes

    def choose_export_folder(self) -> str:
        """Ask where to export (replaced in tests)."""
        return QFileDialog.getExistingDirectory(self, "Export studies to", str(Path.home()))

    def _delete_clicked(self) -> None:
        studies, patients = self._selection()
        if (studies or patients) and self.confirm_delete(len(studies) + len(patients)):
            self.delete_studies(studies, patients)

    def _export_clicked(self) -> None:
        studies, patients = self._selection()
        folder = self.choose_export_folder() if studies or patients else ""
        if folder:
            self.export_studies(studies, folder, patients)

    def delete_studies(self, studies: list[str], patients: list[object] = ()) -> OperationWorker:  # type: ignore[assignment]
        """Remove studies (and all studies of ``patients``) from the archive and the browser."""
        root, archive = self.storage_dir(), self._archive_for_root()
        owners = [*patients, *(self.model.patient_of_study(uid) for uid in studies)]

        def call(ctx: WorkerContext) -> tuple[list[str], int, list[object]]:
            def act(a: Any) -> tuple[list[str], int, list[object]]:
                uids = _with_patients(a, studies, patients)
                count = sum(a.delete_study(u) for u in uids)
                # whose last study went: the browser may not have read all of a patient's studies
                emptied = [ref for ref in owners
                           if ref is not None and not a.index.browse("study", ref, None, 1)]
                return uids, count, emptied
            return _with_archive(archive, root, act) or ([], 0, [])

        def finished(outcome: tuple[list[str], int, list[object]]) -> None:
            uids, count, emptied = outcome
            for uid in uids:
                self.model.remove_study(uid)
            self.model.remove_empty_patients(emptied)
            self._action_ended("delete", f"Deleted {len(uids)} study(ies), {count} instance(s).",
                               ok=True)

        return self._action("delete", call, finished)

    def export_studies(self, studies: list[str], folder: str | Path,
                       patients: list[object] = ()) -> OperationWorker:  # type: ignore[assignment]
        """Copy the selected studies' files to ``folder`` (the archive's own layout), or
        de-identified copies when "De-identify" is checked (one UID map for the export)."""
        root, archive, target = self.storage_dir(), self._archive_for_root(), Path(folder)
        deidentifier = None
        if self.deidentify_export.isChecked():
            from dicomdesk.transform.deidentify import Deidentifier, Profile

            deidentifier = Deidentifier(Profile())

        def call(ctx: WorkerContext) -> tuple[int, int]:
            target.mkdir(parents=True, exist_ok=True)

            def act(a: Any) -> tuple[int, int]:
                uids = _with_patients(a, studies, patients)
                return len(uids), sum(len(a.export_study(u, target, deidentifier)) for u in uids)
            outcome = _with_archive(archive, root, act) or (0, 0)
            if deidentifier is not None:
                deidentifier.write_mapping(target / "deidentification-map.json")
            return outcome

        def finished(outcome: tuple[int, int]) -> None:
            n, count = outcome
            how = " de-identified" if deidentifier is not None else ""
            self._action_ended(
                "export", f"Exported {count} file(s){how} of {n} study(ies) to {target}.", ok=True)

        return self._action("export", call, finished)

    def _action(self, action: str, call: Any, finished: Any) -> OperationWorker:
        worker = self.ctx.tracker.run(
            call, label=f"{action} studies", finished=finished,
            failed=lambda sentence: self._action_ended(action, sentence, ok=False))
        self.label.show_message(f"{action.capitalize()} in progress…")
        return worker

    def _action_ended(self, action: str, sentence: str, ok: bool) -> None:
        """Say how a delete or export ended (``ok``: it ran to the end) and tell the panel."""
        self.label.show_message(sentence, "ok" if ok else "error")
        self.action_done.emit(action, sentence)


def _opener(root: Path, archive: Any) -> Callable[[], tuple[Any, bool]]:
    """How the reader thread opens the index: the running archive's, or a read-only one of
    its own (None while the folder holds no archive: nothing is created by looking)."""
    if archive is not None:
        return lambda: (archive.index, False)

    def open_read_only() -> tuple[Any, bool]:
        from dicomdesk.archive import Index
        from dicomdesk.archive.store import INDEX_NAME

        path = root / INDEX_NAME
        if not path.exists():
            return None, False
        return Index(path, read_only=True), True

    return open_read_only


def _with_patients(archive: Any, studies: list[str], patients: list[object]) -> list[str]:
    """``studies`` plus every study of ``patients`` (index keys of patient rows)."""
    uids = list(studies)
    for ref in patients:
        for row in archive.index.browse("study", ref, None, 1 << 30):
            if row.uid not in uids:
                uids.append(row.uid)
    return uids


def _with_archive(archive: Any, root: Path, action: Any) -> Any:
    """Run ``action(archive)`` on the running server's archive, or on one opened for the call
    (worker thread). A folder without an index holds nothing to act on (None)."""
    if archive is not None:
        return action(archive)
    from dicomdesk.archive import Archive
    from dicomdesk.archive.store import INDEX_NAME

    if not (root / INDEX_NAME).exists():
        return None
    own = Archive(root)
    try:
        return action(own)
    finally:
        own.close()
