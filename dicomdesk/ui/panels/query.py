"""Query panel: C-FIND search (PS3.4 C.4.1) and retrieve by C-MOVE (C.4.2) or C-GET (C.4.3).

The search asks the STUDY level; expanding a study asks its series, expanding a series its images
(hierarchical search, C.4.1.3.1.1). Matches appear as they arrive (one Pending response each).
Retrieve shows the pending counts as a progress bar (Number of Remaining/Completed/Failed/Warning
Sub-operations, C.4.2.1.6) and ends with the final counts; status A801 becomes a sentence saying
the peer does not know our AE title as a move destination.
"""

from __future__ import annotations

import collections
import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui import calls, commands, errors, query_keys
from dicomdesk.ui.context import UiContext
from dicomdesk.ui.models.results import Match, QueryResultsModel, match_from_dataset
from dicomdesk.ui.panels.query_form import SearchFormBox
from dicomdesk.ui.widgets import NodePicker, StatusLabel, copy_to_clipboard, restore_view_state, \
    save_view_state
from dicomdesk.ui.workers import OperationWorker, no_gc_pause

__all__ = ["QueryPanel"]

_log = logging.getLogger(__name__)

#: Study rows inserted per model call while matches stream in (one rowsInserted each).
STUDY_SLICE = 50
#: GUI-thread budget of one insertion pass: chunks of STUDY_SLICE rows go in until it is spent,
#: then the event loop runs (the issue's 50 ms budget holds with room for a layout and a paint).
SLICE_BUDGET_S = 0.012
#: Pause between two insertion passes while more rows wait: the view lays out every top-level
#: row after each pass (QTreeView::doItemsLayout, O(rows)), so passes are spaced to keep the
#: number of relayouts down, while each one stays short.
SLICE_PERIOD_MS = 60

#: up to this many studies the first column is fitted to its content after a search
FIT_FIRST_COLUMN_ROWS = 2000

def _study_row(ds: Any) -> Match:
    return match_from_dataset(ds, "STUDY")


def _series_row(ds: Any) -> Match:
    return match_from_dataset(ds, "SERIES")


def _image_row(ds: Any) -> Match:
    return match_from_dataset(ds, "IMAGE")


class QueryPanel(QWidget):
    """Search form, results tree, retrieve controls."""

    #: the ``FindResult`` of a STUDY-level search once every row is in (None when it raised)
    search_finished = Signal(object)
    #: the sentence the outcome line shows after a retrieve
    retrieve_finished = Signal(str)
    #: the Study Instance UIDs a local-archive check found (after a search or a retrieve)
    local_checked = Signal(object)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._search: OperationWorker | None = None
        self._pending_studies: collections.deque[Match] = collections.deque()
        self._slice_scheduled = False
        #: (result,) of a search that ended while rows were still queued for insertion
        self._result_waiting: tuple[Any] | None = None
        self._children: dict[tuple[str, ...], OperationWorker] = {}
        self._retrieve: OperationWorker | None = None
        self._retrieve_dest = ""
        self._retrieve_method = ""
        self._retrieve_node = ""
        self._retrieve_studies: list[str] = []
        self._retrieve_levels: list[str] = []
        #: the last retrieve's ``calls.RetrieveRun`` (results per item, imported objects)
        self.last_retrieve_run: Any = None

        self.search_form = SearchFormBox(ctx.book, self)
        self.search_form.search_requested.connect(self.search)
        self.search_form.cancel_requested.connect(self.cancel_search)
        # the form's fields under the panel's names too (node_picker, patient_name_edit, ...)
        for name in SearchFormBox.FIELDS:
            setattr(self, name, getattr(self.search_form, name))

        self.model = QueryResultsModel(self)
        self.model.children_requested.connect(self._fetch_children)
        # the model sorts itself (see models/results.py: a proxy would call back into Python
        # for every comparison); ``proxy`` is the tree's model, kept under its old name
        self.proxy = self.model
        self.tree = QTreeView(self)
        self.tree.setModel(self.model)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(2, Qt.SortOrder.DescendingOrder)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.count_label = QLabel("", self)

        self.method_combo = QComboBox(self)
        self.method_combo.addItem("C-MOVE to the local server", "move")
        self.method_combo.addItem("C-GET", "get")
        self.method_combo.addItem("C-MOVE to another node", "move_to")
        # the Move Destination of a C-MOVE to a third node (PS3.4 C.4.2.1.2), as `--dest`
        self.dest_picker = NodePicker(ctx.book, self)
        self.dest_picker.setToolTip("The node the peer sends the images to (its AE title is "
                                    "the Move Destination; the peer must know it)")
        self.dest_label = QLabel("to", self)
        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        self.retrieve_button = QPushButton("Retrieve", self)
        self.cancel_retrieve_button = QPushButton("Cancel", self)
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_retrieve_button.clicked.connect(self.cancel_retrieve)
        self.copy_button = QToolButton(self)
        self.copy_button.setText("Copy as command")
        self.copy_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.copy_button)
        menu.addAction("Search", self.copy_find_command)
        menu.addAction("Retrieve selection", self.copy_retrieve_command)
        self.copy_button.setMenu(menu)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.outcome = StatusLabel(self)

        retrieve_row = QHBoxLayout()
        retrieve_row.addWidget(self.count_label, 1)
        retrieve_row.addWidget(self.method_combo)
        retrieve_row.addWidget(self.dest_label)
        retrieve_row.addWidget(self.dest_picker)
        retrieve_row.addWidget(self.retrieve_button)
        retrieve_row.addWidget(self.cancel_retrieve_button)
        retrieve_row.addWidget(self.copy_button)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Query / Retrieve</b>", self))
        layout.addWidget(self.search_form)
        layout.addWidget(self.tree, 1)
        layout.addLayout(retrieve_row)
        layout.addWidget(self.progress)
        layout.addWidget(self.outcome)
        self.node_picker.node_changed.connect(self._on_node_changed)
        # objects reaching the local archive (C-MOVE to our server, imported C-GETs) mark
        # their studies as present locally at once
        ctx.server.stored.connect(self._on_stored)
        self._stored_studies: set[str] = set()
        self._stored_timer = QTimer(self)
        self._stored_timer.setSingleShot(True)
        self._stored_timer.setInterval(300)
        self._stored_timer.timeout.connect(self._check_stored_studies)
        self._local_check: OperationWorker | None = None
        self._on_method_changed()
        self._update_buttons()

    # -- form ------------------------------------------------------------------------------
    def _on_method_changed(self, *_: Any) -> None:
        third = self.method_combo.currentData() == "move_to"
        self.dest_picker.setVisible(third)
        self.dest_label.setVisible(third)

    def move_destination(self) -> str:
        """The Move Destination AE title: the local server's, or the chosen third node's."""
        if self.method_combo.currentData() == "move_to":
            node = self.dest_picker.node()
            return node.aet if node is not None else ""
        return self.ctx.local_aet()

    def reset_progress(self) -> None:
        """An empty bar: the last retrieve's value belongs to that retrieve, not to a new search
        or another node (a running retrieve keeps its bar)."""
        if self._retrieve is None:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def _on_node_changed(self, _name: str) -> None:
        self.reset_progress()
        node = self.node_picker.node()
        if node is not None:
            self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(node.retrieve)))

    def form(self) -> query_keys.SearchForm:
        return self.search_form.form()

    def set_form(self, form: query_keys.SearchForm) -> None:
        self.search_form.set_form(form)

    def information_model(self) -> str:
        return self.search_form.information_model()

    def study_keys(self) -> dict[str, str]:
        return self.search_form.study_keys()

    # -- remembered choices (the window's QSettings, GUI thread) ------------------------------
    def restore_settings(self, settings: QSettings) -> None:
        """Node, search fields, information model, retrieve method and column widths."""
        self.search_form.restore(settings)
        method = settings.value("query/method")
        if method:
            combo = self.method_combo
            combo.setCurrentIndex(max(0, combo.findData(str(method))))
        restore_view_state(settings, "query_columns", self.tree.header())

    def save_settings(self, settings: QSettings) -> None:
        self.search_form.save(settings)
        settings.setValue("query/method", self.method_combo.currentData())
        save_view_state(settings, "query_columns", self.tree.header())

    # -- search ----------------------------------------------------------------------------
    def _target(self) -> calls.Target | None:
        node = self.node_picker.node()
        if node is None:
            self.outcome.show_message("Choose a node to search (add one in Nodes).", "error")
            return None
        return calls.target_from_node(node, self.ctx.local_aet())

    def search(self) -> OperationWorker | None:
        """Start a STUDY-level C-FIND; matches are appended in batches as they arrive."""
        target = self._target()
        if target is None:
            return None
        self.cancel_search()
        for worker in self._children.values():
            worker.cancel()
        self._children.clear()
        self.model.clear()
        self._pending_studies.clear()
        self._result_waiting = None
        self.reset_progress()
        self.count_label.setText("Searching…")
        self.outcome.show_message("")
        self._search = self.ctx.tracker.run(
            calls.find_call(target, "STUDY", self.study_keys(), self.information_model(),
                            _study_row),
            label=f"search {target.name}", rows=self._on_studies,
            finished=self._on_search_finished, failed=self._on_search_failed,
            done=self._on_search_done)
        self._update_buttons()
        return self._search

    def cancel_search(self) -> None:
        if self._search is not None:
            self._search.cancel()

    def _on_studies(self, matches: list[Match]) -> None:
        # Rows go in by passes bounded in time (SLICE_BUDGET_S), so a burst of thousands of
        # matches never holds the loop for long (the 50 ms budget of the issue).
        self._pending_studies.extend(matches)
        if not self._slice_scheduled:
            self._slice_scheduled = True
            QTimer.singleShot(0, self._insert_slice)

    def _insert_slice(self) -> None:
        self._slice_scheduled = False
        pending = self._pending_studies
        if pending:
            deadline = time.perf_counter() + SLICE_BUDGET_S
            with self.ctx.tracker.gui_work(), no_gc_pause():
                while pending and time.perf_counter() < deadline:
                    batch = [pending.popleft() for _ in range(min(STUDY_SLICE, len(pending)))]
                    self.model.add_studies(batch, sort=False)
            self.count_label.setText(f"{self.model.study_count()} studies so far…")
        if pending:
            self._slice_scheduled = True
            QTimer.singleShot(SLICE_PERIOD_MS, self._insert_slice)
        elif self._result_waiting is not None:
            result, = self._result_waiting
            self._result_waiting = None
            self._complete_search(result)

    def _on_search_finished(self, result: Any) -> None:
        # rows still queued go in by the same bounded passes (inserting them all at once here
        # was one long stall); the search completes when the last pass has run
        if self._pending_studies:
            self._result_waiting = (result,)
            return
        self._complete_search(result)

    def _complete_search(self, result: Any) -> None:
        """Every row is in: sort once, say how the search ended, check the local archive."""
        self.model.resort()
        if 0 < self.model.study_count() <= FIT_FIRST_COLUMN_ROWS:
            self.tree.resizeColumnToContents(0)  # names readable (reads every row: bounded)
        error = getattr(result, "error", None)
        status = getattr(result, "status", None)
        if error:
            self._search_ended(error, "error")
        elif status is not None and int(status) == 0xFE00:
            self._search_ended("Search cancelled.", "info")
        elif status is not None and int(status) != 0:
            self._search_ended(errors.status_sentence(status), "error")
        else:
            self._search_ended("", "info")
        self.check_local(self.model.study_uids())
        self.search_finished.emit(result)

    def _on_search_failed(self, sentence: str) -> None:
        self._search_ended(sentence, "error")
        self.search_finished.emit(None)

    def _search_ended(self, message: str, kind: str) -> None:
        count = self.model.study_count()
        self.count_label.setText(f"{count} stud{'y' if count == 1 else 'ies'}")
        if message:
            self.outcome.show_message(message, kind)

    # -- present locally -------------------------------------------------------------------
    def check_local(self, study_uids: list[str]) -> OperationWorker | None:
        """Ask the local archive (in a worker) which of these studies it holds; mark them."""
        storage = self.ctx.storage_dir()
        if not study_uids or not storage:
            return None
        self._local_check = self.ctx.tracker.run(
            calls.local_studies_call(storage, study_uids), label="check the local archive",
            finished=self._on_local_studies, done=lambda: setattr(self, "_local_check", None))
        return self._local_check

    def _on_local_studies(self, uids: Any) -> None:
        self.model.mark_local(uids or ())
        self.local_checked.emit(frozenset(uids or ()))

    def _on_stored(self, objects: list[Any]) -> None:
        """Objects reached the local archive: count their studies again (coalesced), so a
        study shows as complete or partial by what the archive holds, not by one arrival.
        A running retrieve checks its studies when it ends."""
        uids = {str(getattr(o, "study_uid", "")) for o in objects
                if getattr(o, "error", None) is None} & set(self.model.study_uids())
        if not uids or self._retrieve is not None:
            return
        self._stored_studies |= uids
        if not self._stored_timer.isActive():
            self._stored_timer.start()

    def _check_stored_studies(self) -> None:
        uids, self._stored_studies = sorted(self._stored_studies), set()
        self.check_local(uids)

    def _on_search_done(self) -> None:
        self._search = None
        self._update_buttons()

    def _fetch_children(self, kind: str, key: tuple, match: Match) -> None:
        """Expanding a study/series runs the next level's C-FIND (hierarchical, C.4.1.3.1.1)."""
        target = self._target()
        if target is None:
            self.model.finish_children(key, "no node selected")
            return
        model = self.information_model()
        patient_id = match.get("PatientID") if model == "patient" else ""
        if kind == "study":
            level, keys, to_row = "SERIES", query_keys.series_keys(key[0], patient_id), _series_row
        else:
            level, keys, to_row = ("IMAGE", query_keys.image_keys(key[0], key[1], patient_id),
                                   _image_row)
        self._children[key] = self.ctx.tracker.run(
            calls.find_call(target, level, keys, model, to_row), label=f"search {level.lower()}s",
            rows=lambda rows: self.model.add_children(key, rows),
            finished=lambda result: self.model.finish_children(
                key, getattr(result, "error", None) or ""),
            failed=lambda s: self.model.finish_children(key, s),
            done=lambda: self._children.pop(key, None))

    # -- retrieve --------------------------------------------------------------------------
    def selected_items(self) -> list[calls.RetrieveItem]:
        """Selected rows as retrieve identifiers: the unique keys down to the row's level."""
        items = []
        rows = self.tree.selectionModel().selectedRows() if self.tree.selectionModel() else []
        for proxy_index in rows:
            index = proxy_index
            found = self.model.item_at(index)
            if found is None:
                continue
            kind, _match = found
            chain = self.model.ancestors(index)
            keys: list[tuple[str, str]] = []
            if self.information_model() == "patient":
                keys.append(("PatientID", chain[0].get("PatientID")))
            keys.append(("StudyInstanceUID", chain[0].get("StudyInstanceUID")))
            if len(chain) > 1:
                keys.append(("SeriesInstanceUID", chain[1].get("SeriesInstanceUID")))
            if len(chain) > 2:
                keys.append(("SOPInstanceUID", chain[2].get("SOPInstanceUID")))
            level = {"study": "STUDY", "series": "SERIES", "image": "IMAGE"}[kind]
            items.append(calls.RetrieveItem(level, tuple(keys)))
        return items

    def retrieve(self) -> OperationWorker | None:
        target = self._target()
        if target is None:
            return None
        items = self.selected_items()
        if not items:
            self.outcome.show_message("Select one or more studies, series or images first.",
                                      "error")
            return None
        method = self.method_combo.currentData()
        destination = self.move_destination()
        if method == "move_to" and not destination:
            self.outcome.show_message("Choose the node to send the images to.", "error")
            return None
        if method == "move" and not self.ctx.server.is_running:
            self.outcome.show_message(
                "Start the local server first: with C-MOVE the peer sends the images to it.",
                "error")
            return None
        self._retrieve_dest = destination
        self._retrieve_method = method
        self._retrieve_node = target.name
        self._retrieve_studies = [dict(item.keys).get("StudyInstanceUID", "") for item in items]
        self._retrieve_levels = [item.level for item in items]
        call = calls.retrieve_call(target, "move" if method == "move_to" else method, items,
                                   self.information_model(),
                                   destination_aet=destination, out_dir=self.get_dir(),
                                   archive_dir=self.ctx.storage_dir())
        self.progress.setRange(0, 0)  # busy until the first pending response gives counts
        self.outcome.show_message(f"Retrieving {len(items)} item(s) from {target.name}…")
        self._retrieve = self.ctx.tracker.run(
            call, label=f"retrieve from {target.name}", transfer=True,
            progress=self._on_retrieve_progress, finished=self._on_retrieve_finished,
            failed=self._on_retrieve_failed, done=self._on_retrieve_done)
        self._update_buttons()
        return self._retrieve

    def get_dir(self) -> str:
        """Where C-GET writes first: a sub-folder of the local storage; the worker then moves
        each file into the archive (indexed, like objects received by C-MOVE)."""
        return str(Path(self.ctx.storage_dir() or ".") / "retrieved")

    def cancel_retrieve(self) -> None:
        if self._retrieve is not None:
            self._retrieve.cancel()
            self.outcome.show_message("Cancelling (C-CANCEL)…")

    def _on_retrieve_progress(self, step: calls.RetrieveStep) -> None:
        p = step.progress
        remaining = getattr(p, "remaining", None)
        done = sum(int(getattr(p, name, 0) or 0) for name in ("completed", "failed", "warning"))
        if remaining is None:
            return
        total = done + int(remaining)
        if step.index < len(self._retrieve_levels) and self._retrieve_levels[step.index] == "STUDY":
            # the study's size, even when the C-FIND did not return its number of instances
            self.model.set_expected(self._retrieve_studies[step.index], total)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        prefix = f"Item {step.index + 1} of {step.total}: " if step.total > 1 else ""
        self.outcome.show_message(
            f"{prefix}{done} of {total} sub-operations done "
            f"({getattr(p, 'failed', 0)} failed, {getattr(p, 'warning', 0)} warning)…")

    def _on_retrieve_finished(self, run: Any) -> None:
        self.last_retrieve_run = run
        results = list(getattr(run, "results", run) or [])
        imported = list(getattr(run, "imported", ()) or ())
        import_failed = list(getattr(run, "import_failed", ()) or ())
        if imported:
            self.ctx.server.report_stored(imported)
        message, kind = errors.retrieve_summary(
            results, import_failed, self._retrieve_node, self._retrieve_dest,
            self.ctx.server.state.port, self._retrieve_method)
        if kind == "ok":  # every sub-operation done: the bar ends full
            self.progress.setRange(0, max(self.progress.maximum(), 1))
            self.progress.setValue(self.progress.maximum())
        elif self.progress.maximum() == 0:  # never got counts: leave the busy state
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        self.outcome.show_message(message.strip(), kind)
        self.check_local([uid for uid in self._retrieve_studies if uid])
        self.retrieve_finished.emit(message.strip())

    def _on_retrieve_failed(self, sentence: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.outcome.show_message(sentence, "error")
        self.retrieve_finished.emit(sentence)

    def _on_retrieve_done(self) -> None:
        self._retrieve = None
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.cancel_search_button.setEnabled(self._search is not None)
        self.retrieve_button.setEnabled(self._retrieve is None)
        self.cancel_retrieve_button.setEnabled(self._retrieve is not None)

    # -- copy as command -------------------------------------------------------------------
    def copy_find_command(self) -> str:
        node = self.node_picker.node()
        if node is None:
            return ""
        keys = {k: v for k, v in self.study_keys().items() if v}
        text = commands.find_command(node.host, node.port, "STUDY", keys, self.ctx.local_aet(),
                                     node.aet, model=self.information_model())
        copy_to_clipboard(text, self)
        return text

    def copy_retrieve_command(self) -> str:
        node = self.node_picker.node()
        items = self.selected_items()
        if node is None or not items:
            return ""
        lines = []
        for item in items:
            if self.method_combo.currentData() == "get":
                lines.append(commands.get_command(
                    node.host, node.port, item.level, item.key_dict(), self.get_dir(),
                    self.ctx.local_aet(), node.aet, model=self.information_model()))
            else:
                lines.append(commands.move_command(
                    node.host, node.port, self.move_destination(), item.level, item.key_dict(),
                    self.ctx.local_aet(), node.aet, model=self.information_model()))
        text = "\n".join(lines)
        copy_to_clipboard(text, self)
        return text

    def selected_index(self) -> QModelIndex:
        rows = self.tree.selectionModel().selectedRows()
        return rows[0] if rows else QModelIndex()
