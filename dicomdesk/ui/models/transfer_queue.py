"""The send queue: one row per dropped file, its header summary and its C-STORE state.

Rows come from ``operations.scan_paths`` FileInfo values (read on a worker thread); states follow
the ``SendProgress.state`` values of internals.md plus "queued" before a send. Non-DICOM files
are listed as "skipped" with the reason, so the user sees what was ignored and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from dicomdesk.naming import uid_name
from dicomdesk.units import human_size

__all__ = ["QueueRow", "SendState", "TransferQueueModel"]

COLUMNS = ("File", "Patient", "Study", "SOP class", "Transfer syntax", "Size", "State")

class SendState(StrEnum):
    """A queue row's state: ``operations.SendProgress.state`` (internals.md), plus QUEUED before
    a send. A ``str``, so the words ``operations`` reports compare equal to it."""

    QUEUED = "queued"
    SENDING = "sending"
    #: the peer answered Success or Warning (PS3.4 B.2.3)
    STORED = "stored"
    FAILED = "failed"
    #: not sent: not a DICOM file, or cancelled before its turn (then back to QUEUED)
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        """The file's send has ended, one way or the other."""
        return self in (SendState.STORED, SendState.FAILED, SendState.SKIPPED)


_STATE_COLOURS = {
    SendState.STORED: QColor("#1e7d32"),
    SendState.FAILED: QColor("#c62828"),
    SendState.SKIPPED: QColor("#8a8a8a"),
    SendState.SENDING: QColor("#1565c0"),
}


@dataclass
class QueueRow:
    """A queue row; owned and mutated by the model on the GUI thread only."""

    path: str
    is_dicom: bool
    patient: str = ""
    study: str = ""
    sop_class: str = ""
    transfer_syntax: str = ""
    size: int = 0
    state: SendState = SendState.QUEUED
    message: str = ""
    info: Any = None  # the immutable FileInfo, handed back to operations.send


def row_from_file_info(info: Any) -> QueueRow:
    """A FileInfo (internals.md scan_paths) as a queue row; non-DICOM files start as skipped."""
    is_dicom = bool(getattr(info, "is_dicom", False))
    name = str(getattr(info, "patient_name", "") or "").replace("^", " ").strip()
    pid = str(getattr(info, "patient_id", "") or "")
    patient = f"{name} ({pid})" if name and pid else (name or pid)
    study = str(getattr(info, "study_description", "") or getattr(info, "study_uid", "") or "")
    return QueueRow(
        path=str(getattr(info, "path", "")),
        is_dicom=is_dicom,
        patient=patient,
        study=study,
        sop_class=uid_name(str(getattr(info, "sop_class_uid", "") or "")),
        transfer_syntax=uid_name(str(getattr(info, "transfer_syntax", "") or "")),
        size=int(getattr(info, "size", 0) or 0),
        state=SendState.QUEUED if is_dicom else SendState.SKIPPED,
        message="" if is_dicom else str(getattr(info, "reason", "") or "not a DICOM file"),
        info=info,
    )


class TransferQueueModel(QAbstractTableModel):
    """Table of QueueRow; rows are looked up by path to apply per-file progress."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[QueueRow] = []
        self._by_path: dict[str, int] = {}
        #: rows put back in the queue by a drop since the last ``clear``/``take_requeued``
        self.requeued = 0

    def take_requeued(self) -> int:
        count, self.requeued = self.requeued, 0
        return count

    def add_file_infos(self, infos: list[Any]) -> int:
        """Append FileInfos not yet queued (by path); returns how many were added.

        A file dropped again after it was sent (or failed) is queued again: re-sending is
        allowed, and ``requeued`` counts those so the summary stays true."""
        new = []
        seen: set[str] = set()
        for info in infos:
            row = row_from_file_info(info)
            if row.path in seen:
                continue
            seen.add(row.path)
            existing = self._by_path.get(row.path)
            if existing is not None:
                if row.is_dicom and self._rows[existing].state in (SendState.STORED, SendState.FAILED):
                    self._rows[existing].info = row.info
                    self.set_state(row.path, SendState.QUEUED)
                    self.requeued += 1
                continue
            new.append(row)
        if not new:
            return 0
        first = len(self._rows)
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        for offset, row in enumerate(new):
            self._by_path[row.path] = first + offset
            self._rows.append(row)
        self.endInsertRows()
        return len(new)

    def set_state(self, path: str, state: SendState | str, message: str = "") -> None:
        """``state`` may be the word ``operations`` reported ("stored"): it becomes a SendState."""
        row = self._by_path.get(str(path))
        if row is None:
            return
        self._rows[row].state = SendState(state)
        self._rows[row].message = message
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def clear(self) -> None:
        self.beginResetModel()
        self._rows.clear()
        self._by_path.clear()
        self.requeued = 0
        self.endResetModel()

    def rows(self) -> list[QueueRow]:
        return list(self._rows)

    def paths(self, states: tuple[SendState, ...]) -> list[str]:
        return [r.path for r in self._rows if r.is_dicom and r.state in states]

    def file_infos(self, paths: list[str]) -> list[Any]:
        """The FileInfo of each path (so a send does not read the headers again)."""
        return [self._rows[self._by_path[p]].info or p for p in paths if p in self._by_path]

    def state_of(self, path: str) -> SendState | str:
        """The row's SendState; "" for a path not in the queue."""
        row = self._by_path.get(str(path))
        return self._rows[row].state if row is not None else ""

    def count(self, state: SendState) -> int:
        return sum(1 for r in self._rows if r.state == state)

    def total_size(self, paths: list[str]) -> int:
        return sum(self._rows[self._by_path[p]].size for p in paths if p in self._by_path)

    # -- Qt --------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return row.path.rsplit("/", 1)[-1]
            if column == 6:
                return f"{row.state}: {row.message}" if row.message else row.state
            return (None, row.patient, row.study, row.sop_class, row.transfer_syntax,
                    human_size(row.size))[column]
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.path if column == 0 else (row.message or None)
        if role == Qt.ItemDataRole.ForegroundRole and column == 6 and row.state in _STATE_COLOURS:
            return QBrush(_STATE_COLOURS[row.state])
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None
