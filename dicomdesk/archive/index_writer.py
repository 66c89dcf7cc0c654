"""Writing the index: upserts (one at a time, in batches, or behind the C-STORE response),
removals, flags and the copies a newer one replaced (``IndexWriter``, a part of ``Index``).

The write-behind (``upsert_later``) queues a row and returns: a helper thread writes the rows
queued meanwhile in one transaction. Every reader first waits for what was queued before it
(``settled``), so the write-behind is invisible to readers.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import matching
from .schema import InstanceRecord, UpsertDone, _INSTANCE_FACTS, _PATIENT_ID_AT, _level_row, _upsert_sql
from .write_behind import WriteBehind

logger = logging.getLogger("dicomdesk.archive.index")

#: How long queued rows wait for more before their transaction (a burst of C-STOREs becomes
#: one commit); readers never wait for it (``WriteBehind.wait_idle`` flushes at once).
WRITE_BEHIND_LINGER_S = 0.02


#: The write-behind queue of each index file open for writing in this process (resolved
#: path -> queue): a second ``Index`` on the same file, read-only (a retrieve checking what
#: is local, the archive browser), waits for it too.
_WRITERS: weakref.WeakValueDictionary[str, WriteBehind] = weakref.WeakValueDictionary()
_WRITERS_LOCK = threading.Lock()


def settled(method: Callable) -> Callable:
    """Run ``method`` once every ``upsert_later`` handed over before the call is written, by
    this index or by another in this process on the same file: whoever got a C-STORE
    response sees that object in the next query (read your writes)."""
    @functools.wraps(method)
    def wrapper(self: Any, *args: object, **kwargs: object) -> object:
        behind = self._behind
        if behind is None:
            with _WRITERS_LOCK:
                behind = _WRITERS.get(self._key)
        if behind is not None:
            behind.wait_idle()
        return method(self, *args, **kwargs)
    return wrapper


class IndexWriter:
    """The writing part of ``Index`` (its connection ``_conn``, writer lock ``_lock``,
    write-behind ``_behind`` and ``read_only`` are ``Index``'s)."""

    _conn: sqlite3.Connection
    _lock: threading.RLock
    _behind: WriteBehind | None
    read_only: bool
    after_write_behind: Callable[[], None] | None

    # ---------------------------------------------------------------- writing

    def _write(self) -> _Transaction:
        if self.read_only:
            raise PermissionError("the archive index is open read-only")
        return _Transaction(self._conn, self._lock)

    def upsert_later(self, rec: InstanceRecord, done: UpsertDone | None = None) -> None:
        """Queue one instance row: a helper thread writes it, with the others queued meanwhile,
        in one transaction, then calls ``done(previous relative path or None)`` — or
        ``done(exception)`` if the row could not be written (``Archive.recover`` re-indexes the
        file at the next start). On a closed or read-only index it is written now."""
        if self._behind is not None:
            try:
                self._behind.submit((rec, done))
                return
            except RuntimeError:  # closed: fall through to a synchronous write
                pass
        try:
            result: str | None | Exception = self.upsert(rec)
        except Exception as exc:
            result = exc
        if done is not None:
            done(result)
        self._after_batch()

    def wait_written(self) -> None:
        """Return once every row queued by ``upsert_later`` is written and its callback ran."""
        if self._behind is not None:
            self._behind.wait_idle()

    def _write_behind_batch(self, items: Sequence[tuple[InstanceRecord, UpsertDone | None]]) -> None:
        """One transaction for the batch; if it fails, each row alone (one bad row costs only itself)."""
        results: list[str | None | Exception]
        try:
            results = list(self._upsert_batch([rec for rec, _ in items]))
        except Exception as batch_error:
            logger.warning("indexing %d queued instances in one transaction failed (%s); "
                           "one at a time", len(items), batch_error)
            results = []
            for rec, _ in items:
                try:
                    results.append(self._upsert_batch([rec])[0])
                except Exception as exc:
                    logger.error("cannot index %s: %s", rec.path, exc)
                    results.append(exc)
        for (_, done), result in zip(items, results):
            if done is not None:
                try:
                    done(result)
                except Exception:
                    logger.exception("after indexing %s", result)
        self._after_batch()

    def _after_batch(self) -> None:
        hook = self.after_write_behind
        if hook is not None:
            try:
                hook()
            except Exception:
                logger.exception("after a batch of index rows")

    @settled
    def upsert(self, rec: InstanceRecord, *, remember_replaced: bool = True) -> str | None:
        """Index one instance in one transaction; returns the previous relative path if the
        SOP Instance UID was already indexed (the caller removes that file if it differs).
        ``remember_replaced``: see ``_upsert_one``."""
        return self._upsert_batch([rec], remember_replaced=remember_replaced)[0]

    @settled
    def upsert_many(self, records: Iterable[InstanceRecord]) -> list[str | None]:
        """Index many instances in one transaction (rebuilds, bulk imports)."""
        return self._upsert_batch(records)

    def _upsert_batch(self, records: Iterable[InstanceRecord], *,
                      remember_replaced: bool = True) -> list[str | None]:
        with self._write() as c:
            written: dict[tuple, int | None] = {}
            added: dict[tuple[str, str], int] = {}
            results = [self._upsert_one(c, rec, written, added, remember_replaced)
                       for rec in records]
            _count_added(c, added)
            return results

    def _upsert_one(self, c: sqlite3.Connection, rec: InstanceRecord,
                    written: dict[tuple, int | None],
                    added: dict[tuple[str, str], int] | None = None,
                    remember_replaced: bool = True) -> str | None:
        """One instance row and its patient/study/series rows.

        ``written`` holds the patient/study/series rows this transaction already wrote
        (patient rows with their pk): a burst of one series' objects writes those rows once,
        not once per object. Any pruning empties it (a written row may be gone).

        A row that moves to another path (the same SOP Instance UID in another study or
        series) leaves the previous path in ``replaced_copy``, in the same transaction: the
        caller deletes that file after the commit, and a crash in between must not leave it
        behind unknown (``Archive.recover`` removes what this table still names). Only moves
        write it: an ordinary store costs nothing more.
        """
        v = rec.values
        old = c.execute("SELECT path, series_uid, study_uid FROM instance WHERE sop_instance_uid = ?",
                        (v["SOPInstanceUID"],)).fetchone()
        if old is not None:
            written.clear()
            if added:  # a move or prune below must see the counts of the rows added so far
                _count_added(c, added)
        patient_key = ("PATIENT", *_level_row("PATIENT", v))
        patient_pk = written.get(patient_key)
        if patient_pk is None:
            row = c.execute(_upsert_sql("PATIENT", (), False) + " RETURNING pk",
                            patient_key[1:]).fetchone()
            if row is None:  # nothing to change: the row was left as it was
                row = c.execute("SELECT pk FROM patient WHERE patient_id = ?",
                                (patient_key[1 + _PATIENT_ID_AT],)).fetchone()
            patient_pk = row[0]
            written[patient_key] = patient_pk
        study_key = ("STUDY", *_level_row("STUDY", v), patient_pk)
        old_patient = None
        if study_key not in written:
            old_patient = c.execute("SELECT patient_pk FROM study WHERE study_uid = ?",
                                    (v["StudyInstanceUID"],)).fetchone()
            c.execute(_upsert_sql("STUDY", ("patient_pk",), False), study_key[1:])
            written[study_key] = None
        series_key = ("SERIES", *_level_row("SERIES", v), v["StudyInstanceUID"])
        if series_key not in written:
            c.execute(_upsert_sql("SERIES", ("study_uid",), False), series_key[1:])
            written[series_key] = None
        c.execute(_upsert_sql("IMAGE", _INSTANCE_FACTS, True),
                  (*_level_row("IMAGE", v), v["SeriesInstanceUID"], v["StudyInstanceUID"],
                   rec.transfer_syntax, rec.file_size, rec.path, rec.received_at, rec.calling_aet))
        if old is None:  # a new instance: counted with the batch (a re-sent one by a trigger)
            key = (v["SeriesInstanceUID"], v["StudyInstanceUID"])
            if added is None:
                _count_added(c, {key: 1})
            else:
                added[key] = added.get(key, 0) + 1
        if old is not None:
            if remember_replaced and old["path"] != rec.path:
                c.execute("INSERT OR IGNORE INTO replaced_copy (path) VALUES (?)", (old["path"],))
            self._prune(c, [old["series_uid"]], [old["study_uid"]], [])
        if old_patient is not None and old_patient["patient_pk"] != patient_pk:
            written.clear()
            self._prune(c, [], [], [old_patient["patient_pk"]])
        return old["path"] if old is not None else None

    @staticmethod
    def _prune(c: sqlite3.Connection, series: list[str], studies: list[str], patients: list[int]) -> None:
        """Drop series/studies/patients left without children (after a delete or a move)."""
        for uid in series:
            c.execute("DELETE FROM series WHERE series_uid = ? AND NOT EXISTS "
                      "(SELECT 1 FROM instance WHERE series_uid = ?)", (uid, uid))
        for uid in studies:
            row = c.execute("SELECT patient_pk FROM study WHERE study_uid = ?", (uid,)).fetchone()
            c.execute("DELETE FROM study WHERE study_uid = ? AND NOT EXISTS "
                      "(SELECT 1 FROM series WHERE study_uid = ?)", (uid, uid))
            if row is not None:
                patients = [*patients, row["patient_pk"]]
        for pk in patients:
            c.execute("DELETE FROM patient WHERE pk = ? AND NOT EXISTS "
                      "(SELECT 1 FROM study WHERE patient_pk = ?)", (pk, pk))

    def replaced_copies(self) -> list[str]:
        """Paths of replaced copies whose removal may not have happened (see ``_upsert_one``).
        Not ``_settled``: the archive calls it at start, before any row is queued."""
        with self._lock:
            try:
                return [r[0] for r in self._conn.execute("SELECT path FROM replaced_copy")]
            except sqlite3.OperationalError:  # an index opened without migrating (read-only)
                return []

    def forget_replaced(self, paths: Iterable[str]) -> None:
        """The replaced copies at ``paths`` are removed (or now hold a newer object). Not
        ``_settled``: the write-behind thread calls it after a batch."""
        paths = list(paths)
        if not paths:
            return
        with self._write() as c:
            c.executemany("DELETE FROM replaced_copy WHERE path = ?", [(p,) for p in paths])

    @settled
    def flag(self, name: str) -> bool:
        """Whether the archive recorded ``name`` (e.g. that its folder and index were
        reconciled once under the journal: ``Archive.needs_full_scan``)."""
        with self._lock:
            try:
                return self._conn.execute("SELECT 1 FROM archive_flags WHERE name = ?",
                                          (name,)).fetchone() is not None
            except sqlite3.OperationalError:  # no such table: nothing recorded yet
                return False

    @settled
    def set_flag(self, name: str) -> None:
        with self._write() as c:
            c.execute("CREATE TABLE IF NOT EXISTS archive_flags (name TEXT PRIMARY KEY)")
            c.execute("INSERT OR IGNORE INTO archive_flags (name) VALUES (?)", (name,))

    @settled
    def remove_instance(self, sop_instance_uid: str) -> bool:
        with self._write() as c:
            old = c.execute("SELECT series_uid, study_uid FROM instance WHERE sop_instance_uid = ?",
                            (sop_instance_uid,)).fetchone()
            if old is None:
                return False
            c.execute("DELETE FROM instance WHERE sop_instance_uid = ?", (sop_instance_uid,))
            self._prune(c, [old["series_uid"]], [old["study_uid"]], [])
        return True

    @settled
    def clear(self, path_prefix: str = "") -> None:
        """Remove every instance (or those whose relative path starts with ``path_prefix``)."""
        with self._write() as c:
            if not path_prefix:
                for table in ("instance", "series", "study", "patient"):
                    c.execute(f"DELETE FROM {table}")
                return
            pattern = matching.glob_pattern(path_prefix.rstrip("/")) + "/*"
            rows = c.execute("SELECT DISTINCT series_uid, study_uid FROM instance WHERE path GLOB ?",
                             (pattern,)).fetchall()
            c.execute("DELETE FROM instance WHERE path GLOB ?", (pattern,))
            self._prune(c, [r["series_uid"] for r in rows], [r["study_uid"] for r in rows], [])

    @settled
    def remove_study(self, study_uid: str) -> list[str]:
        """Delete a study's instance rows (and its series, and its patient if left without
        studies) plus their pending forwards, in one transaction; returns the relative paths
        of the removed instances (the caller deletes the files)."""
        with self._write() as c:
            rows = c.execute("SELECT sop_instance_uid, series_uid, path FROM instance "
                             "WHERE study_uid = ?", (study_uid,)).fetchall()
            c.execute("DELETE FROM instance WHERE study_uid = ?", (study_uid,))
            for start in range(0, len(rows), 500):
                chunk = [r["sop_instance_uid"] for r in rows[start:start + 500]]
                c.execute("DELETE FROM forward_queue WHERE sop_instance_uid IN "
                          f"({', '.join('?' * len(chunk))})", chunk)
            self._prune(c, sorted({r["series_uid"] for r in rows}), [study_uid], [])
        return [r["path"] for r in rows]


def _count_added(c: sqlite3.Connection, added: dict[tuple[str, str], int]) -> None:
    """Add the instances inserted by a batch to their series' and studies' counters, then
    forget them (``added``: (series UID, study UID) -> new instances)."""
    if not added:
        return
    studies: dict[str, int] = {}
    for (_series, study), n in added.items():
        studies[study] = studies.get(study, 0) + n
    c.executemany("UPDATE series SET num_instances = num_instances + ? WHERE series_uid = ?",
                  [(n, series) for (series, _study), n in added.items()])
    c.executemany("UPDATE study SET num_instances = num_instances + ? WHERE study_uid = ?",
                  [(n, study) for study, n in studies.items()])
    added.clear()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` under the writer lock (rollback on error)."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self._conn = conn
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self._lock.release()
