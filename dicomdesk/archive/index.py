"""The SQLite index of the archive and the C-FIND/C-MOVE/C-GET SCP queries over it (PS3.4 C.4.1-C.4.3).

Schema: one table per level of the PS3.4 C.6 information model (``patient``, ``study``, ``series``,
``instance``) rather than one denormalised table.  Why: PS3.4 C.4.1.2 answers are *per entity*
(one response per study, not per instance), its counts (NumberOfStudyRelatedInstances, ...) and
ModalitiesInStudy are aggregates, and a study's attributes must not depend on which instance
arrived last with an empty StudyDescription.  With normalised tables a STUDY query is a scan of the
study table (thousands of rows, not hundreds of thousands), and the study/series counts and
ModalitiesInStudy are counters kept on their rows (schema 2, ``_COUNTERS``), read as columns.
``instance`` also carries ``study_uid`` so that study counts need no join.

Patients are keyed by PatientID alone (the Patient Root unique key, C.6.1.1.2); instances without
a PatientID share the patient with an empty ID.  Study/series attributes are updated by each new
instance, but an empty value never overwrites a non-empty one.

Each key with a DA/TM/DT/PN VR has a second column ``<column>_m`` holding its matching form
(see ``matching.stored_form``); originals are returned unchanged in responses.

The database runs in WAL mode so that a second process (the GUI, ``dicomdesk index``) can read
while the server writes; readers open their own connection per query so that a slow C-FIND peer
never holds the writer's lock.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import struct
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import matching
from .matching import STATUS_IDENTIFIER_DOES_NOT_MATCH, QueryError, value_text
from .write_behind import WriteBehind

if TYPE_CHECKING:  # pydicom loads on first use: `dicomdesk serve` answers C-ECHO without it
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: Reader connections an index keeps open between C-FIND queries (``Index._reader``).
_IDLE_READERS = 4
#: How long queued rows wait for more before their transaction (a burst of C-STOREs becomes
#: one commit); readers never wait for it (``WriteBehind.wait_idle`` flushes at once).
WRITE_BEHIND_LINGER_S = 0.02
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_RANK = {lvl: i for i, lvl in enumerate(LEVELS)}
_MATCH_FORM_VRS = frozenset({"PN", "DA", "TM", "DT"})
_TABLES = {"PATIENT": ("patient", "p"), "STUDY": ("study", "s"), "SERIES": ("series", "se"),
           "IMAGE": ("instance", "i")}
#: PS3.4 C.6.1.1 / C.6.2.1: the unique key of each level.
UNIQUE_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
               "IMAGE": "SOPInstanceUID"}


@dataclass(frozen=True)
class Key:
    """An attribute held in the index: its level in the Patient Root model and its column."""

    keyword: str
    vr: str
    level: str
    column: str
    tag: int  # the keyword's tag (tests/archive/test_index.py checks it against pydicom's)

    @property
    def alias(self) -> str:
        return _TABLES[self.level][1]

    @property
    def match_column(self) -> str:
        return self.column + "_m" if self.vr in _MATCH_FORM_VRS else self.column


KEYS: dict[str, Key] = {k.keyword: k for k in (
    Key("PatientName", "PN", "PATIENT", "patient_name", 0x00100010),
    Key("PatientID", "LO", "PATIENT", "patient_id", 0x00100020),
    Key("IssuerOfPatientID", "LO", "PATIENT", "issuer_of_patient_id", 0x00100021),
    Key("PatientBirthDate", "DA", "PATIENT", "patient_birth_date", 0x00100030),
    Key("PatientSex", "CS", "PATIENT", "patient_sex", 0x00100040),
    Key("StudyInstanceUID", "UI", "STUDY", "study_uid", 0x0020000D),
    Key("StudyDate", "DA", "STUDY", "study_date", 0x00080020),
    Key("StudyTime", "TM", "STUDY", "study_time", 0x00080030),
    Key("AccessionNumber", "SH", "STUDY", "accession_number", 0x00080050),
    Key("StudyID", "SH", "STUDY", "study_id", 0x00200010),
    Key("StudyDescription", "LO", "STUDY", "study_description", 0x00081030),
    Key("ReferringPhysicianName", "PN", "STUDY", "referring_physician_name", 0x00080090),
    Key("SeriesInstanceUID", "UI", "SERIES", "series_uid", 0x0020000E),
    Key("Modality", "CS", "SERIES", "modality", 0x00080060),
    Key("SeriesNumber", "IS", "SERIES", "series_number", 0x00200011),
    Key("SeriesDescription", "LO", "SERIES", "series_description", 0x0008103E),
    Key("SeriesDate", "DA", "SERIES", "series_date", 0x00080021),
    Key("SeriesTime", "TM", "SERIES", "series_time", 0x00080031),
    Key("SOPInstanceUID", "UI", "IMAGE", "sop_instance_uid", 0x00080018),
    Key("SOPClassUID", "UI", "IMAGE", "sop_class_uid", 0x00080016),
    Key("InstanceNumber", "IS", "IMAGE", "instance_number", 0x00200013),
)}


_KEY_TAGS_VRS: tuple[tuple[str, int, str], ...] = tuple((k.keyword, k.tag, k.vr) for k in KEYS.values())


@dataclass(frozen=True)
class Derived:
    """An attribute computed from the index (PS3.4 C.6.1.1.x "Number of ...", ModalitiesInStudy)."""

    keyword: str
    vr: str
    level: str
    select: str              # SQL expression over the aliases p/s/se
    exists: str | None = None  # for multi-valued keys: sub-query used for matching, with {cond}
    column: str = ""          # the column the {cond} matches inside ``exists``


DERIVED: dict[str, Derived] = {d.keyword: d for d in (
    # counters kept by triggers (``_COUNTERS``): a column read, not an aggregate per match
    Derived("NumberOfPatientRelatedStudies", "IS", "PATIENT",
            "(SELECT COUNT(*) FROM study y WHERE y.patient_pk = p.pk)"),
    Derived("NumberOfPatientRelatedSeries", "IS", "PATIENT",
            "(SELECT ifnull(SUM(y.num_series), 0) FROM study y WHERE y.patient_pk = p.pk)"),
    Derived("NumberOfPatientRelatedInstances", "IS", "PATIENT",
            "(SELECT ifnull(SUM(y.num_instances), 0) FROM study y WHERE y.patient_pk = p.pk)"),
    Derived("NumberOfStudyRelatedSeries", "IS", "STUDY", "s.num_series"),
    Derived("NumberOfStudyRelatedInstances", "IS", "STUDY", "s.num_instances"),
    Derived("NumberOfSeriesRelatedInstances", "IS", "SERIES", "se.num_instances"),
    Derived("ModalitiesInStudy", "CS", "STUDY", "s.modalities",
            "EXISTS (SELECT 1 FROM series x WHERE x.study_uid = s.study_uid AND {cond})", "x.modality"),
    Derived("SOPClassesInStudy", "UI", "STUDY",
            "(SELECT group_concat(DISTINCT x.sop_class_uid) FROM instance x"
            " WHERE x.study_uid = s.study_uid)",
            "EXISTS (SELECT 1 FROM instance x WHERE x.study_uid = s.study_uid AND {cond})",
            "x.sop_class_uid"),
)}

_FILE_COLUMNS = ("transfer_syntax", "file_size", "path", "received_at", "calling_aet")


@dataclass(frozen=True)
class InstanceRef:
    """What C-GET/C-MOVE/commitment need about one stored instance (``path`` is absolute)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    path: Path
    size: int


@dataclass(frozen=True)
class InstanceRecord:
    """One row to index: the key values read from the file header plus the file facts."""

    values: dict[str, object]
    transfer_syntax: str
    file_size: int
    path: str               # relative to the archive root, POSIX separators
    received_at: str
    calling_aet: str = ""

    @classmethod
    def from_dataset(cls, ds: Dataset, **facts: object) -> InstanceRecord:
        """The record of a data set's key values (``header_values.key_values``)."""
        from .header_values import key_values

        return cls(values=key_values(ds, _KEY_TAGS_VRS), **facts)  # type: ignore[arg-type]


_CHARSET_TAG = 0x00080005


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


def _columns_of(level: str) -> list[Key]:
    return [k for k in KEYS.values() if k.level == level]


#: The key columns of each level, in KEYS order (the order of ``_level_row``).
_LEVEL_COLUMNS: dict[str, tuple[Key, ...]] = {
    level: tuple(k for k in KEYS.values() if k.level == level)
    for level in ("PATIENT", "STUDY", "SERIES", "IMAGE")}


@functools.lru_cache(maxsize=None)
def _upsert_sql(level: str, extra: tuple[str, ...], replace: bool) -> str:
    """The INSERT … ON CONFLICT statement of one level, built once per shape (it runs four
    times per stored object; formatting it each time cost more than SQLite's own work)."""
    table = _TABLES[level][0]
    names: list[str] = []
    for k in _LEVEL_COLUMNS[level]:
        names.append(k.column)
        if k.vr in _MATCH_FORM_VRS:
            names.append(k.match_column)
    names.extend(extra)
    key = {"PATIENT": "patient_id", "STUDY": "study_uid", "SERIES": "series_uid",
           "IMAGE": "sop_instance_uid"}[level]
    if replace:
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != key)
    else:  # an empty value never overwrites a known one
        updates = ", ".join(
            f"{n} = CASE WHEN excluded.{n} IS NULL OR excluded.{n} = '' THEN {table}.{n} "
            f"ELSE excluded.{n} END" if n not in extra else f"{n} = excluded.{n}"
            for n in names if n != key)
        # ... and a row that would not change is not rewritten: an UPDATE rewrites the entries
        # of every index on the columns it sets, changed or not — pages (WAL frames) that a
        # full disk's reserve and every commit pay for (a series' next object changes nothing)
        changed = " OR ".join(
            f"(excluded.{n} IS NOT NULL AND excluded.{n} <> '' AND excluded.{n} IS NOT {table}.{n})"
            if n not in extra else f"excluded.{n} IS NOT {table}.{n}"
            for n in names if n != key)
        updates += f" WHERE {changed}"
    return (f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT({key}) DO UPDATE SET {updates}")


#: Position of PatientID in a patient row of ``_level_row``.
_PATIENT_ID_AT = [name for k in _LEVEL_COLUMNS["PATIENT"]
                  for name in ((k.column, k.match_column) if k.vr in _MATCH_FORM_VRS
                               else (k.column,))].index("patient_id")

#: The instance row's facts that are not header values, in ``_upsert_one``'s order.
_INSTANCE_FACTS = ("series_uid", "study_uid", "transfer_syntax", "file_size", "path",
                   "received_at", "calling_aet")


def _level_row(level: str, v: dict[str, object]) -> tuple[object, ...]:
    """The header columns of one level's row (with the matching forms), as stored."""
    row: list[object] = []
    for k in _LEVEL_COLUMNS[level]:
        raw = v.get(k.keyword, "")
        row.append(matching.stored_form("IS", raw) if k.vr == "IS" else str(raw or "").strip())
        if k.vr in _MATCH_FORM_VRS:
            row.append(matching.stored_form(k.vr, raw))
    return tuple(row)


def _column_defs(level: str) -> list[str]:
    defs = []
    for k in _columns_of(level):
        if k.vr == "IS":
            defs.append(f"{k.column} INTEGER")
        else:
            defs.append(f"{k.column} TEXT NOT NULL DEFAULT ''")
        if k.vr in _MATCH_FORM_VRS:
            defs.append(f"{k.match_column} TEXT NOT NULL DEFAULT ''")
    return defs


#: Counters kept on each row by the triggers of ``_COUNTER_TRIGGERS`` (schema 2): the PS3.4
#: C.6.1.1.x "Number of Study/Series Related ..." keys and ModalitiesInStudy, read by a C-FIND
#: as plain columns instead of being aggregated per match (that was 30 of the 35 ms of SQL of
#: a 5,000-study query). Instances count under the study they name (``instance.study_uid``),
#: series under theirs — the definitions the aggregates had. A patient's counts are sums over
#: its few studies' counters (``DERIVED``): a counter there would cost two more row updates
#: per stored object for keys only a Patient Root PATIENT query asks for.
_COUNTERS = {
    "patient": (),
    "study": (("num_series", "INTEGER NOT NULL DEFAULT 0"),
              ("num_instances", "INTEGER NOT NULL DEFAULT 0"),
              ("modalities", "TEXT NOT NULL DEFAULT ''")),
    "series": (("num_instances", "INTEGER NOT NULL DEFAULT 0"),),
}


def _counter_defs(table: str) -> str:
    return "".join(f",\n  {name} {decl}" for name, decl in _COUNTERS[table])


_MODALITIES_OF = ("(SELECT ifnull(group_concat(DISTINCT x.modality), '') FROM series x "
                  "WHERE x.study_uid = {uid} AND x.modality <> '')")

#: Triggers that keep ``_COUNTERS`` right on every delete and move, whichever code path writes
#: (upserts, prunes, study deletion, ``clear``): one UPDATE per parent row, O(1). New instances
#: are counted once per batch instead (``_count_added``: a burst of one series' objects is one
#: UPDATE of the series and of the study, not two per object — a trigger per row cost 2-3x the
#: bulk import's time).
_COUNTER_TRIGGERS = f"""
DROP TRIGGER IF EXISTS instance_counted;
CREATE TRIGGER IF NOT EXISTS instance_uncounted AFTER DELETE ON instance BEGIN
  UPDATE series SET num_instances = num_instances - 1 WHERE series_uid = OLD.series_uid;
  UPDATE study SET num_instances = num_instances - 1 WHERE study_uid = OLD.study_uid;
END;
CREATE TRIGGER IF NOT EXISTS instance_moved AFTER UPDATE OF series_uid, study_uid ON instance
WHEN OLD.series_uid IS NOT NEW.series_uid OR OLD.study_uid IS NOT NEW.study_uid BEGIN
  UPDATE series SET num_instances = num_instances - 1 WHERE series_uid = OLD.series_uid;
  UPDATE study SET num_instances = num_instances - 1 WHERE study_uid = OLD.study_uid;
  UPDATE series SET num_instances = num_instances + 1 WHERE series_uid = NEW.series_uid;
  UPDATE study SET num_instances = num_instances + 1 WHERE study_uid = NEW.study_uid;
END;
CREATE TRIGGER IF NOT EXISTS series_counted AFTER INSERT ON series BEGIN
  UPDATE study SET num_series = num_series + 1,
    modalities = {_MODALITIES_OF.format(uid="NEW.study_uid")} WHERE study_uid = NEW.study_uid;
END;
CREATE TRIGGER IF NOT EXISTS series_uncounted AFTER DELETE ON series BEGIN
  UPDATE study SET num_series = num_series - 1,
    modalities = {_MODALITIES_OF.format(uid="OLD.study_uid")} WHERE study_uid = OLD.study_uid;
END;
CREATE TRIGGER IF NOT EXISTS series_changed AFTER UPDATE OF study_uid, modality ON series
WHEN OLD.study_uid IS NOT NEW.study_uid OR OLD.modality IS NOT NEW.modality BEGIN
  UPDATE study SET num_series = num_series - (OLD.study_uid IS NOT NEW.study_uid),
    modalities = {_MODALITIES_OF.format(uid="OLD.study_uid")} WHERE study_uid = OLD.study_uid;
  UPDATE study SET num_series = num_series + (OLD.study_uid IS NOT NEW.study_uid),
    modalities = {_MODALITIES_OF.format(uid="NEW.study_uid")} WHERE study_uid = NEW.study_uid;
END;
DROP TRIGGER IF EXISTS study_counted;
DROP TRIGGER IF EXISTS study_uncounted;
DROP TRIGGER IF EXISTS study_changed;
"""

#: Schema 2's indexes: the keys users query (PatientBirthDate, Modality), the ``path`` prefix of
#: ``dicomdesk index SUBDIR`` (GLOB 'prefix/*' is a range on this index), and each level's
#: children in the browser's order (``browse.py``), which also serve the parent look-ups the
#: single-column indexes of schema 1 did (they are dropped).
_INDEXES_V2 = """
DROP INDEX IF EXISTS study_patient_idx;
DROP INDEX IF EXISTS series_study_idx;
DROP INDEX IF EXISTS instance_series_idx;
CREATE INDEX IF NOT EXISTS patient_birth_date_idx ON patient(patient_birth_date_m);
CREATE INDEX IF NOT EXISTS patient_browse_idx ON patient(patient_name, patient_id);
CREATE INDEX IF NOT EXISTS study_browse_idx ON study(patient_pk, study_date, study_uid);
CREATE INDEX IF NOT EXISTS series_browse_idx
  ON series(study_uid, ifnull(series_number, -2147483649), series_uid);
CREATE INDEX IF NOT EXISTS series_modality_idx ON series(modality);
CREATE INDEX IF NOT EXISTS instance_browse_idx
  ON instance(series_uid, ifnull(instance_number, -2147483649), sop_instance_uid);
CREATE INDEX IF NOT EXISTS instance_path_idx ON instance(path);
"""

#: Fills ``_COUNTERS`` of an archive indexed by schema 1 (once, when it is opened for writing).
_BACKFILL = f"""
UPDATE series SET num_instances =
  (SELECT COUNT(*) FROM instance x WHERE x.series_uid = series.series_uid);
UPDATE study SET
  num_series = (SELECT COUNT(*) FROM series x WHERE x.study_uid = study.study_uid),
  num_instances = (SELECT COUNT(*) FROM instance x WHERE x.study_uid = study.study_uid),
  modalities = {_MODALITIES_OF.format(uid="study.study_uid")};
"""


def _statements(script: str) -> list[str]:
    """The statements of a script, one by one (``executescript`` would commit first)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


def _migrate(conn: sqlite3.Connection) -> None:
    """Create the schema, or bring an older archive's index to ``SCHEMA_VERSION``, in one
    transaction (a crash halfway leaves the old schema, migrated again at the next start)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        existed = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'instance'").fetchone()
        for statement in _statements(_schema()):
            conn.execute(statement)
        backfill = False
        if existed and version < 2:
            for table, counters in _COUNTERS.items():
                have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                for name, decl in counters:
                    if name not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
            backfill = True
        for statement in _statements(_INDEXES_V2) + _statements(_COUNTER_TRIGGERS):
            conn.execute(statement)
        if backfill:
            for statement in _statements(_BACKFILL):
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _schema() -> str:
    def cols(level: str, skip: str) -> str:
        return ",\n  ".join(d for d in _column_defs(level) if not d.startswith(skip + " "))

    return f"""
CREATE TABLE IF NOT EXISTS patient (
  pk INTEGER PRIMARY KEY,
  patient_id TEXT NOT NULL UNIQUE,
  {cols("PATIENT", "patient_id")}{_counter_defs("patient")}
);
CREATE TABLE IF NOT EXISTS study (
  study_uid TEXT PRIMARY KEY,
  patient_pk INTEGER NOT NULL,
  {cols("STUDY", "study_uid")}{_counter_defs("study")}
);
CREATE TABLE IF NOT EXISTS series (
  series_uid TEXT PRIMARY KEY,
  study_uid TEXT NOT NULL,
  {cols("SERIES", "series_uid")}{_counter_defs("series")}
);
CREATE TABLE IF NOT EXISTS instance (
  sop_instance_uid TEXT PRIMARY KEY,
  series_uid TEXT NOT NULL,
  study_uid TEXT NOT NULL,
  {cols("IMAGE", "sop_instance_uid")},
  transfer_syntax TEXT NOT NULL DEFAULT '',
  file_size INTEGER NOT NULL DEFAULT 0,
  path TEXT NOT NULL,
  received_at TEXT NOT NULL DEFAULT '',
  calling_aet TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS patient_name_idx ON patient(patient_name_m);
CREATE INDEX IF NOT EXISTS study_date_idx ON study(study_date_m);
CREATE INDEX IF NOT EXISTS study_accession_idx ON study(accession_number);
CREATE INDEX IF NOT EXISTS instance_study_idx ON instance(study_uid);
CREATE TABLE IF NOT EXISTS forward_queue (
  id INTEGER PRIMARY KEY,
  sop_instance_uid TEXT NOT NULL,
  destination TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  UNIQUE (sop_instance_uid, destination)
);
CREATE INDEX IF NOT EXISTS forward_due_idx ON forward_queue(state, next_attempt_at);
CREATE TABLE IF NOT EXISTS replaced_copy (
  path TEXT PRIMARY KEY
);
"""


#: ``Index.upsert_later``'s callback: the previous relative path (``upsert``'s answer), or the
#: exception that kept the row from being written.
UpsertDone = Callable[["str | None | Exception"], None]


#: The write-behind queue of each index file open for writing in this process (resolved
#: path -> queue): a second ``Index`` on the same file, read-only (a retrieve checking what
#: is local, the archive browser), waits for it too.
_WRITERS: weakref.WeakValueDictionary[str, WriteBehind] = weakref.WeakValueDictionary()
_WRITERS_LOCK = threading.Lock()


def _settled(method: Callable) -> Callable:
    """Run ``method`` once every ``upsert_later`` handed over before the call is written, by
    this index or by another in this process on the same file: whoever got a C-STORE
    response sees that object in the next query (read your writes)."""
    @functools.wraps(method)
    def wrapper(self: Index, *args: object, **kwargs: object) -> object:
        behind = self._behind
        if behind is None:
            with _WRITERS_LOCK:
                behind = _WRITERS.get(self._key)
        if behind is not None:
            behind.wait_idle()
        return method(self, *args, **kwargs)
    return wrapper


class Index:
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

    @_settled
    def upsert(self, rec: InstanceRecord, *, remember_replaced: bool = True) -> str | None:
        """Index one instance in one transaction; returns the previous relative path if the
        SOP Instance UID was already indexed (the caller removes that file if it differs).
        ``remember_replaced``: see ``_upsert_one``."""
        return self._upsert_batch([rec], remember_replaced=remember_replaced)[0]

    @_settled
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

    @_settled
    def flag(self, name: str) -> bool:
        """Whether the archive recorded ``name`` (e.g. that its folder and index were
        reconciled once under the journal: ``Archive.needs_full_scan``)."""
        with self._lock:
            try:
                return self._conn.execute("SELECT 1 FROM archive_flags WHERE name = ?",
                                          (name,)).fetchone() is not None
            except sqlite3.OperationalError:  # no such table: nothing recorded yet
                return False

    @_settled
    def set_flag(self, name: str) -> None:
        with self._write() as c:
            c.execute("CREATE TABLE IF NOT EXISTS archive_flags (name TEXT PRIMARY KEY)")
            c.execute("INSERT OR IGNORE INTO archive_flags (name) VALUES (?)", (name,))

    @_settled
    def remove_instance(self, sop_instance_uid: str) -> bool:
        with self._write() as c:
            old = c.execute("SELECT series_uid, study_uid FROM instance WHERE sop_instance_uid = ?",
                            (sop_instance_uid,)).fetchone()
            if old is None:
                return False
            c.execute("DELETE FROM instance WHERE sop_instance_uid = ?", (sop_instance_uid,))
            self._prune(c, [old["series_uid"]], [old["study_uid"]], [])
        return True

    @_settled
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
        from . import browse

        conn = self.connect()
        try:
            return browse.page(conn, kind, ref, after, limit, browse.Search(search))
        finally:
            conn.close()

    @_settled
    def browse_lineage(self, sop_instance_uids: Iterable[str]) -> list:
        """``browse.lineage``: the browser rows of objects that just arrived."""
        from . import browse

        conn = self.connect()
        try:
            return browse.lineage(conn, sop_instance_uids)
        finally:
            conn.close()

    @_settled
    def browse_totals(self) -> dict[str, int]:
        """``browse.totals``: patients, studies and instances (the browser's status line)."""
        from . import browse

        conn = self.connect()
        try:
            return browse.totals(conn)
        finally:
            conn.close()


    #: Columns of ``tree_rows``: the patient/study/series/instance facts an archive browser shows.
    TREE_COLUMNS = ("patient_id", "patient_name", "study_uid", "study_date", "study_description",
                    "accession_number", "series_uid", "modality", "series_number",
                    "series_description", "sop_instance_uid", "sop_class_uid", "instance_number",
                    "transfer_syntax", "file_size", "path")

    @_settled
    def tree_rows(self, *, sop_instance_uids: Iterable[str] | None = None,
                  study_uid: str | None = None) -> list[tuple]:
        """One tuple per instance (``TREE_COLUMNS`` order, ``path`` relative to the archive),
        ordered patient, study, series, instance — the PS3.4 C.6.1 hierarchy the browser shows.
        ``sop_instance_uids`` restricts it to those instances (objects that just arrived),
        ``study_uid`` to one study (export).
        Read on a connection of its own, so a long listing never holds the writer's lock."""
        sql = ("SELECT p.patient_id, p.patient_name, s.study_uid, s.study_date, s.study_description, "
               "s.accession_number, se.series_uid, se.modality, se.series_number, "
               "se.series_description, i.sop_instance_uid, i.sop_class_uid, i.instance_number, "
               "i.transfer_syntax, i.file_size, i.path "
               "FROM instance i JOIN series se ON i.series_uid = se.series_uid "
               "JOIN study s ON se.study_uid = s.study_uid JOIN patient p ON s.patient_pk = p.pk")
        order = " ORDER BY p.patient_name, p.patient_id, s.study_date, s.rowid, se.series_number, " \
                "se.rowid, i.instance_number, i.rowid"
        conn = self.connect()
        try:
            if study_uid is not None:
                return [tuple(r) for r in conn.execute(sql + " WHERE s.study_uid = ?" + order,
                                                       (study_uid,))]
            if sop_instance_uids is None:
                return [tuple(r) for r in conn.execute(sql + order)]
            uids = list(sop_instance_uids)
            out: list[tuple] = []
            for start in range(0, len(uids), 500):
                chunk = uids[start:start + 500]
                out.extend(tuple(r) for r in conn.execute(
                    f"{sql} WHERE i.sop_instance_uid IN ({', '.join('?' * len(chunk))}){order}", chunk))
            return out
        finally:
            conn.close()

    @_settled
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

    # ---------------------------------------------------------------- forward queue

    @_settled
    def enqueue_forward(self, sop_instance_uid: str, destination: str, now: float) -> None:
        """Queue (or re-arm) forwarding of an instance to a node of the address book."""
        self.enqueue_forwards(sop_instance_uid, [destination], now)

    @_settled
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

    @_settled
    def due_forwards(self, now: float, limit: int = 100) -> list[ForwardItem]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, sop_instance_uid, destination, state, attempts, next_attempt_at, last_error "
                "FROM forward_queue WHERE state = 'pending' AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, id LIMIT ?", (now, limit)).fetchall()
        return [ForwardItem(*r) for r in rows]

    @_settled
    def next_forward_at(self) -> float | None:
        """When the earliest pending forward is due (``None``: nothing pending); the forwarder
        sleeps until then instead of polling."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(next_attempt_at) FROM forward_queue WHERE state = 'pending'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @_settled
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

    @_settled
    def modality_of(self, sop_instance_uid: str) -> str:
        """The Modality of an instance's series ('' if unknown), for forwarding rules."""
        with self._lock:
            row = self._conn.execute(
                "SELECT se.modality FROM instance i JOIN series se ON i.series_uid = se.series_uid "
                "WHERE i.sop_instance_uid = ?", (sop_instance_uid,)).fetchone()
        return row[0] if row is not None and row[0] else ""

    @_settled
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


# -------------------------------------------------------------------- C-FIND query building


def _check_level(level: str, model: str) -> str:
    level = (level or "").strip().upper()
    if model not in ("patient", "study"):
        raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH, f"unknown information model {model!r}")
    if level not in LEVELS or (model == "study" and level == "PATIENT"):
        raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH,
                         f"invalid Query/Retrieve Level {level!r} for the {model} root model")
    return level


def _effective_level(level: str, model: str) -> str:
    """In the Study Root model patient attributes are study attributes (PS3.4 C.6.2.1)."""
    return "STUDY" if model == "study" and level == "PATIENT" else level


_SKIPPED_TAGS = {0x00080052, 0x00080005}  # QueryRetrieveLevel, SpecificCharacterSet


@dataclass
class _Out:
    tag: int
    vr: str
    kind: str          # "col", "derived", "const", "empty"
    index: int = -1    # position in the SELECT list
    const: object = None
    multi: bool = False


class MatchingRows:
    """The rows (tuples) of a compiled C-FIND, fetched ``batch`` at a time on a connection
    of their own (taken at the first row, handed to ``done`` — or closed — after the last
    or by ``close``). ``ready()`` is the number of rows in hand: the C-FIND SCP writes the
    responses it holds before asking for a row that needs a fetch, which may scan the
    index for a while (``qr_find_scp``)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], sql: str, params: list[object],
                 batch: int, done: Callable[[sqlite3.Connection], None] | None = None) -> None:
        self._connect, self._sql, self._params, self._batch = connect, sql, params, batch
        self._release = done
        self._conn: sqlite3.Connection | None = None
        self._cursor: sqlite3.Cursor | None = None
        self._rows: list = []
        self._next = 0
        self._done = False

    def __iter__(self) -> MatchingRows:
        return self

    def __next__(self) -> tuple:
        if self._next >= len(self._rows):
            if self._done:
                raise StopIteration
            try:
                if self._cursor is None:
                    self._conn = self._connect()
                    cursor = self._conn.cursor()
                    cursor.row_factory = None  # plain tuples: read by position only
                    self._cursor = cursor.execute(self._sql, self._params)
                self._rows, self._next = self._cursor.fetchmany(self._batch), 0
            except BaseException:
                self.close()
                raise
            if not self._rows:
                self.close()
                raise StopIteration
        row = self._rows[self._next]
        self._next += 1
        return row

    def ready(self) -> int:
        """Rows that come without a fetch from SQLite."""
        return len(self._rows) - self._next

    def close(self) -> None:
        """Stop: the statement is finished, the connection handed back (or closed), and no
        row comes any more."""
        self._done = True
        cursor, conn = self._cursor, self._conn
        self._rows, self._next, self._cursor, self._conn = [], 0, None, None
        if conn is None:
            return
        try:
            if cursor is not None:
                cursor.close()  # resets the statement: no read transaction stays open
        except Exception:
            conn.close()
            raise
        if self._release is not None:
            self._release(conn)
        else:
            conn.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass


class EncodedMatches:
    """``Index.encoded_responses``: each matching row's response identifier, encoded (bytes)
    where ``FindQuery.encoder`` can, else a Dataset; ``ready()`` as ``MatchingRows``."""

    def __init__(self, rows: MatchingRows, query: FindQuery, transfer_syntax: str) -> None:
        self._rows = rows
        self._query = query
        self._encode = query.encoder(transfer_syntax)

    def __iter__(self) -> EncodedMatches:
        return self

    def __next__(self) -> bytes | Dataset:
        row = next(self._rows)
        data = self._encode(row) if self._encode is not None else None
        return data if data is not None else self._query.response(row)

    def ready(self) -> int:
        return self._rows.ready()

    def close(self) -> None:
        self._rows.close()


class FindQuery:
    """A compiled C-FIND: SQL, parameters and the recipe for each response data set."""

    def __init__(self, level: str, sql: str, params: list[object], outs: list[_Out],
                 charset_requested: bool, unsupported: list[int]) -> None:
        self.level = level
        self.sql = sql
        self.params = params
        self.outs = outs
        self.charset_requested = charset_requested
        #: tags returned empty because the index does not hold them (status FF01 material)
        self.unsupported = unsupported

    def response(self, row: sqlite3.Row | tuple) -> Dataset:
        """The response identifier for one row (PS3.4 C.4.1.2.3).

        Plain text values go in as canonical raw elements (``raw_text_element``) and empty
        ones as zero-length raw elements — what pydicom's reader makes of the same bytes,
        converted by pydicom on access — in a Dataset made directly from them
        (``dataset_codec.new_dataset``): no per-element validation or conversion up front,
        which was most of the time per match. Anything else uses ``add_new``.
        """
        from ..net.dataset_codec import new_dataset, raw_text_element

        elements: dict[int, RawDataElement] = {}
        slow: list[tuple[_Out, object]] = []
        non_ascii = False
        values: list[object] = []
        for out in self.outs:
            value: object
            if out.kind == "empty":
                value = None
            elif out.kind == "const":
                value = out.const
            else:
                value = row[out.index]
                if out.multi:
                    value = [v for v in str(value).split(",") if v] if value else None
                    if value and len(value) == 1:
                        value = value[0]
                elif value == "":
                    value = None
            if isinstance(value, str) and not value.isascii():
                non_ascii = True
            values.append(value)
        codec = "utf_8" if non_ascii else "ascii"
        for out, value in zip(self.outs, values):
            if isinstance(value, int) and not isinstance(value, bool) and out.vr == "IS":
                value = str(value)
            if value is None and out.vr in _EMPTY_RAW_VRS:
                elements[out.tag] = _empty_raw(out.tag, out.vr)
                continue
            raw = raw_text_element(out.tag, out.vr, value, codec) \
                if isinstance(value, (str, list)) else None
            if raw is not None:
                elements[raw.tag] = raw
            else:
                slow.append((out, value))
        elements[_QR_LEVEL_TAG] = _level_raw(self.level)
        if non_ascii:
            elements[_CHARSET_TAG] = _level_raw("ISO_IR 192", _CHARSET_TAG)
        elif self.charset_requested:
            elements[_CHARSET_TAG] = _empty_raw(_CHARSET_TAG, "CS")
        ds = new_dataset(elements, implicit=False)
        for out, value in slow:
            ds.add_new(out.tag, out.vr, value)
        return ds


    def encoder(self, transfer_syntax: str) -> Callable[[sqlite3.Row | tuple], bytes | None] | None:
        """A function giving each row's response identifier already encoded in
        ``transfer_syntax`` (Implicit/Explicit VR Little Endian; None for any other), or None
        for a row it does not handle — then ``response(row)`` builds the Dataset.

        Why: building a Dataset per match and encoding it again was ~70 of the ~100 us a
        match cost the SCP. The bytes are those ``encode_identifier(self.response(row))``
        gives (tests/archive/test_index_counters.py compares them): elements in tag order,
        values padded to even length (PS3.5 7.1), only printable-ASCII single values without
        leading/trailing spaces (anything else: None, the Dataset path).
        """
        from ..net.dataset_codec import transfer_syntax_vr

        implicit = transfer_syntax_vr(transfer_syntax)
        if implicit is None:
            return None
        specs: list[tuple[int, str, str, int, object, bool]] = [
            (out.tag, out.vr, out.kind, out.index, out.const, out.multi) for out in self.outs]
        specs.append((_QR_LEVEL_TAG, "CS", "const", -1, self.level, False))
        if self.charset_requested:
            specs.append((_CHARSET_TAG, "CS", "empty", -1, None, False))
        if any(vr not in _ROW_ENCODED_VRS for _, vr, *_ in specs):
            return None
        specs.sort()
        plan = []
        for tag, vr, kind, index, const, multi in specs:
            group, elem = tag >> 16, tag & 0xFFFF
            if implicit:
                head = struct.Struct("<L").pack
                prefix = struct.pack("<HH", group, elem)
            else:
                head = struct.Struct("<H").pack
                prefix = struct.pack("<HH2s", group, elem, vr.encode())
            check = _SAFE_UI if vr == "UI" else _SAFE_TEXT
            pad = b"\0" if vr == "UI" else b" "
            fixed = None  # the same bytes in every response: encoded once, here
            if kind == "empty" or (kind == "const" and (const is None or const == "")):
                fixed = prefix + head(0)
            elif kind == "const":
                if multi or vr == "PN" or type(const) not in (str, int):
                    return None  # no such constant today: the Dataset path handles it
                text = str(const)
                if type(const) is not int and not check.match(text):
                    return None
                data = text.encode("ascii")
                if len(data) % 2:
                    data += pad
                fixed = prefix + head(len(data)) + data
            plan.append((fixed, prefix, head, pad, vr == "PN", check.match, index, multi))

        return _compile_row_encoder(plan)


def _compile_row_encoder(plan: list[tuple]) -> Callable[[sqlite3.Row | tuple], bytes | None]:
    """The row encoder of ``FindQuery.encoder`` for one plan, as a function of its own: one
    line per element, the bytes that never change joined into constants. Why: a loop over
    the plan that looked up each entry's header, padding and check per value was most of
    a match's cost to the SCP (issue 14); the rules are those the loop applied (each
    element's ``prefix``, length and padded text; None for a value it cannot write)."""
    consts: dict[str, object] = {"_str": str, "_int": int, "_bs": "\\"}
    lines = ["def encode(row):"]
    pieces: list[str] = []   # expressions joined into the identifier, in tag order
    run: list[bytes] = []    # fixed bytes not yet named

    def name(value: object) -> str:
        key = f"_c{len(consts)}"
        consts[key] = value
        return key

    for n, (fixed, prefix, head, pad, is_pn, ok, index, multi) in enumerate(plan):
        if fixed is not None:
            run.append(fixed)
            continue
        if run:
            pieces.append(name(b"".join(run)))
            run = []
        empty, pre, hd, pd, chk = (name(prefix + head(0)), name(prefix), name(head), name(pad),
                                   name(ok))
        lines += [f"    v = row[{index}]",
                  "    if v is None or v == '':",
                  f"        e{n} = {empty}",
                  "    else:",
                  "        if type(v) is _int:",
                  "            t = _str(v)"]
        if multi:
            lines += ["        else:",
                      "            vs = [x for x in _str(v).split(',') if x]",
                      "            for x in vs:",
                      f"                if not {chk}(x):",
                      "                    return None",
                      "            t = _bs.join(vs)"]
        else:
            lines += ["        else:",
                      "            t = _str(v)",
                      f"            if not {chk}(t):",
                      "                return None"]
        if is_pn:
            lines += ["        if _bs in t or t.endswith('^') or '^=' in t or t.endswith('='):",
                      "            return None"]
        lines += ["        d = t.encode('ascii')",
                  "        if len(d) % 2:",
                  f"            d += {pd}",
                  f"        e{n} = {pre} + {hd}(len(d)) + d"]
        pieces.append(f"e{n}")
    if run:
        pieces.append(name(b"".join(run)))
    lines.append(f"    return b''.join(({', '.join(pieces)},))")
    exec("\n".join(lines), consts)  # noqa: S102 - our own source, built from the plan above
    return consts["encode"]  # type: ignore[return-value]


#: Printable ASCII without backslash, no leading or trailing space: a value pydicom writes as
#: it is (a backslash would make it multi-valued, PS3.5 6.4).
_SAFE_TEXT = re.compile(r"[!-\[\]-~](?:[ -\[\]-~]*[!-\[\]-~])?\Z")
_SAFE_UI = re.compile(r"[0-9.]{1,64}\Z")
#: VRs the row encoder writes (short explicit-VR header, text); others go through pydicom.
_ROW_ENCODED_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM",
                              "UI"})

_QR_LEVEL_TAG = 0x00080052
#: Text VRs whose empty raw element pydicom converts to the value ``add_new(..., None)`` gives.
_EMPTY_RAW_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH",
                            "ST", "TM", "UC", "UI", "UR", "UT"})


@functools.lru_cache(maxsize=256)
def _empty_raw(tag: int, vr: str) -> RawDataElement:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    return RawDataElement(Tag(tag), vr, 0, None, 0, False, True, True, False)


@functools.lru_cache(maxsize=8)
def _level_raw(value: str, tag: int = _QR_LEVEL_TAG) -> RawDataElement:
    """The raw CS element of a constant (Query/Retrieve Level, Specific Character Set)."""
    from ..net.dataset_codec import raw_text_element

    raw = raw_text_element(tag, "CS", value)
    assert raw is not None
    return raw


def build_find(level: str, identifier: Dataset, model: str = "study", *,
               combined_datetime: bool = False, retrieve_ae_title: str = "") -> FindQuery:
    """Compile a C-FIND identifier (PS3.4 C.4.1.2, C.4.1.3.1).

    - Keys of a level below the Query/Retrieve Level → ``QueryError(0xA900)`` (hierarchical search).
    - Keys at or above the level are matched and returned; the Study Root model treats patient keys
      as study keys.  Missing unique keys of upper levels are accepted (a relational-style
      convenience most SCUs rely on).
    - Keys the index does not hold, and sequences, are returned empty (PS3.4 C.4.1.2.3: optional
      keys an SCP does not support); ``FindQuery.unsupported`` lists them so that the SCP can send
      status 0xFF01.  Private and group-length elements are ignored.
    - The level's unique key is always returned; SpecificCharacterSet is returned when asked, and
      set to ISO_IR 192 whenever a returned value is not ASCII.
    """
    level = _check_level(level, model)
    rank = _RANK[level]
    selects: list[str] = []
    outs: list[_Out] = []
    conds: list[str] = []
    params: list[object] = []
    unsupported: list[int] = []
    seen: set[str] = set()
    charset_requested = "SpecificCharacterSet" in identifier

    for elem in identifier:
        tag = elem.tag
        if tag in _SKIPPED_TAGS or tag.element == 0 or tag.is_private or tag.group == 2:
            continue
        keyword = elem.keyword
        vr = elem.VR if elem.VR not in ("UN", None) else (_dictionary_vr(tag) or "UN")
        if vr == "SQ":
            outs.append(_Out(tag, "SQ", "empty"))
            unsupported.append(tag)
            continue
        value = value_text(elem.value)
        if keyword in KEYS:
            key = KEYS[keyword]
            _check_key_level(keyword, _effective_level(key.level, model), rank)
            seen.add(keyword)
            outs.append(_Out(tag, vr, "col", len(selects)))
            selects.append(f"{key.alias}.{key.column}")
            if combined_datetime and keyword in ("StudyDate", "StudyTime"):
                continue  # matched together below
            cond = matching.condition(f"{key.alias}.{key.match_column}", key.vr, value)
            if cond:
                conds.append(cond[0])
                params.extend(cond[1])
        elif keyword in DERIVED:
            d = DERIVED[keyword]
            _check_key_level(keyword, _effective_level(d.level, model), rank)
            outs.append(_Out(tag, vr, "derived", len(selects), multi=d.exists is not None))
            selects.append(d.select)
            if d.exists is not None:
                cond = matching.any_of(d.column, d.vr, value)
                if cond:
                    conds.append(d.exists.format(cond=cond[0]))
                    params.extend(cond[1])
            else:
                cond = matching.condition(d.select, "IS", value)
                if cond:
                    conds.append(cond[0])
                    params.extend(cond[1])
        elif keyword == "InstanceAvailability":
            outs.append(_Out(tag, vr, "const", const="ONLINE"))
        elif keyword == "RetrieveAETitle":
            outs.append(_Out(tag, vr, "const", const=retrieve_ae_title or None))
        else:
            outs.append(_Out(tag, vr, "empty"))
            unsupported.append(tag)

    if combined_datetime:
        cond = matching.combined_datetime_condition(
            "s.study_date_m", "s.study_time_m", value_text(identifier.get("StudyDate")),
            value_text(identifier.get("StudyTime")))
        if cond is None:  # one of them universal: match separately
            for kw in ("StudyDate", "StudyTime"):
                if kw in identifier:
                    key = KEYS[kw]
                    c = matching.condition(f"s.{key.match_column}", key.vr,
                                           value_text(identifier.get(kw)))
                    if c:
                        conds.append(c[0])
                        params.extend(c[1])
        else:
            conds.append(cond[0])
            params.extend(cond[1])

    unique = UNIQUE_KEYS[level]
    if unique not in seen:
        key = KEYS[unique]
        outs.append(_Out(key.tag, key.vr, "col", len(selects)))
        selects.append(f"{key.alias}.{key.column}")

    joins = {
        "PATIENT": "patient p",
        "STUDY": "study s JOIN patient p ON s.patient_pk = p.pk",
        "SERIES": "series se JOIN study s ON se.study_uid = s.study_uid "
                  "JOIN patient p ON s.patient_pk = p.pk",
        "IMAGE": "instance i JOIN series se ON i.series_uid = se.series_uid "
                 "JOIN study s ON se.study_uid = s.study_uid JOIN patient p ON s.patient_pk = p.pk",
    }[level]
    sql = f"SELECT {', '.join(selects)} FROM {joins}"
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    # No ORDER BY: PS3.4 C.4.1.3 sets no order of responses, and a sort would wait for the
    # last match before sending the first; a scan comes in rowid order, an indexed key in
    # the index's order (tests/archive/test_index_counters.py checks the plans).
    return FindQuery(level, sql, params, outs, charset_requested, unsupported)


def _dictionary_vr(tag: int) -> str | None:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _check_key_level(keyword: str, key_level: str, rank: int) -> None:
    if _RANK[key_level] > rank:
        raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH,
                         f"{keyword} is a {key_level} key, below the Query/Retrieve Level "
                         f"{LEVELS[rank]} (hierarchical query)")
