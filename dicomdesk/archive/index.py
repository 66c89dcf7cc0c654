"""The SQLite index of the archive (``index.sqlite3``) and the C-FIND/C-MOVE/C-GET SCP
queries over it (PS3.4 C.4.1-C.4.3).

``Index`` is made of parts that each do one job: the schema and the rows it holds
(``schema.py``), writing (``index_writer.IndexWriter``), the forward queue
(``forward_queue.ForwardQueue``), C-FIND query building and responses (``find_query.py``)
and the browser's pages (``browse.py``); this module opens the database and reads it.

The database runs in WAL mode so that a second process (the GUI, ``dicomdesk index``) can read
while the server writes; readers open their own connection per query so that a slow C-FIND peer
never holds the writer's lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import browse, matching
from .browse import TREE_COLUMNS as _TREE_COLUMNS
from .find_query import (EncodedMatches, FindQuery, MatchingRows, _check_level, build_find)
from .forward_queue import ForwardItem, ForwardQueue
from .index_writer import (WRITE_BEHIND_LINGER_S, IndexWriter, _WRITERS, _WRITERS_LOCK,
                           settled as _settled)
from .matching import STATUS_IDENTIFIER_DOES_NOT_MATCH, QueryError, value_text
from .schema import (DERIVED, KEYS, LEVELS, SCHEMA_VERSION, UNIQUE_KEYS, InstanceRecord, InstanceRef,
                     Key, UpsertDone, _INDEXES_V2, _RANK, _migrate)
from .write_behind import WriteBehind

if TYPE_CHECKING:  # pydicom loads on first use: `dicomdesk serve` answers C-ECHO without it
    from pydicom.dataset import Dataset

__all__ = ["DERIVED", "KEYS", "LEVELS", "SCHEMA_VERSION", "UNIQUE_KEYS", "EncodedMatches",
           "FindQuery", "ForwardItem", "Index", "InstanceRecord", "InstanceRef", "Key",
           "MatchingRows", "build_find"]

#: Reader connections an index keeps open between C-FIND queries (``Index._reader``).
_IDLE_READERS = 4


class Index(IndexWriter, ForwardQueue):
    """The archive's SQLite database (``index.sqlite3``): upserts, queries, forward queue.

    Every public method except ``upsert_later`` first waits for the rows queued by
    ``upsert_later`` (``_settled``), so the write-behind is invisible to readers."""

    def __init__(self, path: Path, *, read_only: bool = False, durable: bool = True,
                 busy_timeout: float = 10.0, immutable: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only or immutable
        #: Read without WAL or locks (SQLite ``immutable``): a disk so full that SQLite
        #: cannot create its WAL index still lets the archive answer queries.
        self.immutable = immutable
        self._durable = durable
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._behind: WriteBehind[tuple[InstanceRecord, UpsertDone | None]] | None = None
        #: Called on the writer thread after each write-behind batch and its callbacks: the
        #: archive settles its journal there, once per batch (``journal.py``).
        self.after_write_behind: Callable[[], None] | None = None
        self._key = str(self.path.resolve())
        #: Reader connections of finished C-FIND queries, kept for the next ones: a new
        #: connection starts with an empty page cache and parses the schema again, a few ms
        #: of every query's first match (issue 14). At most ``_IDLE_READERS`` stay open.
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._conn = self.connect()
        if not self.read_only:
            self._behind = WriteBehind(self._write_behind_batch, name="archive-index",
                                       linger=WRITE_BEHIND_LINGER_S)
            with _WRITERS_LOCK:
                _WRITERS[self._key] = self._behind
            with self._lock:
                self._conn.execute("PRAGMA journal_mode=WAL")
                _migrate(self._conn)  # writes only when the schema changes

    def connect(self) -> sqlite3.Connection:
        """A new connection configured for this index (readers use one per query)."""
        if self.read_only:
            mode = "ro&immutable=1" if self.immutable else "ro"
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode={mode}", uri=True,
                                   timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        conn.row_factory = sqlite3.Row
        return conn

    def _reader(self) -> sqlite3.Connection:
        """A reader connection: an idle one of an earlier query, else a new one."""
        with self._readers_lock:
            if self._readers:
                return self._readers.pop()
        return self.connect()

    def _reader_done(self, conn: sqlite3.Connection) -> None:
        """Keep a reader whose statements are finished for the next query (or close it)."""
        with self._readers_lock:
            if not self._closed and len(self._readers) < _IDLE_READERS:
                self._readers.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._readers_lock:
            self._closed = True
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        if self._behind is not None:
            self._behind.close()  # rows still queued are written first
            with _WRITERS_LOCK:
                if _WRITERS.get(self._key) is self._behind:
                    del _WRITERS[self._key]
        with self._lock:
            self._conn.close()

    # ---------------------------------------------------------------- reading

    @_settled
    def instance(self, sop_instance_uid: str) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute("SELECT * FROM instance WHERE sop_instance_uid = ?",
                                      (sop_instance_uid,)).fetchone()

    @_settled
    def instances(self, sop_instance_uids: Iterable[str]) -> dict[str, sqlite3.Row]:
        uids = list(sop_instance_uids)
        out: dict[str, sqlite3.Row] = {}
        with self._lock:
            for start in range(0, len(uids), 500):
                chunk = uids[start:start + 500]
                for row in self._conn.execute(
                        "SELECT sop_instance_uid, sop_class_uid, transfer_syntax, file_size, path "
                        f"FROM instance WHERE sop_instance_uid IN ({', '.join('?' * len(chunk))})", chunk):
                    out[row["sop_instance_uid"]] = row
        return out

    @_settled
    def files_after(self, rowid: int, limit: int = 1000) -> list[tuple[int, str, str, int]]:
        """``(rowid, sop_instance_uid, relative path, size)`` of up to ``limit`` instances
        after ``rowid``, in rowid order: reconciliation reads the index a page at a time, so
        its memory does not grow with the archive (a million rows as one dict: ~500 MB)."""
        with self._lock:
            return [tuple(r) for r in self._conn.execute(
                "SELECT rowid, sop_instance_uid, path, file_size FROM instance WHERE rowid > ? "
                "ORDER BY rowid LIMIT ?", (rowid, limit))]

    @_settled
    def paths_under(self, folder: str) -> set[str]:
        """Relative paths of the instances filed under ``folder`` (relative, no trailing
        slash; '' for the archive's root: the files directly in it), by the path index."""
        with self._lock:
            if not folder:
                rows = self._conn.execute("SELECT path FROM instance WHERE instr(path, '/') = 0")
            else:
                rows = self._conn.execute("SELECT path FROM instance WHERE path >= ? AND path < ?",
                                          (folder + "/", folder + "0"))  # "0" follows "/"
            return {r[0] for r in rows}

    @_settled
    def all_files(self) -> dict[str, tuple[str, int]]:
        """``{sop_instance_uid: (relative path, size)}`` for reconciliation."""
        with self._lock:
            return {r[0]: (r[1], r[2]) for r in
                    self._conn.execute("SELECT sop_instance_uid, path, file_size FROM instance")}

    @_settled
    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM instance").fetchone()[0]

    @_settled
    def counts(self) -> dict[str, int]:
        """Entities per level (``dicomdesk index`` prints them)."""
        with self._lock:
            return {table: self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    for table in ("patient", "study", "series", "instance")}

    @_settled
    def find(self, level: str, identifier: Dataset, model: str = "study", *,
             combined_datetime: bool = False, retrieve_ae_title: str = "",
             batch: int = 256) -> Iterator[Dataset]:
        """C-FIND SCP matching (PS3.4 C.4.1.3.1) in SQL; see ``build_find`` for the rules.
        The query is compiled now, so a ``QueryError`` is raised by this call, not by iteration."""
        query = build_find(level, identifier, model, combined_datetime=combined_datetime,
                           retrieve_ae_title=retrieve_ae_title)
        return self.responses(query, batch)

    @_settled
    def responses(self, query: FindQuery, batch: int = 256) -> Iterator[Dataset]:
        """Run a compiled C-FIND (``build_find``): one response data set per matching entity."""
        for row in self._matching_rows(query, batch):
            yield query.response(row)

    @_settled
    def encoded_responses(self, query: FindQuery, transfer_syntax: str,
                          batch: int = 256) -> EncodedMatches:
        """``responses``, each one already encoded in ``transfer_syntax`` where
        ``FindQuery.encoder`` can (bytes), a Dataset where it cannot (the SCP encodes it).
        The iterator's ``ready()`` says how many come without a fetch from SQLite."""
        return EncodedMatches(self._matching_rows(query, batch), query, transfer_syntax)

    def _matching_rows(self, query: FindQuery, batch: int) -> MatchingRows:
        """The rows of a compiled C-FIND, fetched in batches on a connection of their own."""
        return MatchingRows(self._reader, query.sql, query.params, batch, self._reader_done)

    @_settled
    def locate(self, level: str, identifier: Dataset, model: str = "study") -> list[InstanceRef]:
        """C-MOVE/C-GET SCP (PS3.4 C.4.2.2.1/C.4.3.2.1): the instances selected by unique keys."""
        level = _check_level(level, model)
        conds: list[str] = []
        params: list[object] = []
        for lvl in LEVELS[: _RANK[level] + 1]:
            keyword = UNIQUE_KEYS[lvl]
            value = value_text(identifier.get(keyword))
            if matching.is_universal(value):
                if lvl == level:
                    raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH,
                                     f"{keyword} is required for a {level} level retrieve")
                continue
            key = KEYS[keyword]
            cond = matching.condition(f"{key.alias}.{key.column}", "UI", value)
            if cond:
                conds.append(cond[0])
                params.extend(cond[1])
        sql = ("SELECT i.sop_class_uid, i.sop_instance_uid, i.transfer_syntax, i.path, i.file_size "
               "FROM instance i JOIN series se ON i.series_uid = se.series_uid "
               "JOIN study s ON se.study_uid = s.study_uid JOIN patient p ON s.patient_pk = p.pk "
               f"WHERE {' AND '.join(conds)} "
               "ORDER BY s.rowid, se.series_number, se.rowid, i.instance_number, i.rowid")
        root = self.path.parent
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [InstanceRef(r[0], r[1], r[2], root / r[3], r[4]) for r in rows]

    # ---------------------------------------------------------------- browsing (the window)

    @_settled
    def browse(self, kind: str, ref: object = None, after: Sequence | None = None,
               limit: int = 200, search: str = "") -> list:
        """One page of the archive browser (``browse.page``), on a connection of its own."""
        conn = self.connect()
        try:
            return browse.page(conn, kind, ref, after, limit, browse.Search(search))
        finally:
            conn.close()

    @_settled
    def browse_lineage(self, sop_instance_uids: Iterable[str]) -> list:
        """``browse.lineage``: the browser rows of objects that just arrived."""
        conn = self.connect()
        try:
            return browse.lineage(conn, sop_instance_uids)
        finally:
            conn.close()

    @_settled
    def browse_totals(self) -> dict[str, int]:
        """``browse.totals``: patients, studies and instances (the browser's status line)."""
        conn = self.connect()
        try:
            return browse.totals(conn)
        finally:
            conn.close()


    #: Columns of ``tree_rows`` (``browse.TREE_COLUMNS``).
    TREE_COLUMNS = _TREE_COLUMNS

    @_settled
    def tree_rows(self, *, sop_instance_uids: Iterable[str] | None = None,
                  study_uid: str | None = None) -> list[tuple]:
        """``browse.tree_rows``: one tuple per instance (``TREE_COLUMNS``), on a connection
        of its own, so a long listing never holds the writer's lock."""
        conn = self.connect()
        try:
            return browse.tree_rows(conn, sop_instance_uids=sop_instance_uids, study_uid=study_uid)
        finally:
            conn.close()
