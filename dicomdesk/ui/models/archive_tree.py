"""The archive browser's tree: patient -> study -> series -> instance (PS3.4 C.6.1.1 levels),
a lazy model over the archive's index.

The archive may hold a million instances; the window must show it at once, in bounded memory,
without ever stalling the event loop. So nothing is listed whole: the model holds only the rows
the user has reached — the first page of patients, then a page of a level's children when the
user opens its parent (``canFetchMore``/``fetchMore``) or scrolls to the end of what is shown.
Every page is one keyset query of ``archive/browse.py`` (indexed, sorted in SQL) run by
``IndexReader`` on a thread of its own; the GUI thread only inserts the answered page with one
``beginInsertRows``. The counts beside each row come from the index's counters, not from the
loaded children. The search box sets a ``search`` text that the index matches (not the model).

Objects arriving while the server runs are placed by ``add_lineage``: under the parents already
shown, at their sorted place, with the parents' counts refreshed; later pages skip rows already
present, so a row is never shown twice.
"""

from __future__ import annotations

import bisect
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal

from dicomdesk.archive.browse import CHILD, FIELDS as _FIELDS, PAGE, BrowseRow
from dicomdesk.naming import uid_name
from dicomdesk.units import human_size

__all__ = ["ArchiveTreeModel", "IndexReader", "KIND_ROLE", "PATH_ROLE", "UID_ROLE"]

_log = logging.getLogger(__name__)

#: "patient" | "study" | "series" | "instance"
KIND_ROLE = int(Qt.ItemDataRole.UserRole) + 1
#: the level's unique key (PatientID, Study/Series/SOP Instance UID)
UID_ROLE = int(Qt.ItemDataRole.UserRole) + 2
#: absolute path of an instance's file
PATH_ROLE = int(Qt.ItemDataRole.UserRole) + 3

COLUMNS = ("Patient / Study / Series / Instance", "Date / Number", "Modality / Class",
           "Description", "Count / Size", "UID")

#: Opens the index to read (an ``archive.Index`` or None when there is no archive yet) and says
#: whether the reader must close it when done.
IndexOpener = Callable[[], "tuple[Any, bool]"]


def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:]}" if len(text) == 8 and text.isdigit() else text


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _cells(row: BrowseRow) -> tuple[str, ...]:
    """The six column texts of a row."""
    v = dict(zip(_FIELDS[row.kind], row.values))
    if row.kind == "patient":
        name = str(v["patient_name"] or "").replace("^", " ").strip() or "(no name)"
        pid = v["patient_id"]
        return (name, _date(str(v["birth_date"] or "")), "", f"Sex {v['sex']}" if v["sex"] else "",
                f"{_plural(int(v['num_studies'] or 0), 'study', 'studies')}, "
                f"{int(v['num_instances'] or 0)} instance(s)",
                f"ID {pid}" if pid else "(no patient ID)")
    if row.kind == "study":
        acc = v["accession_number"]
        return (f"Study {acc}".strip() if acc else "Study", _date(str(v["study_date"] or "")),
                str(v["modalities"] or "").replace(",", "\\"), str(v["study_description"] or ""),
                f"{int(v['num_series'] or 0)} series, {int(v['num_instances'] or 0)} instance(s)",
                row.uid)
    if row.kind == "series":
        number = "" if v["series_number"] is None else str(v["series_number"])
        return (f"Series {number}".strip(), number, str(v["modality"] or ""),
                str(v["series_description"] or ""), f"{int(v['num_instances'] or 0)} instance(s)",
                row.uid)
    number = "" if v["instance_number"] is None else str(v["instance_number"])
    return (f"Instance {number}".strip(), number, uid_name(str(v["sop_class_uid"] or ""), short=True), "",
            human_size(int(v["file_size"] or 0)), row.uid)



class _Node:
    """A row the model holds: its ``BrowseRow``, its loaded children, its paging state."""

    __slots__ = ("row", "parent", "children", "uids", "cursor", "complete", "fetching",
                 "started", "pos", "cells", "alive")

    def __init__(self, row: BrowseRow | None, parent: _Node | None) -> None:
        self.row = row
        self.parent = parent
        self.children: list[_Node] = []
        self.uids: set[str] = set()
        #: key of the last row paging returned (the next page starts after it)
        self.cursor: tuple | None = None
        self.complete = row is not None and (row.kind == "instance" or row.children == 0)
        self.fetching = False
        self.started = False   # a first page was asked for
        self.pos = 0           # index in parent.children
        self.cells: tuple[str, ...] | None = None
        self.alive = True

    @property
    def kind(self) -> str:
        return self.row.kind if self.row is not None else ""

    def keys(self) -> list[tuple]:
        return [c.row.key for c in self.children]  # type: ignore[union-attr]


class IndexReader(QObject):
    """Runs the browser's index queries on a thread of its own, in order, and answers with
    ``answered(ticket, result)`` on the GUI thread (a queued signal). One thread: the pages a
    user asks for come one after another, and none of them waits behind a long one of ours."""

    #: (ticket, result) of one query, queued to the GUI thread (one answer per request: not a
    #: stream of values, so not a ThreadRelay)
    answered = Signal(object, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: queue.SimpleQueue[tuple[Any, Callable[[Any], Any]] | None] = queue.SimpleQueue()
        self._opener: IndexOpener | None = None
        self._index: Any = None
        self._owned = False
        self._opened_for: IndexOpener | None = None
        self._thread = threading.Thread(target=self._run, name="archive-browser", daemon=True)
        self._thread.start()

    def set_opener(self, opener: IndexOpener | None) -> None:
        """Where the next queries read (applied in order with the queued queries)."""
        self.submit(None, lambda _index: self._switch(opener))

    def submit(self, ticket: Any, query: Callable[[Any], Any]) -> None:
        """Run ``query(index)`` (index None: no archive) and answer ``(ticket, result)``;
        ticket None: no answer. A failing query answers its exception."""
        self._jobs.put((ticket, query))

    def close(self) -> None:
        self._jobs.put(None)

    def _switch(self, opener: IndexOpener | None) -> None:
        self._release()
        self._opener = opener

    def _release(self) -> None:
        index, owned = self._index, self._owned
        self._index, self._owned, self._opened_for = None, False, None
        if index is not None and owned:
            try:
                index.close()
            except Exception:
                _log.exception("closing the browser's index")

    def _current(self) -> Any:
        if self._opener is not None and self._opened_for is not self._opener:
            self._release()
            self._index, self._owned = self._opener()
            self._opened_for = self._opener
        return self._index

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self._release()
                return
            ticket, query = job
            try:
                result = query(self._current()) if ticket is not None else query(None)
            except Exception as exc:  # an unreadable index: the browser says why
                _log.warning("archive browser query failed: %s", exc)
                self._release()
                self._opened_for = None
                result = exc
            if ticket is not None:
                try:
                    self.answered.emit(ticket, result)
                except RuntimeError:  # the window is gone
                    return


class ArchiveTreeModel(QAbstractItemModel):
    """Patient/study/series/instance rows read page by page from the archive's index."""

    #: a page or a set of arrivals was inserted (tests and the status line wait for it)
    rows_loaded = Signal()
    #: totals of the archive (patients, studies, instances) were read
    totals_changed = Signal(object)
    #: a query failed: the sentence to show
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None, page: int = PAGE) -> None:
        super().__init__(parent)
        self.page = page
        self.root = Path()
        self.search = ""
        self.totals: dict[str, int] = {}
        self._tree = _Node(None, None)
        self._tree.complete = True  # nothing to read before ``open``
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._generation = 0
        self._opener: IndexOpener | None = None
        self._reader = IndexReader(self)
        self._reader.answered.connect(self._answered)
        self._pending_reveal: dict[str, int] = {}

    # -- source ------------------------------------------------------------------------------
    def open(self, root: Path, opener: IndexOpener | None, search: str | None = None) -> None:
        """Show the archive at ``root`` (read through ``opener``) from its first page: first
        load, storage folder changed, Refresh, a new search."""
        self.beginResetModel()
        self._generation += 1
        for node in self._nodes.values():
            node.alive = False
        self._tree = _Node(None, None)
        self._nodes.clear()
        self.root = Path(root)
        if search is not None:
            self.search = search.strip()
        self.endResetModel()
        self._opener = opener
        self._reader.set_opener(opener)
        self.refresh_totals()  # answered before the first page: counts are right when it shows
        self._request_page(self._tree)

    def set_source(self, opener: IndexOpener | None) -> None:
        """Read the same archive through another index connection (the running server's, or
        a read-only one of our own): the rows shown stay; the counts are read again."""
        self._opener = opener
        self._reader.set_opener(opener)
        self.refresh_totals()

    def set_search(self, text: str) -> None:
        """Filter the patient level by the index (see ``browse.Search``); '' shows all."""
        if text.strip() != self.search:
            self.open(self.root, self._opener, text)

    def close(self) -> None:
        self._reader.close()

    def refresh_totals(self) -> None:
        self._reader.submit(("totals", self._generation),
                            lambda index: index.browse_totals() if index is not None else {})

    # -- paging ------------------------------------------------------------------------------
    def _request_page(self, node: _Node) -> None:
        if node.complete or node.fetching:
            return
        node.fetching = True
        node.started = True
        kind = CHILD[node.kind]
        ref = node.row.ref if node.row is not None else None
        after, limit, search = node.cursor, self.page, self.search
        level_search = search if kind in ("patient", "study") else ""

        def query(index: Any) -> list[BrowseRow]:
            if index is None:
                return []
            return index.browse(kind, ref, after, limit, level_search)

        self._reader.submit(("page", self._generation, node), query)

    def _answered(self, ticket: tuple, result: Any) -> None:
        what, generation = ticket[0], ticket[1]
        if generation != self._generation:
            return
        if isinstance(result, Exception):
            if what == "page":
                ticket[2].fetching = False
                ticket[2].complete = True  # no retry loop on a broken index; Refresh retries
            self.failed.emit(f"Cannot read the archive: {result}")
            return
        if what == "totals":
            self.totals = dict(result)
            self.totals_changed.emit(self.totals)
        elif what == "page":
            self._page_loaded(ticket[2], result)
        elif what == "lineage":
            self.add_lineage(result, reveal=ticket[2])

    def _page_loaded(self, node: _Node, rows: list[BrowseRow]) -> None:
        if not node.alive:
            return
        node.fetching = False
        if len(rows) < self.page:
            node.complete = True
        if rows:
            node.cursor = rows[-1].key
        fresh = [r for r in rows if r.uid not in node.uids]
        if fresh:
            keys = node.keys()
            if not keys or fresh[0].key > keys[-1]:
                self._insert(node, len(node.children), fresh)
            else:  # rows placed earlier by an arrival sit among these: one by one
                for r in fresh:
                    self._insert(node, bisect.bisect(node.keys(), r.key), [r])
        self.rows_loaded.emit()

    def _insert(self, parent: _Node, position: int, rows: Sequence[BrowseRow]) -> None:
        nodes = [_Node(r, parent) for r in rows]
        self.beginInsertRows(self._index_of(parent), position, position + len(nodes) - 1)
        parent.children[position:position] = nodes
        for i in range(position, len(parent.children)):
            parent.children[i].pos = i
        for n in nodes:
            parent.uids.add(n.row.uid)  # type: ignore[union-attr]
            self._nodes[(n.kind, n.row.uid)] = n  # type: ignore[union-attr]
        self.endInsertRows()

    # -- arrivals ----------------------------------------------------------------------------
    def arrived(self, sop_instance_uids: Sequence[str]) -> None:
        """Objects just stored: read their rows (in the reader) and place them."""
        uids = list(sop_instance_uids)
        if uids:
            self._reader.submit(("lineage", self._generation, False),
                                lambda index: index.browse_lineage(uids) if index is not None else [])
            self.refresh_totals()

    def reveal(self, sop_instance_uid: str) -> None:
        """Load the patient/study/series of an instance and the instance itself, wherever they
        sort (the received-objects list shows older objects this way)."""
        self._reader.submit(("lineage", self._generation, True),
                            lambda index: index.browse_lineage([sop_instance_uid])
                            if index is not None else [])

    def add_lineage(self, lineages: Sequence[tuple[BrowseRow, ...]], reveal: bool = False) -> int:
        """Place (patient, study, series, instance) rows under the parents shown; update the
        counts of the rows already shown. Returns how many instances were inserted."""
        added = 0
        for chain in lineages:
            parent = self._tree
            for depth, row in enumerate(chain):
                node = self._nodes.get((row.kind, row.uid))
                if node is not None and node.parent is parent:
                    self._update(node, row)
                    parent = node
                    continue
                # a parent the user never opened loads its children when opened; a filtered
                # level (search) shows only what the index matched
                if not reveal and (not parent.started or (self.search and depth < 2)):
                    break
                self._insert(parent, bisect.bisect(parent.keys(), row.key), [row])
                node = parent.children[bisect.bisect(parent.keys(), row.key) - 1]
                if reveal:
                    node.started = True
                    node.cursor = None  # paging still starts at the first row
                parent = node
                if row.kind == "instance":
                    added += 1
        self.rows_loaded.emit()
        return added

    def _update(self, node: _Node, row: BrowseRow) -> None:
        if node.row == row:
            return
        node.row = row
        node.cells = None
        if not node.complete or row.children > len(node.children):
            node.complete = row.kind == "instance" or (node.started is False and row.children == 0)
        index = self._index_of(node)
        self.dataChanged.emit(index, index.siblingAtColumn(len(COLUMNS) - 1))

    def remove_study(self, study_uid: str) -> bool:
        """Drop a study's rows (and its patient's row when it was the patient's last study)."""
        node = self._nodes.get(("study", study_uid))
        if node is None:
            return False
        patient = node.parent
        assert patient is not None
        self._remove(node)
        if patient.row is not None and not patient.children and patient.complete:
            self._remove(patient)
        self.refresh_totals()
        return True

    def remove_empty_patients(self, refs: Sequence[object]) -> None:
        """Drop the rows of these patients (index keys, ``patient_of_study``) that show no
        study any more: the index said none is left. A patient whose studies were not all
        read (a page not loaded yet) cannot be judged by ``remove_study`` alone."""
        for node in [n for n in self._tree.children if n.row.ref in refs and not n.children]:  # type: ignore[union-attr]
            self._remove(node)

    def patient_of_study(self, study_uid: str) -> object:
        """The index key of the patient row a loaded study is shown under (None: not shown)."""
        node = self._nodes.get(("study", study_uid))
        patient = node.parent if node is not None else None
        return patient.row.ref if patient is not None and patient.row is not None else None

    def _remove(self, node: _Node) -> None:
        parent = node.parent
        assert parent is not None
        self.beginRemoveRows(self._index_of(parent), node.pos, node.pos)
        del parent.children[node.pos]
        for i in range(node.pos, len(parent.children)):
            parent.children[i].pos = i
        parent.uids.discard(node.row.uid)  # type: ignore[union-attr]
        stack = [node]
        while stack:
            n = stack.pop()
            n.alive = False
            self._nodes.pop((n.kind, n.row.uid), None)  # type: ignore[union-attr]
            stack.extend(n.children)
        self.endRemoveRows()

    # -- Qt model interface ------------------------------------------------------------------
    def _node(self, index: QModelIndex | QPersistentModelIndex) -> _Node:
        return index.internalPointer() if index.isValid() else self._tree  # type: ignore[return-value]

    def _index_of(self, node: _Node, column: int = 0) -> QModelIndex:
        if node.row is None:
            return QModelIndex()
        return self.createIndex(node.pos, column, node)

    def index(self, row: int, column: int,
              parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> QModelIndex:
        node = self._node(parent)
        if 0 <= row < len(node.children) and 0 <= column < len(COLUMNS):
            return self.createIndex(row, column, node.children[row])
        return QModelIndex()

    def parent(self, index: QModelIndex | QPersistentModelIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        parent = self._node(index).parent
        return self._index_of(parent) if parent is not None else QModelIndex()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self._node(parent).children)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return len(COLUMNS)

    def hasChildren(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:
        node = self._node(parent)
        if node.row is None:
            return bool(node.children) or not node.complete
        if parent.column() != 0 or node.kind == "instance":
            return False
        return bool(node.children) or node.row.children > 0

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> bool:
        """Only a level's first page: QTreeView asks at every layout of an open level, and a
        "yes" after each page would read the whole level. Later pages are asked for by the
        browser when the end of what is loaded comes into view (``fetch_next``)."""
        node = self._node(parent)
        return node.alive and not node.started and not node.complete and node.kind != "instance"

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> None:
        node = self._node(parent)
        if node.alive and node.kind != "instance" and not node.started:
            self._request_page(node)

    def has_more(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:
        """Rows of this level are still unread (after the first page)."""
        node = self._node(parent)
        return node.alive and node.started and not node.complete

    def fetch_next(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> None:
        """Read the next page of this level (once at a time)."""
        if self.has_more(parent):
            self._request_page(self._node(parent))

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node = self._node(index)
        row = node.row
        assert row is not None
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            if node.cells is None:
                node.cells = _cells(row)
            return node.cells[index.column()]
        if index.column() != 0:
            return None
        if role == KIND_ROLE:
            return row.kind
        if role == UID_ROLE:
            return row.uid
        if role == PATH_ROLE and row.kind == "instance":
            return str(self.root / str(row.get("path")))
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    # -- reading -----------------------------------------------------------------------------
    def find(self, kind: str, uid: str) -> QModelIndex:
        node = self._nodes.get((kind, uid))
        return self._index_of(node) if node is not None else QModelIndex()

    def count(self, kind: str) -> int:
        """Entities of a level in the archive (the index's count, not what is loaded)."""
        return int(self.totals.get(kind, 0))

    def loaded(self, kind: str | None = None) -> int:
        """Rows the model holds (of one level, or all): what laziness keeps small."""
        if kind is None:
            return len(self._nodes)
        return sum(1 for k, _ in self._nodes if k == kind)

    def fetching(self) -> bool:
        """A page is being read (tests wait for the browser to settle)."""
        return any(n.fetching for n in self._nodes.values()) or self._tree.fetching

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
        """The loaded studies a selected row stands for (a patient row: those loaded; see
        ``patient_ref`` for the rest)."""
        index = index.siblingAtColumn(0)
        if self.kind(index) == "patient":
            node = self._node(index)
            return [c.row.uid for c in node.children]  # type: ignore[union-attr]
        study = self.study_of(index)
        return [study] if study else []

    def patient_ref(self, index: QModelIndex) -> object:
        """The index key of a patient row whose studies are not all loaded (None otherwise):
        a worker lists them with ``Index.browse("study", ref)``."""
        index = index.siblingAtColumn(0)
        if self.kind(index) != "patient":
            return None
        node = self._node(index)
        return None if node.complete else node.row.ref  # type: ignore[union-attr]
