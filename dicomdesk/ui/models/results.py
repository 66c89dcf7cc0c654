"""Query results as a tree: study -> series (fetched on expand) -> images (PS3.4 C.6.2 levels).

The tree mirrors the Study Root hierarchy (PS3.4 C.6.2.1): the panel asks the STUDY level first,
and the model requests a SERIES / IMAGE level C-FIND only when the user expands a row
(``canFetchMore``/``fetchMore``), so a search costs one association until the user drills down.

Speed matters here: a search may bring 10,000 matches while other workers run, and every call
Qt makes into a Python model competes with those workers for the GIL (each waits up to the
interpreter's switch interval). A QTreeView lays out *every* top-level row after each insert
(``index``/``hasChildren``/``flags`` per row): with a Python ``QAbstractItemModel`` that was
~50,000 Python calls per batch at 10,000 rows, and the event loop stalled for hundreds of ms.
So this model is a ``QStandardItemModel``: cells, sort keys (``SORT_ROLE``, numbers for numeric
columns), the "present locally" mark and tooltips are stored in C++ items when a row is
inserted, layout/paint/sort never call Python, and the only Python overrides are the rare
``canFetchMore``/``fetchMore`` (a row being expanded) and ``sort`` (a header click). Rows whose
children are not fetched yet carry one placeholder child, so the view shows an expander without
asking Python; rows arriving after a sort are put in place by one C++ re-sort per batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel

from dicomdesk.naming import uid_name

__all__ = ["COLUMNS", "LOCAL_ROLE", "PRESENCE_ROLE", "Match", "QueryResultsModel", "SORT_ROLE",
           "match_from_dataset"]

_log = logging.getLogger(__name__)

SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
#: True for a study row whose Study Instance UID is in the local archive ("present locally").
LOCAL_ROLE = int(Qt.ItemDataRole.UserRole) + 2
LOCAL_TOOLTIP = "Present in the local archive"
#: "complete" | "partial" | None (absent) for a study row, compared with its expected count
PRESENCE_ROLE = int(Qt.ItemDataRole.UserRole) + 4
COLUMNS = ("Patient / Series / Image", "Patient ID", "Date", "Modality", "Description",
           "Accession", "Series / Images", "UID")

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


class _Row:
    """What Python keeps about a row: its match, cells, sort keys and fetch state."""

    __slots__ = ("kind", "match", "parent", "cached", "keys", "fetch", "error")

    def __init__(self, kind: str, match: Match, parent: _Row | None) -> None:
        self.kind = kind
        self.match = match
        self.parent = parent
        self.fetch = "done" if kind == "image" else "none"  # none|fetching|done
        self.error = ""
        self.cached: tuple[str, ...] = self.cells()
        self.keys: tuple[Any, ...] = self._sort_keys()

    def _sort_keys(self) -> tuple[Any, ...]:
        """One key per column: numbers for counts and series/image numbers, else folded text."""
        if self.kind != "study":
            # series and images keep their number order whatever column sorts the studies
            # (their cells are mostly empty there: a text sort would shuffle them)
            number = _int(self.match.get("SeriesNumber") if self.kind == "series"
                          else self.match.get("InstanceNumber"))
            return (number,) * len(self.cached)
        keys: list[Any] = [text.lower() for text in self.cached]
        count = self.cached[6]
        keys[6] = _int(count.split("/")[-1]) if count else -1
        return tuple(keys)

    def key(self) -> tuple[str, ...]:
        m = self.match
        if self.kind == "study":
            return (m.get("StudyInstanceUID"),)
        if self.kind == "series":
            return (m.get("StudyInstanceUID"), m.get("SeriesInstanceUID"))
        return (m.get("StudyInstanceUID"), m.get("SeriesInstanceUID"), m.get("SOPInstanceUID"))

    def cells(self) -> tuple[str, ...]:
        m = self.match
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
                uid_name(m.get("SOPClassUID"), short=True), "", "", "", m.get("SOPInstanceUID"))


_CHILD_KIND = {"study": "series", "series": "image"}
_DECORATION = Qt.ItemDataRole.DecorationRole
#: column 0 holds the row's key, its UIDs joined by "\n" (how Python finds its _Row from an
#: index). Only plain strings/numbers go into items: a Python object in a QVariant is copied by
#: the C++ sort without the GIL, and its reference count races with the worker threads.
_KEY_ROLE = int(Qt.ItemDataRole.UserRole) + 3
_PLACEHOLDER = "…"
_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
#: above this many rows to mark, one pass over the rows is cheaper than a lookup per row
_LOOKUPS_PER_PASS = 20
_CELL_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable


class QueryResultsModel(QStandardItemModel):
    """Study/series/image tree; emits ``children_requested`` when a row is first expanded."""

    #: (kind of the parent row, its key tuple, its Match) -> the panel runs the next-level C-FIND
    children_requested = Signal(str, tuple, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.setSortRole(SORT_ROLE)
        # every cell the model creates (see _fill_row) is a clone of this: read-only, selectable
        prototype = QStandardItem()
        prototype.setFlags(_CELL_FLAGS)
        self.setItemPrototype(prototype)  # the model owns it
        self._rows: dict[tuple[str, ...], _Row] = {}
        self._local: set[str] = set()
        self._local_icon: Any = None
        #: study UID -> (instances held locally, instances the study has) for partial studies
        self._partial: dict[str, tuple[int, int]] = {}
        #: study UID -> its number of instances, when a retrieve told us (C.4.2.1.6 counts)
        self._expected: dict[str, int] = {}
        self._partial_icon: Any = None
        self._sort_column = -1  # -1: arrival order
        self._sort_order = Qt.SortOrder.AscendingOrder

    # -- present locally -------------------------------------------------------------------
    def set_expected(self, study_uid: str, instances: int) -> None:
        """The number of instances a study has, as a retrieve's sub-operation counts said."""
        if study_uid and instances > 0:
            self._expected[study_uid] = int(instances)

    def _expected_count(self, uid: str) -> int:
        row = self._rows.get((uid,))
        remote = _int(row.match.get("NumberOfStudyRelatedInstances")) if row is not None else 0
        return max(self._expected.get(uid, 0), remote if remote > 0 else 0)

    def mark_local(self, study_uids: Any) -> None:
        """Remember studies held by the local archive; their rows get a check mark.

        ``study_uids`` may map each study to the instances held locally: a study holding fewer
        than it has (Number of Study Related Instances, or a retrieve's counts) is marked as
        partial, with its counts, not as present. Kept across searches (a study retrieved once
        stays local), so a row that arrives after the archive was checked is marked as soon
        as it is inserted.
        """
        counts = dict(study_uids) if isinstance(study_uids, dict) else None
        uids = {str(u) for u in (counts or study_uids) if u}
        if counts is not None:
            changed = set()
            for uid in uids:
                expected = self._expected_count(uid)
                held = int(counts.get(uid, 0) or 0)
                if expected and held < expected:
                    if self._partial.get(uid) != (held, expected) or uid in self._local:
                        changed.add(uid)
                    self._partial[uid] = (held, expected)
                    self._local.discard(uid)
                elif uid in self._partial:
                    del self._partial[uid]
                    changed.add(uid)
            for uid in changed:
                row = self._rows.get((uid,))
                first = self._index(row) if row is not None else QModelIndex()
                if first.isValid():
                    self._show_partial(row, first)
            uids -= set(self._partial)
        new = uids - self._local
        if not new:
            return
        self._local |= new
        shown = [self._rows[(uid,)] for uid in new if (uid,) in self._rows]
        if len(shown) <= _LOOKUPS_PER_PASS:  # a C++ scan each (docs/internals.md, timings)
            for row in shown:
                first = self._index(row)
                if first.isValid():
                    self._show_local(row, first)
            return
        index = self.index
        for position in range(self.rowCount()):  # one Python pass over the study rows
            first = index(position, 0)
            row = self._rows.get((first.data(_KEY_ROLE),))
            if row is not None and row.key()[0] in new:
                self._show_local(row, first)

    def _show_local(self, row: _Row, first: QModelIndex) -> None:
        for column in range(len(COLUMNS)):
            self.setData(first.siblingAtColumn(column), True, LOCAL_ROLE)
        self.setData(first, "complete", PRESENCE_ROLE)
        self.setData(first, self._icon(), _DECORATION)
        if not row.error:
            self.setData(first, LOCAL_TOOLTIP, _TOOLTIP)

    def _show_partial(self, row: _Row, first: QModelIndex) -> None:
        """A partial study: its own mark and counts; absent (no mark) when it left both sets."""
        partial = self._partial.get(row.key()[0])
        for column in range(len(COLUMNS)):
            self.setData(first.siblingAtColumn(column), None, LOCAL_ROLE)
        if partial is None:
            self.setData(first, None, PRESENCE_ROLE)
            self.setData(first, None, _DECORATION)
            self.setData(first, row.error or None, _TOOLTIP)
            return
        self.setData(first, "partial", PRESENCE_ROLE)
        self.setData(first, self._icon("partial"), _DECORATION)
        self.setData(first, self.presence_text(row.key()[0]), _TOOLTIP)

    def presence(self, study_uid: str) -> str:
        """"complete", "partial" or "absent": how much of the study the local archive holds."""
        if study_uid in self._partial:
            return "partial"
        return "complete" if study_uid in self._local else "absent"

    def presence_text(self, study_uid: str) -> str:
        """The presence in words, with the counts of a partial study."""
        if study_uid in self._partial:
            held, expected = self._partial[study_uid]
            return f"Partly in the local archive: {held} of {expected} images"
        return LOCAL_TOOLTIP if study_uid in self._local else "Not in the local archive"

    def is_local(self, study_uid: str) -> bool:
        return study_uid in self._local

    def study_uids(self) -> list[str]:
        """Study Instance UIDs of the study rows, in arrival order (from Python's own index:
        asking 10,000 items through PySide took tens of ms on the GUI thread)."""
        return [key[0] for key in self._rows if len(key) == 1]

    def local_rows(self) -> list[str]:
        """Study Instance UIDs of the rows shown as present locally."""
        return [uid for uid in self.study_uids() if uid in self._local]

    def _icon(self, name: str = "local") -> Any:
        from dicomdesk.ui.assets import load_icon

        if name == "partial":
            if self._partial_icon is None:
                self._partial_icon = load_icon("partial")
            return self._partial_icon
        if self._local_icon is None:
            self._local_icon = load_icon("local")
        return self._local_icon

    # -- feeding ---------------------------------------------------------------------------
    def clear(self) -> None:  # type: ignore[override]
        self.removeRows(0, self.rowCount())
        self._rows.clear()

    def study_count(self) -> int:
        return self.rowCount()

    def add_studies(self, matches: list[Match], sort: bool = True) -> None:
        """Append a batch of STUDY-level matches (then one C++ re-sort if sorted, unless
        ``sort`` is False: a stream of batches sorts once at its end with ``resort``)."""
        self._append(None, "study", matches, sort)

    def resort(self) -> None:
        """Apply the current sort order again (after batches added with ``sort=False``)."""
        if self._sort_column >= 0:
            super().sort(self._sort_column, self._sort_order)

    def add_children(self, parent_key: tuple[str, ...], matches: list[Match]) -> None:
        """Append a batch of SERIES (or IMAGE) matches under the row with ``parent_key``."""
        parent = self._rows.get(tuple(parent_key))
        if parent is None:
            return
        self._append(parent, _CHILD_KIND[parent.kind], matches)

    def finish_children(self, parent_key: tuple[str, ...], error: str = "") -> None:
        """The sub-level C-FIND ended: an empty row then shows no expander."""
        parent = self._rows.get(tuple(parent_key))
        first = self._index(parent) if parent is not None else QModelIndex()
        if parent is None or not first.isValid():
            return
        self._drop_placeholder(first)
        parent.fetch = "done"
        parent.error = error
        self.setData(first, parent.cached[0])
        if error:
            self.setData(first, error, _TOOLTIP)

    def _drop_placeholder(self, first: QModelIndex) -> None:
        if self.rowCount(first) and self.index(0, 0, first).data(_KEY_ROLE) is None:
            self.removeRow(0, first)

    def _index(self, row: _Row) -> QModelIndex:
        """The column-0 index of ``row`` (invalid when it is not in the tree), found by its key.

        Python keeps no QStandardItem of the model: PySide is not told when C++ deletes an
        item the model created, so a kept wrapper would go stale (and be handed out later
        for another object at that address); looking up by key is a C++ scan, done only on
        the rare paths (a row expanded, a sub-level search ended).
        """
        parent = QModelIndex()
        if row.parent is not None:
            parent = self._index(row.parent)
            if not parent.isValid():
                return QModelIndex()
        if not self.rowCount(parent):
            return QModelIndex()
        hits = self.match(self.index(0, 0, parent), _KEY_ROLE, "\n".join(row.key()), 1,
                          Qt.MatchFlag.MatchExactly)
        return QModelIndex(hits[0]) if hits else QModelIndex()

    def _fill_row(self, row: _Row, position: int, owner_index: QModelIndex) -> None:
        """Give the empty row at ``position`` under ``owner_index`` its cells.

        The cells are created by the model itself (``setItemData`` on an empty cell clones the
        item prototype in C++), one call each with its text and sort key. Building them in
        Python (``QStandardItem(text)`` + ``setFlags`` + ``setData``) cost twice the GUI time
        and left a PySide wrapper alive per cell: 90,000 for 10,000 studies, which every full
        pass of the cyclic garbage collector walked (30-120 ms event-loop stalls measured by
        bench/ui_responsiveness.py). See ``_index`` for why no item wrapper is kept.
        """
        local = row.kind == "study" and row.key()[0] in self._local
        partial = row.kind == "study" and row.key()[0] in self._partial
        index, set_item_data = self.index, self.setItemData
        flip = row.kind != "study" and self._sort_order == Qt.SortOrder.DescendingOrder
        for column, (text, key) in enumerate(zip(row.cached, row.keys)):
            roles = {_DISPLAY: text, SORT_ROLE: -key if flip else key}
            if local:
                roles[LOCAL_ROLE] = True
            if column == 0:
                roles[_KEY_ROLE] = "\n".join(row.key())
                if local:
                    roles[_TOOLTIP] = LOCAL_TOOLTIP
            set_item_data(index(position, column, owner_index), roles)
        first = index(position, 0, owner_index)
        if local:
            self.setData(first, self._icon(), _DECORATION)
            self.setData(first, "complete", PRESENCE_ROLE)
        elif partial:
            self._show_partial(row, first)
        if row.fetch == "none":  # an expander until the children are fetched
            self.insertRows(0, 1, first)
            self.insertColumns(0, 1, first)
            self.setData(index(0, 0, first), _PLACEHOLDER)

    def _append(self, parent: _Row | None, kind: str, matches: list[Match], sort: bool = True) -> None:
        owner_index = QModelIndex()  # the model's top level
        if parent is not None:
            owner_index = self._index(parent)
            if not owner_index.isValid():
                return
        new = []
        for match in matches:
            row = _Row(kind, match, parent)
            key = row.key()
            if key in self._rows or not key[-1]:
                continue  # duplicate response or no unique key: cannot be retrieved anyway
            self._rows[key] = row
            new.append(row)
        if not new:
            return
        if parent is not None:
            self._drop_placeholder(owner_index)
        columns = self.columnCount(owner_index)
        if columns < len(COLUMNS):
            self.insertColumns(columns, len(COLUMNS) - columns, owner_index)
        first = self.rowCount(owner_index)
        self.insertRows(first, len(new), owner_index)  # one rowsInserted for the batch
        for offset, row in enumerate(new):
            self._fill_row(row, first + offset, owner_index)
        if sort and self._sort_column >= 0:
            super().sort(self._sort_column, self._sort_order)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort every level by ``column`` (the view calls this on a header click)."""
        if not 0 <= column < len(COLUMNS):
            return
        if order != self._sort_order:
            self._flip_child_keys()
        self._sort_column, self._sort_order = column, order
        super().sort(column, order)

    def _flip_child_keys(self) -> None:
        """Series and images stay in ascending number order whichever way the studies sort:
        their sort keys change sign with the order (only fetched rows have children)."""
        # an explicit stack: a recursive closure would be a reference cycle holding the model
        stack = [QModelIndex()]
        while stack:
            parent = stack.pop()
            for position in range(self.rowCount(parent)):
                first = self.index(position, 0, parent)
                if parent.isValid():
                    for column in range(len(COLUMNS)):
                        cell = first.siblingAtColumn(column)
                        key = cell.data(SORT_ROLE)
                        if isinstance(key, int):
                            self.setData(cell, -key, SORT_ROLE)
                if self.rowCount(first):
                    stack.append(first)

    # -- reading ---------------------------------------------------------------------------
    def _row(self, index: QModelIndex | QPersistentModelIndex) -> _Row | None:
        if not index.isValid():
            return None
        key = index.siblingAtColumn(0).data(_KEY_ROLE)
        return self._rows.get(tuple(str(key).split("\n"))) if key is not None else None

    def item_at(self, index: QModelIndex) -> tuple[str, Match] | None:
        """(kind, Match) of a row, for retrieve and details."""
        row = self._row(index)
        return (row.kind, row.match) if row is not None else None

    def ancestors(self, index: QModelIndex) -> list[Match]:
        """Matches from the study down to ``index`` (for the retrieve identifier)."""
        row = self._row(index)
        chain = []
        while row is not None:
            chain.append(row.match)
            row = row.parent
        return list(reversed(chain))

    # -- lazy children (called by the view only when a row is expanded) --------------------
    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> bool:
        row = self._row(parent)
        return row is not None and row.fetch == "none"

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> None:
        row = self._row(parent)
        first = self._index(row) if row is not None else QModelIndex()
        if row is None or row.fetch != "none" or not first.isValid():
            return
        row.fetch = "fetching"
        self.setData(first, f"{row.cached[0]}  (searching…)")
        self.children_requested.emit(row.kind, row.key(), row.match)
