"""The protocol inspector's data: trace records captured off the network threads, and a model.

The network stack logs each association's PDUs (PS3.8 9.3), association events (PS3.8 7.1-7.3)
and DIMSE messages (PS3.7 9.3) to the logger ``dicomdesk.net.trace`` at DEBUG; each record carries
``assoc_id``, ``assoc_label``, ``layer``, ``direction``, ``elapsed_ms`` and ``dataset``. The UI
never imports the network stack: :class:`TraceCapture` attaches a ``logging.Handler`` to that
logger *by name* and raises the logger to DEBUG only while recording, so a window that does not
record costs the network nothing (the stack checks ``isEnabledFor(DEBUG)`` first).

Records arrive on network threads (a requester's worker, the local server's association
threads). The handler turns each into an immutable :class:`TraceEntry` and puts it into a
``ThreadRelay`` (workers.py, the relay workers and the in-window server use too), whose GUI-thread
QTimer moves the batch into :class:`TraceLogModel`.
Patient data (the data set, rendered as text) is kept with its entry but shown only when the
user turns it on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt, \
    Signal

from dicomdesk.ui.workers import ThreadRelay

__all__ = ["LAYERS", "TRACE_LOGGER", "TraceCapture", "TraceEntry", "TraceFilter", "TraceLogModel"]

_log = logging.getLogger(__name__)

TRACE_LOGGER = "dicomdesk.net.trace"
#: The trace's layers, in the order the filter shows them.
LAYERS = ("association", "dimse", "pdu")
#: Entries kept; the oldest go first (a long session must not grow without bound).
MAX_ENTRIES = 50_000
DRAIN_INTERVAL_MS = 100
_ARROWS = {"sent": "→", "received": "←", "local": "·"}


@dataclass(frozen=True)
class TraceEntry:
    """One trace record as plain values (safe to pass between threads)."""

    wall_time: float
    assoc_id: int
    assoc_label: str
    layer: str
    direction: str
    elapsed_ms: float
    text: str
    dataset_text: str = ""  # patient data: shown only on request

    def line(self, show_data: bool = False) -> str:
        """The entry as one line of text (plus the data set's lines when allowed)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.wall_time))
        arrow = _ARROWS.get(self.direction, " ")
        text = (f"{stamp} [{self.assoc_label}] +{self.elapsed_ms:.1f} ms {self.layer} "
                f"{arrow} {self.text}")
        if show_data and self.dataset_text:
            text += "\n" + "\n".join("    " + row for row in self.dataset_text.splitlines())
        return text


def entry_from_record(record: logging.LogRecord) -> TraceEntry:
    """A TraceEntry from a trace log record (runs on the network thread: keep it cheap)."""
    dataset = getattr(record, "dataset", None)
    dataset_text = ""
    if dataset is not None:
        try:
            dataset_text = str(dataset)
        except Exception as exc:  # a broken data set must not break the association
            dataset_text = f"(data set cannot be shown: {exc})"
    return TraceEntry(
        record.created, int(getattr(record, "assoc_id", 0) or 0),
        str(getattr(record, "assoc_label", "?")), str(getattr(record, "layer", "?")),
        str(getattr(record, "direction", "")), float(getattr(record, "elapsed_ms", 0.0) or 0.0),
        record.getMessage(), dataset_text)


class _RelayHandler(logging.Handler):
    """Puts each record, as a TraceEntry, into a ``ThreadRelay``: a lock and a list, nothing
    Qt happens on the calling (network) thread."""

    def __init__(self, relay: ThreadRelay) -> None:
        super().__init__(logging.DEBUG)
        self._relay = relay

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = entry_from_record(record)
        except Exception:
            self.handleError(record)
            return
        self._relay.put(entry)


class TraceCapture(QObject):
    """Records the trace while ``recording``; emits batches of TraceEntry on the GUI thread."""

    #: ``list[TraceEntry]``, in the order the network threads logged them (``object``: see
    #: ``ThreadRelay.batch``)
    entries = Signal(object)
    #: True when recording starts, False when it stops
    recording_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._relay = ThreadRelay(self, interval_ms=DRAIN_INTERVAL_MS)
        self._relay.batch.connect(self.entries)
        self._handler = _RelayHandler(self._relay)
        self._saved_level: int | None = None
        # stop listening when this object goes away, without touching the deleted object
        handler = self._handler
        self.destroyed.connect(lambda *_: _detach(handler, None))

    @property
    def recording(self) -> bool:
        return self._saved_level is not None

    def start(self) -> None:
        if self.recording:
            return
        logger = logging.getLogger(TRACE_LOGGER)
        self._saved_level = logger.level
        logger.addHandler(self._handler)
        logger.setLevel(logging.DEBUG)
        self._relay.start()
        self.recording_changed.emit(True)

    def stop(self) -> None:
        if not self.recording:
            return
        _detach(self._handler, self._saved_level)
        self._saved_level = None
        self._relay.stop()
        self.recording_changed.emit(False)

    def set_recording(self, on: bool) -> None:
        self.start() if on else self.stop()

    def drain(self) -> None:
        """Deliver what was captured so far now (GUI thread)."""
        self._relay.drain()


def _detach(handler: logging.Handler, saved_level: int | None) -> None:
    """Remove ``handler``; restore the logger's level once nobody else records."""
    logger = logging.getLogger(TRACE_LOGGER)
    logger.removeHandler(handler)
    if not any(isinstance(h, _RelayHandler) for h in logger.handlers):
        logger.setLevel(saved_level if saved_level is not None else logging.NOTSET)


@dataclass(frozen=True)
class TraceFilter:
    """What the inspector shows: one association (None: all), these layers, patient data?"""

    assoc_id: int | None = None
    layers: frozenset = frozenset({"association", "dimse"})
    show_data: bool = False

    def accepts(self, entry: TraceEntry) -> bool:
        return entry.layer in self.layers and (self.assoc_id is None or entry.assoc_id == self.assoc_id)


COLUMNS = ("Time", "Association", "+ms", "Layer", "Dir.", "Message")


class TraceLogModel(QAbstractTableModel):
    """All captured entries, of which the filtered ones are the rows."""

    #: association ids/labels changed (id -> latest label)
    associations_changed = Signal(object)

    def __init__(self, parent: QObject | None = None, max_entries: int = MAX_ENTRIES) -> None:
        super().__init__(parent)
        self._entries: list[TraceEntry] = []
        self._visible: list[TraceEntry] = []
        self._filter = TraceFilter()
        self._labels: dict[int, str] = {}
        self._max = max_entries

    # -- content -----------------------------------------------------------------------------
    def add_entries(self, entries: list[TraceEntry]) -> None:
        """Append a batch (one insert for the rows that pass the filter)."""
        self._entries.extend(entries)
        labels_before = dict(self._labels)
        for entry in entries:
            self._labels[entry.assoc_id] = entry.assoc_label
        if len(self._entries) > self._max:
            del self._entries[: len(self._entries) - self._max]
            self._refilter()
        else:
            shown = [e for e in entries if self._filter.accepts(e)]
            if shown:
                first = len(self._visible)
                self.beginInsertRows(QModelIndex(), first, first + len(shown) - 1)
                self._visible.extend(shown)
                self.endInsertRows()
        if self._labels != labels_before:
            self.associations_changed.emit(dict(self._labels))

    def clear(self) -> None:
        self.beginResetModel()
        self._entries, self._visible, self._labels = [], [], {}
        self.endResetModel()
        self.associations_changed.emit({})

    def set_filter(self, trace_filter: TraceFilter) -> None:
        if trace_filter != self._filter:
            self._filter = trace_filter
            self._refilter()

    @property
    def filter(self) -> TraceFilter:
        return self._filter

    def _refilter(self) -> None:
        self.beginResetModel()
        self._visible = [e for e in self._entries if self._filter.accepts(e)]
        self.endResetModel()

    def associations(self) -> dict[int, str]:
        return dict(self._labels)

    def visible_entries(self) -> list[TraceEntry]:
        return list(self._visible)

    def visible_lines(self) -> list[str]:
        """The visible rows as text (what Export writes), patient data only if shown."""
        return [e.line(self._filter.show_data) for e in self._visible]

    # -- Qt model ------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._visible)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._visible):
            return None
        entry = self._visible[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return time.strftime("%H:%M:%S", time.localtime(entry.wall_time))
            if column == 1:
                return entry.assoc_label
            if column == 2:
                return f"{entry.elapsed_ms:.1f}"
            if column == 3:
                return entry.layer
            if column == 4:
                return _ARROWS.get(entry.direction, "")
            if column == 5:
                if self._filter.show_data and entry.dataset_text:
                    return f"{entry.text}\n{entry.dataset_text}"
                return entry.text
        if role == Qt.ItemDataRole.ToolTipRole and column == 4:
            return entry.direction
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None
