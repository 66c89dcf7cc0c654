"""An append-only table of immutable records, for the association log and the archive browser.

Both tables grow from server callbacks that arrive in batches (see ``server_host``); the model
inserts a batch with one ``beginInsertRows`` and keeps at most ``limit`` rows, dropping the oldest,
so that a server left running for days does not grow the window without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

__all__ = ["Column", "RecordTableModel"]

Column = tuple[str, Callable[[Any], str]]


class RecordTableModel(QAbstractTableModel):
    """Rows are records (any immutable value); ``columns`` say how each cell is written."""

    def __init__(self, columns: Sequence[Column], limit: int = 10_000,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._columns = list(columns)
        self._records: list[Any] = []
        self._limit = limit

    def append(self, records: Sequence[Any]) -> None:
        if not records:
            return
        records = list(records)[-self._limit:]
        overflow = len(self._records) + len(records) - self._limit
        if overflow > 0:
            self.beginRemoveRows(QModelIndex(), 0, overflow - 1)
            del self._records[:overflow]
            self.endRemoveRows()
        first = len(self._records)
        self.beginInsertRows(QModelIndex(), first, first + len(records) - 1)
        self._records.extend(records)
        self.endInsertRows()

    def replace(self, old: Any, new: Any) -> bool:
        """Put ``new`` in the row holding ``old`` (searched from the newest row); False if
        ``old`` is no longer in the table (dropped by ``limit``)."""
        for row in range(len(self._records) - 1, -1, -1):
            if self._records[row] is old:
                self._records[row] = new
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(self._columns) - 1))
                return True
        return False

    def clear(self) -> None:
        self.beginResetModel()
        self._records.clear()
        self.endResetModel()

    def record(self, row: int) -> Any:
        return self._records[row]

    def records(self) -> list[Any]:
        return list(self._records)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._records)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return None
        try:
            return self._columns[index.column()][1](self._records[index.row()])
        except Exception:  # a record missing a field shows an empty cell, never a traceback
            return ""

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self._columns[section][0]
        return None
