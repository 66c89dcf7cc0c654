"""The index's schema: the keys it holds, its tables, counters, migrations (PS3.4 C.6).

One table per level of the PS3.4 C.6 information model (``patient``, ``study``, ``series``,
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

Also the rows the index takes and gives (``InstanceRecord``, ``InstanceRef``).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import matching

if TYPE_CHECKING:  # pydicom loads on first use: `dicomdesk serve` answers C-ECHO without it
    from pydicom.dataset import Dataset

SCHEMA_VERSION = 2
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
