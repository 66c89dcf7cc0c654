"""The Server panel's logs: one row per association (PS3.8 7.1-7.3: opened, then released,
aborted or rejected, updated in place with the objects received on it), the last
``STORED_LIMIT`` objects received (C-STORE, PS3.4 B.2) and the forwarding events.

Events come from ``ServerHost`` signals (already batched on the GUI thread); nothing here reads
the disk or the index: the archive browser shows every object.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from dicomdesk.naming import uid_name
from dicomdesk.ui.models.records import RecordTableModel
from dicomdesk.ui.server_host import AssociationState
from dicomdesk.units import human_size

__all__ = ["ASSOCIATION_COLUMNS", "FORWARD_COLUMNS", "STORED_COLUMNS", "STORED_LIMIT",
           "ServerLogs", "log_table"]


#: Rows the received-objects list keeps (the newest); the archive browser shows every object.
STORED_LIMIT = 1_000

def _now() -> str:
    return _dt.datetime.now().strftime("%H:%M:%S")


class _Stamped:
    """A server event with the time the window saw it (events carry no wall-clock time);
    ``objects`` is the number of objects received on an association (log rows only)."""

    __slots__ = ("time", "event", "objects")

    def __init__(self, event: Any, objects: int = 0, time: str | None = None) -> None:
        self.time = time or _now()
        self.event = event
        self.objects = objects


def _contexts(event: Any) -> str:
    """Accepted abstract syntaxes; the server reports them by name already, UIDs are named."""
    contexts = getattr(event, "contexts", None)
    if not contexts:
        return ""
    try:
        return ", ".join(uid_name(str(c)) if str(c)[:1].isdigit() else str(c) for c in contexts)
    except TypeError:
        return str(contexts)


ASSOCIATION_COLUMNS = [
    ("Time", lambda r: r.time),
    ("Peer", lambda r: str(r.event.peer_address)),
    ("Calling AE", lambda r: r.event.calling_aet),
    ("Called AE", lambda r: r.event.called_aet),
    ("Result", lambda r: r.event.state),
    ("Objects", lambda r: str(r.objects)),
    ("Duration", lambda r: f"{r.event.duration_s:.2f} s"
     if r.event.duration_s is not None and r.event.state != AssociationState.OPEN else ""),
    ("Accepted contexts", lambda r: _contexts(r.event)),
    ("Reason", lambda r: r.event.reason or ""),
]
STORED_COLUMNS = [
    ("Time", lambda r: r.time),
    ("Patient", lambda r: str(r.event.patient_name or "").replace("^", " ")),
    ("SOP class", lambda r: uid_name(str(r.event.sop_class_uid))),
    ("From", lambda r: r.event.calling_aet or ""),
    ("Size", lambda r: human_size(r.event.size or 0)),
    ("SOP instance UID", lambda r: r.event.sop_instance_uid),
    ("File", lambda r: str(r.event.path) if r.event.path else f"not stored: {r.event.error}"),
]

FORWARD_COLUMNS = [
    ("Time", lambda r: r.time),
    ("SOP instance UID", lambda r: r.event.sop_instance_uid),
    ("Destination", lambda r: r.event.destination),
    ("State", lambda r: r.event.state),
    ("Attempts", lambda r: str(r.event.attempts)),
    ("Error", lambda r: r.event.error or ""),
]


def log_table(parent: QWidget, model: RecordTableModel) -> QTableView:
    """A read-only log view: whole rows, one line each, columns the user can widen."""
    view = QTableView(parent)
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.verticalHeader().setVisible(False)
    view.horizontalHeader().setStretchLastSection(True)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)  # one line per row: a burst of objects stays readable
    return view


class ServerLogs(QObject):
    """The three log models and their views (the panel puts the views in its tabs)."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.associations = RecordTableModel(ASSOCIATION_COLUMNS, parent=self)
        # the last STORED_LIMIT objects; older ones are in the archive browser
        self.stored = RecordTableModel(STORED_COLUMNS, limit=STORED_LIMIT, parent=self)
        self.forwarding = RecordTableModel(FORWARD_COLUMNS, parent=self)
        self.association_view = log_table(parent, self.associations)
        self.stored_view = log_table(parent, self.stored)
        self.stored_view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.stored_view.setToolTip(f"The last {STORED_LIMIT:,} objects received; older ones are "
                                    "in the Archive tab. Double-click: show it there.")
        self.forwarding_view = log_table(parent, self.forwarding)
        self._open_rows: dict[tuple[str, str], _Stamped] = {}

    def add_associations(self, records: list[Any]) -> None:
        """An association is one row: "open" appends it, its end updates it in place."""
        fresh: list[_Stamped] = []
        for record in records:
            event = getattr(record, "event", record)
            objects = int(getattr(record, "objects", 0))
            key = (str(event.peer_address), str(event.calling_aet))
            if event.state == AssociationState.OPEN:
                row = _Stamped(event, objects)
                self._open_rows[key] = row
                fresh.append(row)
                continue
            opened = self._open_rows.pop(key, None)
            if opened is not None and opened in fresh:
                fresh[fresh.index(opened)] = _Stamped(event, objects, opened.time)
            elif opened is None or not self.associations.replace(
                    opened, _Stamped(event, objects, opened.time)):
                fresh.append(_Stamped(event, objects))
        self.associations.append(fresh)

    def update_open_associations(self, records: list[Any]) -> None:
        """Objects counted while the association is still open (the row updates in place)."""
        for record in records:
            event = record.event
            key = (str(event.peer_address), str(event.calling_aet))
            opened = self._open_rows.get(key)
            if opened is None:
                continue
            row = _Stamped(opened.event, int(record.objects), opened.time)
            if self.associations.replace(opened, row):
                self._open_rows[key] = row

    def add_stored(self, objects: list[Any]) -> None:
        self.stored.append([_Stamped(o) for o in objects])

    def add_forwarded(self, events: list[Any]) -> None:
        self.forwarding.append([_Stamped(e) for e in events])

    def stored_paths(self) -> list[str]:
        """The files of the selected received objects (of all of them when none is selected)."""
        rows = sorted({i.row() for i in self.stored_view.selectionModel().selectedRows()})
        rows = rows or list(range(self.stored.rowCount()))
        return [str(self.stored.record(r).event.path) for r in rows
                if getattr(self.stored.record(r).event, "path", None)]
