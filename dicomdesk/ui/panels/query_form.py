"""The Query panel's search form: node, information model, the study-level matching keys and
the Search / Cancel buttons (PS3.4 C.4.1: what a STUDY-level C-FIND asks; ``query_keys.py`` turns
the typed values into an identifier).

It owns the form's remembered values (QSettings keys ``query/...``); it knows nothing of how a
search runs: the panel listens to ``search_requested`` and ``cancel_requested``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from PySide6.QtCore import QDate, QSettings, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDateEdit,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QWidget,
)

from dicomdesk.ui import query_keys
from dicomdesk.ui.widgets import NodePicker

__all__ = ["MODALITIES", "SearchFormBox"]

MODALITIES = ("", "CT", "MR", "US", "CR", "DX", "MG", "NM", "PT", "XA", "RF", "OT", "SC")


class SearchFormBox(QWidget):
    """The fields of a study search laid out in one grid."""

    #: Search clicked, or Return in a text field
    search_requested = Signal()
    #: Cancel clicked
    cancel_requested = Signal()

    #: the widgets of the form, by attribute name
    FIELDS = ("node_picker", "patient_name_edit", "patient_id_edit", "accession_edit",
              "description_edit", "modality_combo", "date_combo", "date_from", "date_to",
              "study_root", "patient_root", "search_button", "cancel_search_button")

    def __init__(self, book: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.node_picker = NodePicker(book, self)
        self.patient_name_edit = QLineEdit(self)
        self.patient_name_edit.setPlaceholderText("DOE* (wild cards * and ?)")
        self.patient_id_edit = QLineEdit(self)
        self.accession_edit = QLineEdit(self)
        self.description_edit = QLineEdit(self)
        self.modality_combo = QComboBox(self)
        self.modality_combo.setEditable(True)
        self.modality_combo.addItems(MODALITIES)
        self.date_combo = QComboBox(self)
        self.date_combo.addItems(query_keys.DATE_PRESETS)
        self.date_from = QDateEdit(QDate.currentDate().addDays(-30), self)
        self.date_to = QDateEdit(QDate.currentDate(), self)
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
        self.date_combo.currentTextChanged.connect(self._on_preset)
        self.study_root = QRadioButton("Study root", self)
        self.patient_root = QRadioButton("Patient root", self)
        self.study_root.setChecked(True)
        self._model_group = QButtonGroup(self)
        self._model_group.addButton(self.study_root)
        self._model_group.addButton(self.patient_root)
        self.search_button = QPushButton("Search", self)
        self.search_button.setDefault(True)
        self.cancel_search_button = QPushButton("Cancel", self)
        self.search_button.clicked.connect(self.search_requested)
        self.cancel_search_button.clicked.connect(self.cancel_requested)
        for edit in (self.patient_name_edit, self.patient_id_edit, self.accession_edit,
                     self.description_edit):
            edit.returnPressed.connect(self.search_requested)

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(QLabel("Node", self), 0, 0)
        grid.addWidget(self.node_picker, 0, 1, 1, 3)
        grid.addWidget(self.study_root, 0, 4)
        grid.addWidget(self.patient_root, 0, 5)
        grid.addWidget(QLabel("Patient name", self), 1, 0)
        grid.addWidget(self.patient_name_edit, 1, 1)
        grid.addWidget(QLabel("Patient ID", self), 1, 2)
        grid.addWidget(self.patient_id_edit, 1, 3)
        grid.addWidget(QLabel("Accession", self), 1, 4)
        grid.addWidget(self.accession_edit, 1, 5)
        grid.addWidget(QLabel("Study date", self), 2, 0)
        dates = QHBoxLayout()
        dates.addWidget(self.date_combo)
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to", self))
        dates.addWidget(self.date_to)
        grid.addLayout(dates, 2, 1, 1, 3)
        grid.addWidget(QLabel("Modality", self), 2, 4)
        grid.addWidget(self.modality_combo, 2, 5)
        grid.addWidget(QLabel("Description", self), 3, 0)
        grid.addWidget(self.description_edit, 3, 1, 1, 3)
        search_buttons = QHBoxLayout()
        search_buttons.addWidget(self.search_button)
        search_buttons.addWidget(self.cancel_search_button)
        grid.addLayout(search_buttons, 3, 4, 1, 2)
        self._on_preset(self.date_combo.currentText())

    def _on_preset(self, preset: str) -> None:
        for edit in (self.date_from, self.date_to):
            edit.setEnabled(preset == "Range")

    def form(self) -> query_keys.SearchForm:
        return query_keys.SearchForm(
            patient_name=self.patient_name_edit.text(),
            patient_id=self.patient_id_edit.text(),
            accession_number=self.accession_edit.text(),
            date_preset=self.date_combo.currentText(),
            date_from=self.date_from.date().toPython(),
            date_to=self.date_to.date().toPython(),
            modality=self.modality_combo.currentText(),
            study_description=self.description_edit.text(),
        )

    def set_form(self, form: query_keys.SearchForm) -> None:
        self.patient_name_edit.setText(form.patient_name)
        self.patient_id_edit.setText(form.patient_id)
        self.accession_edit.setText(form.accession_number)
        self.date_combo.setCurrentText(form.date_preset)
        self.modality_combo.setCurrentText(form.modality)
        self.description_edit.setText(form.study_description)

    def information_model(self) -> str:
        return "patient" if self.patient_root.isChecked() else "study"

    def study_keys(self) -> dict[str, str]:
        return query_keys.study_keys(self.form(), _dt.date.today())

    # -- remembered values -------------------------------------------------------------------
    def restore(self, settings: QSettings) -> None:
        """The node, fields and information model the window had when it last closed."""
        name = settings.value("query/node")
        if name:
            self.node_picker.select(str(name))
        self.set_form(query_keys.SearchForm(
            patient_name=str(settings.value("query/patient_name", "")),
            patient_id=str(settings.value("query/patient_id", "")),
            accession_number=str(settings.value("query/accession", "")),
            date_preset=str(settings.value("query/date_preset", "Any")),
            modality=str(settings.value("query/modality", "")),
            study_description=str(settings.value("query/description", "")),
        ))
        if settings.value("query/model", "study") == "patient":
            self.patient_root.setChecked(True)

    def save(self, settings: QSettings) -> None:
        settings.setValue("query/node", self.node_picker.currentData() or "")
        form = self.form()
        settings.setValue("query/patient_name", form.patient_name)
        settings.setValue("query/patient_id", form.patient_id)
        settings.setValue("query/accession", form.accession_number)
        settings.setValue("query/date_preset", form.date_preset)
        settings.setValue("query/modality", form.modality)
        settings.setValue("query/description", form.study_description)
        settings.setValue("query/model", self.information_model())
