"""The forward queue in the index: received objects to send on to nodes of the address
book, with their attempts (``ForwardQueue``, a part of ``Index``; ``forwarding.py`` works it)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .index_writer import settled

@dataclass(frozen=True)
class ForwardItem:
    """A row of the forward queue (received objects to send on to nodes, ``forwarding.py``)."""

    id: int
    sop_instance_uid: str
    destination: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str


class ForwardQueue:
    """The forward queue's part of ``Index`` (its connection, lock and ``_write``)."""

    _conn: sqlite3.Connection
    _lock: threading.RLock
    _write: Any

    # ---------------------------------------------------------------- forward queue

    @settled
    def enqueue_forward(self, sop_instance_uid: str, destination: str, now: float) -> None:
        """Queue (or re-arm) forwarding of an instance to a node of the address book."""
        self.enqueue_forwards(sop_instance_uid, [destination], now)

    @settled
    def enqueue_forwards(self, sop_instance_uid: str, destinations: Iterable[str], now: float) -> None:
        """Queue an instance for several nodes in one transaction; an instance received again
        is re-armed with a fresh attempt count (it is a new copy to deliver)."""
        with self._write() as c:
            c.executemany(
                "INSERT INTO forward_queue (sop_instance_uid, destination, next_attempt_at) "
                "VALUES (?, ?, ?) ON CONFLICT(sop_instance_uid, destination) DO UPDATE SET "
                "state = 'pending', attempts = 0, last_error = '', "
                "next_attempt_at = excluded.next_attempt_at",
                [(sop_instance_uid, d, now) for d in destinations])

    @settled
    def due_forwards(self, now: float, limit: int = 100) -> list[ForwardItem]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, sop_instance_uid, destination, state, attempts, next_attempt_at, last_error "
                "FROM forward_queue WHERE state = 'pending' AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, id LIMIT ?", (now, limit)).fetchall()
        return [ForwardItem(*r) for r in rows]

    @settled
    def next_forward_at(self) -> float | None:
        """When the earliest pending forward is due (``None``: nothing pending); the forwarder
        sleeps until then instead of polling."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(next_attempt_at) FROM forward_queue WHERE state = 'pending'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @settled
    def forwards(self, sop_instance_uid: str | None = None) -> list[ForwardItem]:
        """Forward queue rows (all, or those of one instance): the state the user sees."""
        sql = ("SELECT id, sop_instance_uid, destination, state, attempts, next_attempt_at, last_error "
               "FROM forward_queue")
        params: tuple = ()
        if sop_instance_uid is not None:
            sql += " WHERE sop_instance_uid = ?"
            params = (sop_instance_uid,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id", params).fetchall()
        return [ForwardItem(*r) for r in rows]

    @settled
    def modality_of(self, sop_instance_uid: str) -> str:
        """The Modality of an instance's series ('' if unknown), for forwarding rules."""
        with self._lock:
            row = self._conn.execute(
                "SELECT se.modality FROM instance i JOIN series se ON i.series_uid = se.series_uid "
                "WHERE i.sop_instance_uid = ?", (sop_instance_uid,)).fetchone()
        return row[0] if row is not None and row[0] else ""

    @settled
    def mark_forward(self, item_id: int, *, state: str, error: str = "",
                     next_attempt_at: float | None = None) -> None:
        """Record an attempt: ``state`` is "done", "failed" (given up) or "pending" (retry at
        ``next_attempt_at``)."""
        if state not in ("done", "failed", "pending"):
            raise ValueError(f"unknown forward state {state!r}")
        with self._write() as c:
            c.execute("UPDATE forward_queue SET state = ?, attempts = attempts + 1, last_error = ?, "
                      "next_attempt_at = COALESCE(?, next_attempt_at) WHERE id = ?",
                      (state, error, next_attempt_at, item_id))
