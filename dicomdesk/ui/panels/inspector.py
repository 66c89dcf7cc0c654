"""Protocol inspector: every association's trace, filterable, exportable (PS3.7 / PS3.8).

Shows what ``dicomdesk.net.trace`` records — association requests, accepts, rejects, releases
and aborts (PS3.8 7.1-7.3), DIMSE commands with their statuses (PS3.7 9.3, Annex C) and,
when the PDU level is on, every PDU with its length (PS3.8 9.3) — with the milliseconds since
the association's transport opened. Recording starts the first time the panel is shown (so a
window whose inspector was never opened pays nothing) and can be switched off. The PDU level
is off by default; patient data (the data sets of C-FIND identifiers, N-ACTION information...)
is shown only while "Show patient data" is checked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui.trace_model import TraceCapture, TraceFilter, TraceLogModel

__all__ = ["InspectorPanel"]

_log = logging.getLogger(__name__)

_LAYER_TITLES = (("association", "Association"), ("dimse", "DIMSE"), ("pdu", "PDU"))


class InspectorPanel(QWidget):
    """Trace table with association / layer filters, patient-data switch, Export and Clear."""

    def __init__(self, parent: QWidget | None = None, *, record_on_show: bool = True) -> None:
        super().__init__(parent)
        self._record_on_show = record_on_show
        self._shown_once = False
        self.capture = TraceCapture(self)
        self.model = TraceLogModel(self)
        self.capture.entries.connect(self.model.add_entries)

        self.record_box = QCheckBox("Record", self)
        self.record_box.setToolTip("Capture the protocol trace of every association")
        self.record_box.toggled.connect(self.capture.set_recording)
        self.capture.recording_changed.connect(self._on_recording_changed)
        self.association_combo = QComboBox(self)
        self.association_combo.addItem("All associations", None)
        self.association_combo.setMinimumContentsLength(28)
        self.association_combo.currentIndexChanged.connect(self._apply_filter)
        self.layer_boxes: dict[str, QCheckBox] = {}
        for layer, title in _LAYER_TITLES:
            box = QCheckBox(title, self)
            box.setChecked(layer != "pdu")
            box.toggled.connect(self._apply_filter)
            self.layer_boxes[layer] = box
        self.patient_data_box = QCheckBox("Show patient data", self)
        self.patient_data_box.setToolTip("Show the data sets (identifiers, attributes) of DIMSE messages")
        self.patient_data_box.toggled.connect(self._apply_filter)
        self.export_button = QPushButton("Export…", self)
        self.clear_button = QPushButton("Clear", self)
        self.export_button.clicked.connect(self.choose_export)
        self.clear_button.clicked.connect(self.model.clear)
        self.count_label = QLabel("", self)

        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        for column, width in enumerate((70, 260, 70, 85, 40)):
            header.resizeSection(column, width)

        filters = QHBoxLayout()
        filters.addWidget(self.record_box)
        filters.addWidget(self.association_combo, 1)
        for box in self.layer_boxes.values():
            filters.addWidget(box)
        filters.addWidget(self.patient_data_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.count_label, 1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Protocol inspector</b> — what each association said, PDU by PDU "
                                "and command by command", self))
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self.model.associations_changed.connect(self._refill_associations)
        self.model.rowsInserted.connect(self._update_count)
        self.model.modelReset.connect(self._update_count)
        self._update_count()

    # -- recording ------------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            if self._record_on_show:
                self.set_recording(True)

    def set_recording(self, on: bool) -> None:
        self.record_box.setChecked(on)
        self.capture.set_recording(on)

    @property
    def recording(self) -> bool:
        return self.capture.recording

    def _on_recording_changed(self, on: bool) -> None:
        if self.record_box.isChecked() != on:
            self.record_box.setChecked(on)

    def flush(self) -> None:
        """Move what was captured so far into the table now (tests; Export)."""
        self.capture.drain()

    # -- filter ---------------------------------------------------------------------------------
    def current_filter(self) -> TraceFilter:
        layers = frozenset(layer for layer, box in self.layer_boxes.items() if box.isChecked())
        return TraceFilter(self.association_combo.currentData(), layers,
                           self.patient_data_box.isChecked())

    def _apply_filter(self, *_: Any) -> None:
        self.model.set_filter(self.current_filter())

    def select_association(self, assoc_id: int | None) -> None:
        index = self.association_combo.findData(assoc_id)
        if index >= 0:
            self.association_combo.setCurrentIndex(index)

    def _refill_associations(self, labels: dict[int, str]) -> None:
        current = self.association_combo.currentData()
        self.association_combo.blockSignals(True)
        self.association_combo.clear()
        self.association_combo.addItem("All associations", None)
        for assoc_id in sorted(labels):
            self.association_combo.addItem(labels[assoc_id], assoc_id)
        index = self.association_combo.findData(current)
        self.association_combo.setCurrentIndex(max(index, 0))
        self.association_combo.blockSignals(False)
        if index < 0 and current is not None:
            self._apply_filter()

    def _update_count(self, *_: Any) -> None:
        self.count_label.setText(f"{self.model.rowCount()} line(s) shown")

    # -- export ---------------------------------------------------------------------------------
    def choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the trace", "dicomdesk-trace.txt",
                                              "Text files (*.txt);;All files (*)")
        if path:
            self.export(path)

    def export(self, path: str | Path) -> int:
        """Write the visible lines (as filtered) to ``path``; returns the number of lines."""
        self.flush()
        lines = self.model.visible_lines()
        Path(path).write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        return len(lines)
