"""The Send panel's "Edit tags…" dialog: attribute = value corrections applied to what is sent.

Each row is parsed by ``transform.edits.parse_edit`` when OK is pressed, so the rules are the
CLI's ``--set`` rules (no group 0002, UIDs only when allowed, values that fit the VR); a bad
row keeps the dialog open and says why. Nothing here reads or writes a file.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

__all__ = ["EditTagsDialog"]


class EditTagsDialog(QDialog):
    """Rows of (attribute keyword or tag, value); ``edits`` holds the parsed result after OK."""

    def __init__(self, scope: str, existing: tuple[Any, ...] = (), parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Edit tags")
        self.setObjectName("editTagsDialog")
        self.edits: tuple[Any, ...] = ()
        self.scope_label = QLabel(f"Applies to {scope}. The files on disk are not changed.", self)
        self.table = QTableWidget(0, 2, self)
        self.table.setHorizontalHeaderLabels(["Attribute (keyword or gggg,eeee)", "Value"])
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().resizeSection(0, 230)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.add_button = QPushButton("Add row", self)
        self.remove_button = QPushButton("Remove row", self)
        self.add_button.clicked.connect(lambda: self.add_row())
        self.remove_button.clicked.connect(self._remove_selected)
        self.allow_uids = QCheckBox("Allow UID edits (splits studies, orphans references)", self)
        self.error_label = QLabel("", self)
        self.error_label.setObjectName("editTagsError")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00020;")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        row_buttons = QHBoxLayout()
        row_buttons.addWidget(self.add_button)
        row_buttons.addWidget(self.remove_button)
        row_buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.scope_label)
        layout.addWidget(self.table, 1)
        layout.addLayout(row_buttons)
        layout.addWidget(self.allow_uids)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        for edit in existing:
            self.add_row(edit.keyword or f"{edit.tag >> 16:04X},{edit.tag & 0xFFFF:04X}",
                         _text(edit.value))
        if not existing:
            for keyword in ("PatientID", "PatientName"):
                self.add_row(keyword, "")
        self.resize(560, 320)

    def add_row(self, attribute: str = "", value: str = "") -> int:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, 0, QTableWidgetItem(attribute))
        self.table.setItem(row, 1, QTableWidgetItem(value))
        return row

    def set_row(self, row: int, attribute: str, value: str) -> None:
        self.table.item(row, 0).setText(attribute)
        self.table.item(row, 1).setText(value)

    def _remove_selected(self) -> None:
        for index in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(index)

    def rows(self) -> list[tuple[str, str]]:
        out = []
        for row in range(self.table.rowCount()):
            attribute = (self.table.item(row, 0).text() if self.table.item(row, 0) else "").strip()
            value = self.table.item(row, 1).text() if self.table.item(row, 1) else ""
            out.append((attribute, value))
        return out

    def parse(self) -> tuple[Any, ...] | None:
        """The rows as edits (rows with an empty value are skipped), or None after showing why."""
        from dicomdesk.transform.edits import EditError, parse_edit

        edits = []
        for attribute, value in self.rows():
            if not attribute or value == "":
                continue
            try:
                edits.append(parse_edit(f"{attribute}={value}", allow_uids=self.allow_uids.isChecked()))
            except EditError as exc:
                self.error_label.setText(str(exc))
                return None
        self.error_label.setText("")
        return tuple(edits)

    def accept(self) -> None:
        edits = self.parse()
        if edits is None:
            return
        self.edits = edits
        super().accept()


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)
