"""Query results as a tree: study -> series (fetched on expand) -> images (PS3.4 C.6.2 levels).

The tree mirrors the Study Root hierarchy (PS3.4 C.6.2.1): the panel asks the STUDY level first,
and the model requests a SERIES / IMAGE level C-FIND only when the user expands a row
(``canFetchMore``/``fetchMore``), so a search costs one association until the user drills down.

Speed matters here: a search may bring 10,000 matches while other workers run, and every call
Qt makes into a Python model (``data``, ``index``...) competes with those workers for the GIL.
So each row's cells and sort keys are computed once, when it is inserted, and the model sorts
itself (``sort``: one Python ``list.sort``; rows arriving after a sort are inserted at their
place by binary search) instead of a QSortFilterProxyModel, whose per-row comparisons would
call back into Python tens of thousands of times per batch. ``SORT_ROLE`` still gives each
cell's sort key (numbers for numeric columns) for any proxy a caller adds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)

__all__ = ["COLUMNS", "LOCAL_ROLE", "Match", "QueryResultsModel", "SORT_ROLE",
           "match_from_dataset"]

_log = logging.getLogger(__name__)

SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
#: True for a study row whose Study Instance UID is in the local archive ("present locally").
LOCAL_ROLE = int(Qt.ItemDataRole.UserRole) + 2
LOCAL_TOOLTIP = "Present in the local archive"
COLUMNS = ("Patient / Series / Image", "Patient ID", "Date", "Modality", "Description",
           "Accession", "Count", "UID")

#: Keywords kept from each C-FIND response identifier (PS3.4 C.6.2.1.2-4).
_KEPT = (
    "PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyTime", "AccessionNumber",
    "StudyDescription", "ModalitiesInStudy", "StudyInstanceUID", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances", "SeriesInstanceUID", "SeriesNumber", "Modality",
    "SeriesDescription", "NumberOfSeriesRelatedInstances", "SOPInstanceUID", "SOPClassUID",
    "InstanceNumber", "QueryRetrieveLevel", "RetrieveAETitle",
)


@dataclass(frozen=True)
class Match:
    """One C-FIND identifier as immutable strings (safe to pass from the worker thread)."""

    level: str
    values: tuple[tuple[str, str], ...]

    def get(self, keyword: str, default: str = "") -> str:
        for key, value in self.values:
            if key == keyword:
                return value
        return default


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def match_from_dataset(ds: Any, level: str) -> Match:
    """Copy the kept attributes out of a pydicom Dataset (called on the worker thread)."""
    values = []
    for keyword in _KEPT:
        try:
            element = ds.get(keyword)
        except Exception:  # a malformed value must not lose the whole response
            _log.debug("unreadable %s in C-FIND response", keyword)
            continue
        if element is not None:
            values.append((keyword, _text(element)))
    return Match(level.upper(), tuple(values))


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def _format_date(text: str) -> str:
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def _sop_class_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return name.replace(" Storage", "") if name != uid else uid
    except Exception:
        return uid


class _Item:
    __slots__ = ("kind", "match", "parent", "children", "row", "fetch", "error", "cached",
                 "keys")

    def __init__(self, kind: str, match: Match | None, parent: _Item | None) -> None:
        self.kind = kind
        self.match = match
        self.parent = parent
        self.children: list[_Item] = []
        self.row = 0
        self.fetch = "done" if kind in ("image", "root") else "none"  # none|fetching|done
        self.error = ""
        self.cached: tuple[str, ...] = self.cells() if match is not None else ()
        self.keys: tuple[Any, ...] = self._sort_keys() if match is not None else ()

    def _sort_keys(self) -> tuple[Any, ...]:
        """One key per column: numbers for counts and series/image numbers, else folded text."""
        keys: list[Any] = [text.lower() for text in self.cached]
        count = self.cached[6]
        keys[6] = _int(count.split("/")[-1]) if count else -1
        if self.kind != "study":
            m = self.match
            assert m is not None
            keys[0] = _int(m.get("SeriesNumber") if self.kind == "series"
                           else m.get("InstanceNumber"))
        return tuple(keys)

    def key(self) -> tuple[str, ...]:
        m = self.match
        assert m is not None
        if self.kind == "study":
            return (m.get("StudyInstanceUID"),)
        if self.kind == "series":
            return (m.get("StudyInstanceUID"), m.get("SeriesInstanceUID"))
        return (m.get("StudyInstanceUID"), m.get("SeriesInstanceUID"), m.get("SOPInstanceUID"))

    def cells(self) -> tuple[str, ...]:
        m = self.match
        assert m is not None
        if self.kind == "study":
            series = m.get("NumberOfStudyRelatedSeries")
            images = m.get("NumberOfStudyRelatedInstances")
            count = "/".join(x for x in (series, images) if x)
            return (m.get("PatientName").replace("^", " ").strip(), m.get("PatientID"),
                    _format_date(m.get("StudyDate")), m.get("ModalitiesInStudy"),
                    m.get("StudyDescription"), m.get("AccessionNumber"), count,
                    m.get("StudyInstanceUID"))
        if self.kind == "series":
            return (f"Series {m.get('SeriesNumber')}".strip(), "", "", m.get("Modality"),
                    m.get("SeriesDescription"), "", m.get("NumberOfSeriesRelatedInstances"),
                    m.get("SeriesInstanceUID"))
        return (f"Image {m.get('InstanceNumber')}".strip(), "", "",
                _sop_class_name(m.get("SOPClassUID")), "", "", "", m.get("SOPInstanceUID"))


_CHILD_KIND = {"study": "series", "series": "image"}
_DISPLAY = Qt.ItemDataRole.DisplayRole
_DECORATION = Qt.ItemDataRole.DecorationRole
_OTHER_ROLES = frozenset({SORT_ROLE, LOCAL_ROLE, _DECORATION, Qt.ItemDataRole.ToolTipRole})


class QueryResultsModel(QAbstractItemModel):
    """Study/series/image tree; emits ``children_requested`` when a row is first expanded."""

    #: (kind of the parent row, its key tuple, its Match) -> the panel runs the next-level C-FIND
    children_requested = Signal(str, tuple, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._root = _Item("root", None, None)
        self._index: dict[tuple[str, ...], _Item] = {}
        self._local: set[str] = set()
        self._local_icon: Any = None
        self._sort_column = -1  # -1: arrival order
        self._sort_order = Qt.SortOrder.AscendingOrder

    # -- present locally -------------------------------------------------------------------
    def mark_local(self, study_uids: Any) -> None:
        """Remember studies held by the local archive; their rows get a check mark.

        Kept across searches (a study retrieved once stays local), so a row that arrives after
        the archive was checked is marked as soon as it is inserted.
        """
        new = {str(u) for u in study_uids if u} - self._local
        if not new:
            return
        self._local |= new
        for uid in new:
            item = self._index.get((uid,))
            if item is not None:
                index = self._index_of(item)
                self.dataChanged.emit(index, index.siblingAtColumn(len(COLUMNS) - 1))

    def is_local(self, study_uid: str) -> bool:
        return study_uid in self._local

    def study_uids(self) -> list[str]:
        return [item.key()[0] for item in self._root.children]

    def local_rows(self) -> list[str]:
        """Study Instance UIDs of the rows shown as present locally."""
        return [uid for uid in self.study_uids() if uid in self._local]

    def _icon(self) -> Any:
        if self._local_icon is None:
            from dicomdesk.ui.assets import load_icon

            self._local_icon = load_icon("local")
        return self._local_icon

    # -- feeding ---------------------------------------------------------------------------
    def clear(self) -> None:
        self.beginResetModel()
        self._root = _Item("root", None, None)
        self._index.clear()
        self.endResetModel()

    def study_count(self) -> int:
        return len(self._root.children)

    def add_studies(self, matches: list[Match]) -> None:
        """Append a batch of STUDY-level matches (one insert for the batch)."""
        self._append(self._root, QModelIndex(), "study", matches)

    def add_children(self, parent_key: tuple[str, ...], matches: list[Match]) -> None:
        """Append a batch of SERIES (or IMAGE) matches under the row with ``parent_key``."""
        parent = self._index.get(tuple(parent_key))
        if parent is None:
            return
        self._append(parent, self._index_of(parent), _CHILD_KIND[parent.kind], matches)

    def finish_children(self, parent_key: tuple[str, ...], error: str = "") -> None:
        """The sub-level C-FIND ended: an empty row then shows no expander."""
        parent = self._index.get(tuple(parent_key))
        if parent is None:
            return
        empty = not parent.children
        if empty:
            # hasChildren() changes from True to False: views must drop the expander.
            self.layoutAboutToBeChanged.emit()
        parent.fetch = "done"
        parent.error = error
        if empty:
            self.layoutChanged.emit()
        index = self._index_of(parent)
        self.dataChanged.emit(index, index.siblingAtColumn(len(COLUMNS) - 1))

    def _append(self, parent: _Item, parent_index: QModelIndex, kind: str,
                matches: list[Match]) -> None:
        new = []
        for match in matches:
            item = _Item(kind, match, parent)
            key = item.key()
            if key in self._index or not key[-1]:
                continue  # duplicate response or no unique key: cannot be retrieved anyway
            self._index[key] = item
            new.append(item)
        if not new:
            return
        if self._sort_column < 0:
            self._insert_run(parent, parent_index, len(parent.children), new)
            return
        if len(new) > 32:  # a big batch: append, then one sort (one layout change)
            self._insert_run(parent, parent_index, len(parent.children), new)
            self._sort_children(parent)
            return
        # sorted: place each new row by binary search; rows that land next to each other
        # are inserted together (one beginInsertRows per run, not per row)
        column, descending = self._sort_column, self._descending()
        new.sort(key=lambda it: it.keys[column], reverse=descending)
        runs: list[tuple[int, list[_Item]]] = []
        for item in new:
            position = self._position(parent.children, item.keys[column], column, descending)
            if runs and runs[-1][0] == position:
                runs[-1][1].append(item)
            else:
                runs.append((position, [item]))
        for position, run in reversed(runs):  # from the end: earlier positions stay valid
            self._insert_run(parent, parent_index, position, run)

    def _insert_run(self, parent: _Item, parent_index: QModelIndex, position: int,
                    items: list[_Item]) -> None:
        self.beginInsertRows(parent_index, position, position + len(items) - 1)
        parent.children[position:position] = items
        for row in range(position, len(parent.children)):
            parent.children[row].row = row
        self.endInsertRows()

    def _descending(self) -> bool:
        return self._sort_order == Qt.SortOrder.DescendingOrder

    @staticmethod
    def _position(children: list[_Item], key: Any, column: int, descending: bool) -> int:
        """Index after the last sibling that sorts before or equal to ``key`` (stable)."""
        low, high = 0, len(children)
        while low < high:
            middle = (low + high) // 2
            other = children[middle].keys[column]
            if (other > key) if not descending else (other < key):
                high = middle
            else:
                low = middle + 1
        return low

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort every level by ``column`` (the view calls this on a header click)."""
        if not 0 <= column < len(COLUMNS):
            return
        self._sort_column, self._sort_order = column, order
        self._sort_children(self._root, recursive=True)

    def _sort_children(self, parent: _Item, recursive: bool = False) -> None:
        """Re-sort ``parent``'s rows (and below), keeping persistent indexes on their items."""
        column, descending = self._sort_column, self._descending()
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        before = [(self._item(index), index.column()) for index in persistent]
        stack = [parent]
        while stack:
            item = stack.pop()
            if item.children:
                item.children.sort(key=lambda it: it.keys[column], reverse=descending)
                for row, child in enumerate(item.children):
                    child.row = row
                if recursive:
                    stack.extend(item.children)
        after = [self.createIndex(item.row, col, item) if item is not None else QModelIndex()
                 for item, col in before]
        self.changePersistentIndexList(persistent, after)
        self.layoutChanged.emit()

    # -- reading ---------------------------------------------------------------------------
    def item_at(self, index: QModelIndex) -> tuple[str, Match] | None:
        """(kind, Match) of a row, for retrieve and details."""
        item = self._item(index)
        if item is None or item.match is None:
            return None
        return item.kind, item.match

    def ancestors(self, index: QModelIndex) -> list[Match]:
        """Matches from the study down to ``index`` (for the retrieve identifier)."""
        item = self._item(index)
        chain = []
        while item is not None and item.match is not None:
            chain.append(item.match)
            item = item.parent
        return list(reversed(chain))

    def _item(self, index: QModelIndex) -> _Item | None:
        if not index.isValid():
            return None
        return index.internalPointer()

    def _index_of(self, item: _Item) -> QModelIndex:
        if item is self._root:
            return QModelIndex()
        return self.createIndex(item.row, 0, item)

    # -- QAbstractItemModel ----------------------------------------------------------------
    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> QModelIndex:
        owner = self._item(parent) if parent.isValid() else self._root
        if owner is None or not (0 <= row < len(owner.children)) or not (0 <= column < len(COLUMNS)):
            return QModelIndex()
        return self.createIndex(row, column, owner.children[row])

    def parent(self, index: QModelIndex | QPersistentModelIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]
        item = self._item(index)
        if item is None or item.parent is None or item.parent is self._root:
            return QModelIndex()
        return self.createIndex(item.parent.row, 0, item.parent)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        if parent.column() > 0:
            return 0
        owner = self._item(parent) if parent.isValid() else self._root
        return len(owner.children) if owner is not None else 0

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return len(COLUMNS)

    def hasChildren(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:
        owner = self._item(parent) if parent.isValid() else self._root
        if owner is None:
            return False
        if owner.fetch != "done":
            return True
        return bool(owner.children)

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> bool:
        item = self._item(parent)
        return item is not None and item.fetch == "none"

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> None:
        item = self._item(parent)
        if item is None or item.fetch != "none" or item.match is None:
            return
        item.fetch = "fetching"
        self.children_requested.emit(item.kind, item.key(), item.match)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # the most frequent question first, answered from the cache (see the module docstring)
        if role == _DISPLAY:
            item = index.internalPointer() if index.isValid() else None
            if item is None or item.match is None:
                return None
            column = index.column()
            if column == 0 and item.fetch == "fetching":
                return f"{item.cached[0]}  (searching…)"
            return item.cached[column]
        if role not in _OTHER_ROLES:
            return None
        item = self._item(index)
        if item is None or item.match is None:
            return None
        column = index.column()
        if role == SORT_ROLE:
            return item.keys[column]
        local = item.kind == "study" and item.key()[0] in self._local
        if role == LOCAL_ROLE:
            return local
        if role == _DECORATION:
            return self._icon() if local and column == 0 else None
        # tool tip
        if column == 0 and item.error:
            return item.error
        if column == 0 and local:
            return LOCAL_TOOLTIP
        return item.cached[column]

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
