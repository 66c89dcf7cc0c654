"""Worklist panel: "what is scheduled for this station?" (Modality Worklist C-FIND, PS3.4 K.6).

The form asks the usual keys (station AE title, modality, scheduled date, patient); the window
calls ``operations.worklist`` as ``dicomdesk worklist`` does, which puts the Scheduled Procedure
Step keys inside their sequence (Table K.6-1). Matches stream into a table as they arrive.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSettings, Qt, \
    Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui import calls, commands, query_keys
from dicomdesk.ui.context import UiContext
from dicomdesk.ui.widgets import NodePicker, StatusLabel, copy_to_clipboard, restore_view_state, \
    save_view_state
from dicomdesk.ui.workers import OperationWorker

__all__ = ["WorklistItem", "WorklistModel", "WorklistPanel", "worklist_item"]

_log = logging.getLogger(__name__)

MODALITIES = ("", "CT", "MR", "US", "CR", "DX", "MG", "NM", "PT", "XA", "RF", "OT")

#: (heading, WorklistItem field)
COLUMNS = (
    ("Date", "date"), ("Time", "time"), ("Modality", "modality"), ("Station", "station"),
    ("Patient", "patient"), ("Patient ID", "patient_id"), ("Accession", "accession"),
    ("Procedure", "procedure"), ("Step ID", "step_id"),
)


@dataclass(frozen=True)
class WorklistItem:
    """One scheduled procedure step, as plain strings (made on the worker thread)."""

    date: str = ""
    time: str = ""
    modality: str = ""
    station: str = ""
    patient: str = ""
    patient_id: str = ""
    accession: str = ""
    procedure: str = ""
    step_id: str = ""
    study_uid: str = ""


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _time(text: str) -> str:
    return f"{text[:2]}:{text[2:4]}" if len(text) >= 4 and text[:4].isdigit() else text


def worklist_item(ds: Any) -> WorklistItem:
    """A worklist match (a pydicom Dataset) as a row: the first Scheduled Procedure Step item
    holds the station, modality and date (PS3.4 Table K.6-1)."""
    steps = ds.get("ScheduledProcedureStepSequence") or []
    step = steps[0] if len(steps) else {}
    get = step.get if hasattr(step, "get") else (lambda _k, _d=None: None)
    return WorklistItem(
        date=_date(_text(get("ScheduledProcedureStepStartDate"))),
        time=_time(_text(get("ScheduledProcedureStepStartTime"))),
        modality=_text(get("Modality")),
        station=_text(get("ScheduledStationAETitle")),
        patient=_text(ds.get("PatientName")).replace("^", " ").strip(),
        patient_id=_text(ds.get("PatientID")),
        accession=_text(ds.get("AccessionNumber")),
        procedure=_text(get("ScheduledProcedureStepDescription"))
        or _text(ds.get("RequestedProcedureDescription")),
        step_id=_text(get("ScheduledProcedureStepID")),
        study_uid=_text(ds.get("StudyInstanceUID")),
    )


class WorklistModel(QAbstractTableModel):
    """The matches, appended in batches; sorted by date and time when the query ends."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._items: list[WorklistItem] = []

    def add(self, items: list[WorklistItem]) -> None:
        if not items:
            return
        first = len(self._items)
        self.beginInsertRows(QModelIndex(), first, first + len(items) - 1)
        self._items.extend(items)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self._items.clear()
        self.endResetModel()

    def items(self) -> list[WorklistItem]:
        return list(self._items)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._items)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or role not in (Qt.ItemDataRole.DisplayRole,
                                               Qt.ItemDataRole.ToolTipRole):
            return None
        return getattr(self._items[index.row()], COLUMNS[index.column()][1])

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(COLUMNS):
            return
        field = COLUMNS[column][1]
        self.layoutAboutToBeChanged.emit()
        self._items.sort(key=lambda i: (getattr(i, field), i.date, i.time),
                         reverse=order == Qt.SortOrder.DescendingOrder)
        self.layoutChanged.emit()


class WorklistPanel(QWidget):
    """Form on top, matches below, Search / Cancel / Copy as command."""

    #: the query ended (the operations FindResult, or None when the worker failed)
    search_finished = Signal(object)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._search: OperationWorker | None = None

        self.node_picker = NodePicker(ctx.book, self)
        self.station_edit = QLineEdit(self)
        self.station_edit.setPlaceholderText("our AE title by default — empty: every station")
        self.station_edit.setText(ctx.local_aet())
        self.modality_combo = QComboBox(self)
        self.modality_combo.setEditable(True)
        self.modality_combo.addItems(MODALITIES)
        self.date_combo = QComboBox(self)
        self.date_combo.addItems(query_keys.WORKLIST_DATE_PRESETS)
        self.patient_name_edit = QLineEdit(self)
        self.patient_name_edit.setPlaceholderText("DOE* (wild cards * and ?)")
        self.patient_id_edit = QLineEdit(self)
        self.search_button = QPushButton("Search", self)
        self.search_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.copy_button = QPushButton("Copy as command", self)
        self.search_button.clicked.connect(self.search)
        self.cancel_button.clicked.connect(self.cancel)
        self.copy_button.clicked.connect(self.copy_command)
        for edit in (self.station_edit, self.patient_name_edit, self.patient_id_edit):
            edit.returnPressed.connect(self.search)

        grid = QGridLayout()
        grid.addWidget(QLabel("Worklist node", self), 0, 0)
        grid.addWidget(self.node_picker, 0, 1, 1, 3)
        grid.addWidget(QLabel("Station AE title", self), 1, 0)
        grid.addWidget(self.station_edit, 1, 1)
        grid.addWidget(QLabel("Modality", self), 1, 2)
        grid.addWidget(self.modality_combo, 1, 3)
        grid.addWidget(QLabel("Scheduled", self), 2, 0)
        grid.addWidget(self.date_combo, 2, 1)
        grid.addWidget(QLabel("Patient name", self), 3, 0)
        grid.addWidget(self.patient_name_edit, 3, 1)
        grid.addWidget(QLabel("Patient ID", self), 3, 2)
        grid.addWidget(self.patient_id_edit, 3, 3)
        buttons = QHBoxLayout()
        for button in (self.search_button, self.cancel_button, self.copy_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.model = WorklistModel(self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.outcome = StatusLabel(self)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Modality worklist</b> — what is scheduled (C-FIND, PS3.4 K.6)",
                                self))
        layout.addLayout(grid)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.outcome)
        self._update_buttons()

    # -- form ------------------------------------------------------------------------------
    def keys(self, today: _dt.date | None = None) -> dict[str, str]:
        """The matching keys as ``dicomdesk worklist -k`` takes them (empty ones left out:
        ``operations.worklist`` asks for the usual return keys itself)."""
        today = today or _dt.date.today()
        keys = {
            "ScheduledStationAETitle": self.station_edit.text().strip(),
            "Modality": self.modality_combo.currentText().strip().upper(),
            "ScheduledProcedureStepStartDate": query_keys.date_range(
                self.date_combo.currentText(), today),
            "PatientName": self.patient_name_edit.text().strip(),
            "PatientID": self.patient_id_edit.text().strip(),
        }
        return {k: v for k, v in keys.items() if v}

    # -- search ----------------------------------------------------------------------------
    def search(self) -> OperationWorker | None:
        node = self.node_picker.node()
        if node is None:
            self.outcome.show_message("Choose the worklist node (add one in Nodes).", "error")
            return None
        if self._search is not None:
            return self._search
        target = calls.target_from_node(node, self.ctx.local_aet())
        self.model.clear()
        self.outcome.show_message(f"Asking {node.name} for its worklist…")
        self._search = self.ctx.tracker.run(
            calls.worklist_call(target, self.keys(), worklist_item), label=f"worklist {node.name}",
            rows=self.model.add, finished=self._on_finished, failed=self._on_failed,
            done=self._on_done)
        self._update_buttons()
        return self._search

    def cancel(self) -> None:
        if self._search is not None:
            self._search.cancel()

    def _on_finished(self, result: Any) -> None:
        count = self.model.rowCount()
        self.model.sort(0)
        error = getattr(result, "error", None)
        noun = f"{count} scheduled step{'' if count == 1 else 's'}"
        if error == "cancelled":
            self.outcome.show_message(f"Cancelled: {noun} received.", "info")
        elif error:
            self.outcome.show_message(f"{error} ({noun} received)", "error")
        else:
            self.outcome.show_message(f"{noun[0].upper()}{noun[1:]}.", "ok")
        self.table.resizeColumnsToContents()
        self.search_finished.emit(result)

    def _on_failed(self, sentence: str) -> None:
        self.outcome.show_message(sentence, "error")
        self.search_finished.emit(None)

    def _on_done(self) -> None:
        self._search = None
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.search_button.setEnabled(self._search is None)
        self.cancel_button.setEnabled(self._search is not None)

    # -- remembered choices (the window's QSettings, GUI thread) ------------------------------
    def restore_settings(self, settings: QSettings) -> None:
        restore_view_state(settings, "worklist_columns", self.table.horizontalHeader())

    def save_settings(self, settings: QSettings) -> None:
        save_view_state(settings, "worklist_columns", self.table.horizontalHeader())

    def copy_command(self) -> str:
        node = self.node_picker.node()
        if node is None:
            return ""
        text = commands.worklist_command(node.host, node.port, self.keys(), self.ctx.local_aet(),
                                         node.aet)
        copy_to_clipboard(text, self)
        return text
