"""The archive browser's tree: patient -> study -> series -> instance (PS3.4 C.6.1.1 levels).

A ``QStandardItemModel``: the items live in C++, so laying out or painting the tree never calls
back into Python (each such call would wait for the GIL while the server's threads store objects,
see workers.py). Rows come from ``Archive.tree`` (``Index.TREE_COLUMNS`` tuples) read in a worker;
``add_rows`` inserts only what is new under the existing parents, so objects arriving while the
server runs extend the tree without reloading it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel

__all__ = ["ArchiveTreeModel", "KIND_ROLE", "PATH_ROLE", "UID_ROLE"]

#: "patient" | "study" | "series" | "instance"
KIND_ROLE = int(Qt.ItemDataRole.UserRole) + 1
#: the level's unique key (PatientID, Study/Series/SOP Instance UID)
UID_ROLE = int(Qt.ItemDataRole.UserRole) + 2
#: absolute path of an instance's file
PATH_ROLE = int(Qt.ItemDataRole.UserRole) + 3

COLUMNS = ("Patient / Study / Series / Instance", "Date / Number", "Modality / Class",
           "Description", "Count / Size", "UID")

# positions in an Index.TREE_COLUMNS tuple
(_PID, _PNAME, _STUDY, _SDATE, _SDESC, _ACC, _SERIES, _MOD, _SERNO, _SERDESC, _SOP, _CLASS,
 _INSTNO, _TS, _SIZE, _PATH) = range(16)


def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:]}" if len(text) == 8 and text.isdigit() else text


def _class_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return name.replace(" Storage", "") if name != uid else uid
    except Exception:
        return uid


def _size(size: int) -> str:
    from dicomdesk.ui.models.transfer_queue import human_size

    return human_size(size or 0)


def _row(kind: str, uid: str, cells: Sequence[str]) -> list[QStandardItem]:
    items = []
    for text in cells:
        item = QStandardItem(text)
        item.setEditable(False)
        items.append(item)
    items[0].setData(kind, KIND_ROLE)
    items[0].setData(uid, UID_ROLE)
    items[0].setToolTip(cells[0])
    return items


class ArchiveTreeModel(QStandardItemModel):
    """Patient/study/series/instance rows keyed by their unique keys."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.root = Path()
        self._items: dict[tuple[str, str], QStandardItem] = {}

    # -- feeding ---------------------------------------------------------------------------
    def load(self, root: Path, rows: Iterable[tuple]) -> None:
        """Replace the whole tree (first load, storage folder changed, Refresh)."""
        self.removeRows(0, self.rowCount())
        self._items.clear()
        self.root = Path(root)
        self.add_rows(rows)

    def add_rows(self, rows: Iterable[tuple]) -> int:
        """Insert the instances not shown yet (with any missing parents); returns how many."""
        added = 0
        touched: dict[int, QStandardItem] = {}
        for r in rows:
            if ("instance", r[_SOP]) in self._items:
                continue
            patient = self._child(None, "patient", r[_PID], lambda: (
                str(r[_PNAME] or "(no name)").replace("^", " ").strip(), "", "", "",
                "", f"ID {r[_PID]}" if r[_PID] else "(no patient ID)"))
            study = self._child(patient, "study", r[_STUDY], lambda: (
                f"Study {r[_ACC]}".strip() if r[_ACC] else "Study", _date(str(r[_SDATE] or "")),
                "", str(r[_SDESC] or ""), "", r[_STUDY]))
            series = self._child(study, "series", r[_SERIES], lambda: (
                f"Series {'' if r[_SERNO] is None else r[_SERNO]}".strip(),
                "" if r[_SERNO] is None else str(r[_SERNO]), str(r[_MOD] or ""),
                str(r[_SERDESC] or ""), "", r[_SERIES]))
            number = "" if r[_INSTNO] is None else str(r[_INSTNO])
            cells = (f"Instance {number}".strip(), number, _class_name(str(r[_CLASS] or "")),
                     "", _size(int(r[_SIZE] or 0)), r[_SOP])
            items = _row("instance", r[_SOP], cells)
            items[0].setData(str(self.root / r[_PATH]), PATH_ROLE)
            series.appendRow(items)
            self._items[("instance", r[_SOP])] = items[0]
            touched[id(series)] = series
            touched[id(study)] = study
            added += 1
        for item in touched.values():
            self._update_count(item)
        return added

    def _child(self, parent: QStandardItem | None, kind: str, uid: str, cells: Any) -> QStandardItem:
        key = (kind, str(uid))
        item = self._items.get(key)
        if item is None:
            items = _row(kind, str(uid), cells())
            (parent if parent is not None else self.invisibleRootItem()).appendRow(items)
            item = items[0]
            self._items[key] = item
        return item

    def _update_count(self, item: QStandardItem) -> None:
        parent_index = item.index()
        cell = self.itemFromIndex(parent_index.siblingAtColumn(4))
        if cell is None:
            return
        if item.data(KIND_ROLE) == "series":
            cell.setText(f"{item.rowCount()} instance(s)")
        else:
            instances = sum(item.child(row).rowCount() for row in range(item.rowCount()))
            cell.setText(f"{item.rowCount()} series, {instances} instance(s)")

    def remove_study(self, study_uid: str) -> bool:
        """Drop a study's rows (and its patient's row when it was the patient's last study)."""
        study = self._items.get(("study", study_uid))
        if study is None:
            return False
        patient = study.parent()
        for series_row in range(study.rowCount()):
            series = study.child(series_row)
            for row in range(series.rowCount()):
                self._items.pop(("instance", series.child(row).data(UID_ROLE)), None)
            self._items.pop(("series", series.data(UID_ROLE)), None)
        self._items.pop(("study", study_uid), None)
        owner = patient if patient is not None else self.invisibleRootItem()
        owner.removeRow(study.row())
        if patient is not None and patient.rowCount() == 0:
            self._items.pop(("patient", patient.data(UID_ROLE)), None)
            self.invisibleRootItem().removeRow(patient.row())
        return True

    # -- reading ---------------------------------------------------------------------------
    def find(self, kind: str, uid: str) -> QModelIndex:
        item = self._items.get((kind, uid))
        return item.index() if item is not None else QModelIndex()

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self._items if k == kind)

    @staticmethod
    def kind(index: QModelIndex) -> str:
        return str(index.siblingAtColumn(0).data(KIND_ROLE) or "")

    @staticmethod
    def uid(index: QModelIndex) -> str:
        return str(index.siblingAtColumn(0).data(UID_ROLE) or "")

    @staticmethod
    def path(index: QModelIndex) -> str:
        return str(index.siblingAtColumn(0).data(PATH_ROLE) or "")

    def study_of(self, index: QModelIndex) -> str:
        """Study Instance UID of a study row or of any row below one ("" for a patient)."""
        index = index.siblingAtColumn(0)
        while index.isValid():
            if self.kind(index) == "study":
                return self.uid(index)
            index = index.parent()
        return ""

    def studies_under(self, index: QModelIndex) -> list[str]:
        """The studies a selected row stands for (a patient row: all of its studies)."""
        index = index.siblingAtColumn(0)
        if self.kind(index) == "patient":
            item = self.itemFromIndex(index)
            return [item.child(row).data(UID_ROLE) for row in range(item.rowCount())]
        study = self.study_of(index)
        return [study] if study else []
