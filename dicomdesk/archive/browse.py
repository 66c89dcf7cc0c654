"""Pages of the archive browser, read from the index a level at a time (PS3.4 C.6.1.1 levels).

A window over an archive of a million instances must never list it whole: the browser shows
patients a page at a time and asks for a patient's studies, a study's series and a series'
instances only when the user opens them. Each query here is one keyset page — "the next
``limit`` children after this sort key" — answered from an index whose order *is* the browser's
order (``schema._INDEXES_V2``: no sort, no OFFSET scan), so a page costs the same at the start
of the archive and at its end. The counts shown beside each row are the counters the index
keeps (schema 2); an archive still at schema 1, opened read-only, gets them aggregated.

The search box filters the patient level by PatientName (contains, any case), PatientID and
AccessionNumber (prefix) and StudyDate (a date, ``YYYYMMDD`` or ``YYYY-MM-DD``); under a patient
found by a study key only the matching studies are listed.

Rows are plain tuples of values; the Qt model (``ui/models/archive_tree.py``) formats them.
Every function takes a connection of its own (a reader thread's), never the writer's.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["PAGE", "TREE_COLUMNS", "BrowseRow", "Search", "lineage", "page", "totals", "tree_rows"]

#: Rows per page: one screen and a half of a tree view, a millisecond or so of SQL (docs/internals.md).
PAGE = 200
#: Sort value of a missing SeriesNumber/InstanceNumber (below any IS value, PS3.5 6.2).
NO_NUMBER = -2147483649


@dataclass(frozen=True)
class BrowseRow:
    """One row of the browser.

    ``key`` is the row's position in its parent's order (the keyset of the next page);
    ``ref`` is what its children's query needs (patient pk, study/series UID); ``children``
    the number of children (studies, series, instances; 0 for an instance); ``values`` the
    level's fields, in ``FIELDS[kind]`` order."""

    kind: str
    uid: str
    key: tuple
    ref: object
    children: int
    values: tuple

    def get(self, field: str) -> object:
        return self.values[FIELDS[self.kind].index(field)]


FIELDS = {
    "patient": ("patient_id", "patient_name", "birth_date", "sex", "num_studies", "num_instances"),
    "study": ("study_uid", "study_date", "accession_number", "study_description", "modalities",
              "num_series", "num_instances"),
    "series": ("series_uid", "series_number", "modality", "series_description", "num_instances"),
    "instance": ("sop_instance_uid", "instance_number", "sop_class_uid", "transfer_syntax",
                 "file_size", "path"),
}

CHILD = {"": "patient", "patient": "study", "study": "series", "series": "instance"}


def _has_counters(conn: sqlite3.Connection) -> bool:
    return any(r[1] == "num_instances" for r in conn.execute("PRAGMA table_info(study)"))


def _counts(conn: sqlite3.Connection) -> dict[str, str]:
    """The count expressions: the schema-2 counters, or their aggregates on a schema-1 index."""
    if _has_counters(conn):
        return {"p_studies": "(SELECT COUNT(*) FROM study y WHERE y.patient_pk = p.pk)",
                "p_instances": "(SELECT ifnull(SUM(y.num_instances), 0) FROM study y"
                               " WHERE y.patient_pk = p.pk)",
                "s_series": "s.num_series", "s_instances": "s.num_instances",
                "s_modalities": "s.modalities", "se_instances": "se.num_instances"}
    return {
        "p_studies": "(SELECT COUNT(*) FROM study y WHERE y.patient_pk = p.pk)",
        "p_instances": "(SELECT COUNT(*) FROM instance x JOIN study y ON x.study_uid = y.study_uid"
                       " WHERE y.patient_pk = p.pk)",
        "s_series": "(SELECT COUNT(*) FROM series x WHERE x.study_uid = s.study_uid)",
        "s_instances": "(SELECT COUNT(*) FROM instance x WHERE x.study_uid = s.study_uid)",
        "s_modalities": "(SELECT ifnull(group_concat(DISTINCT x.modality), '') FROM series x"
                        " WHERE x.study_uid = s.study_uid AND x.modality <> '')",
        "se_instances": "(SELECT COUNT(*) FROM instance x WHERE x.series_uid = se.series_uid)",
    }


_DATE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})\Z")


@dataclass(frozen=True)
class Search:
    """The search box's text as index conditions (see the module docstring)."""

    text: str

    @property
    def empty(self) -> bool:
        return not self.text.strip()

    def _params(self) -> tuple[str, str, str]:
        text = self.text.strip()
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        m = _DATE.match(text)
        return f"%{escaped}%", f"{escaped}%", "".join(m.groups()) if m else "-"

    def patient_condition(self) -> tuple[str, list[object]]:
        contains, prefix, date = self._params()
        return ("(p.patient_name LIKE ? ESCAPE '\\' OR p.patient_id LIKE ? ESCAPE '\\' OR EXISTS "
                "(SELECT 1 FROM study s WHERE s.patient_pk = p.pk AND "
                "(s.accession_number LIKE ? ESCAPE '\\' OR s.study_date_m = ?)))",
                [contains, prefix, prefix, date])

    def study_condition(self) -> tuple[str, list[object]]:
        contains, prefix, date = self._params()
        return ("(p.patient_name LIKE ? ESCAPE '\\' OR p.patient_id LIKE ? ESCAPE '\\' OR "
                "s.accession_number LIKE ? ESCAPE '\\' OR s.study_date_m = ?)",
                [contains, prefix, prefix, date])


def page(conn: sqlite3.Connection, kind: str, ref: object = None, after: Sequence | None = None,
         limit: int = PAGE, search: Search | None = None) -> list[BrowseRow]:
    """The next ``limit`` rows of level ``kind`` under ``ref`` (None for patients), after the
    row whose ``key`` is ``after`` (None: from the first), in the browser's order."""
    c = _counts(conn)
    search = search if search is not None and not search.empty else None
    conds: list[str] = []
    params: list[object] = []
    if kind == "patient":
        sql = (f"SELECT p.pk, p.patient_id, p.patient_name, p.patient_birth_date, p.patient_sex, "
               f"{c['p_studies']}, {c['p_instances']} FROM patient p")
        key, order = "(p.patient_name, p.patient_id)", "p.patient_name, p.patient_id"
        if search is not None:
            cond, values = search.patient_condition()
            conds.append(cond)
            params.extend(values)
    elif kind == "study":
        sql = (f"SELECT s.study_uid, s.study_date, s.accession_number, s.study_description, "
               f"{c['s_modalities']}, {c['s_series']}, {c['s_instances']} FROM study s")
        key, order = "(s.study_date, s.study_uid)", "s.study_date, s.study_uid"
        conds.append("s.patient_pk = ?")
        params.append(ref)
        if search is not None:
            sql += " JOIN patient p ON p.pk = s.patient_pk"
            cond, values = search.study_condition()
            conds.append(cond)
            params.extend(values)
    elif kind == "series":
        number = f"ifnull(se.series_number, {NO_NUMBER})"
        sql = (f"SELECT se.series_uid, se.series_number, se.modality, se.series_description, "
               f"{c['se_instances']} FROM series se")
        key, order = f"({number}, se.series_uid)", f"{number}, se.series_uid"
        conds.append("se.study_uid = ?")
        params.append(ref)
    elif kind == "instance":
        number = f"ifnull(i.instance_number, {NO_NUMBER})"
        sql = ("SELECT i.sop_instance_uid, i.instance_number, i.sop_class_uid, i.transfer_syntax, "
               "i.file_size, i.path FROM instance i")
        key, order = f"({number}, i.sop_instance_uid)", f"{number}, i.sop_instance_uid"
        conds.append("i.series_uid = ?")
        params.append(ref)
    else:
        raise ValueError(f"unknown level {kind!r}")
    if after is not None:
        conds.append(f"{key} > ({', '.join('?' * len(after))})")
        params.extend(after)
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    sql += f" ORDER BY {order} LIMIT ?"
    params.append(int(limit))
    return [_row(kind, r) for r in conn.execute(sql, params)]


def _number(value: object) -> int:
    return NO_NUMBER if value is None else int(value)  # type: ignore[arg-type]


def _row(kind: str, r: Sequence) -> BrowseRow:
    """A ``BrowseRow`` of a ``page``/``lineage`` result row (columns in ``page``'s order)."""
    if kind == "patient":
        return BrowseRow("patient", r[1], (r[2], r[1]), r[0], int(r[5] or 0), tuple(r[1:]))
    if kind == "study":
        return BrowseRow("study", r[0], (r[1], r[0]), r[0], int(r[5] or 0), tuple(r))
    if kind == "series":
        return BrowseRow("series", r[0], (_number(r[1]), r[0]), r[0], int(r[4] or 0), tuple(r))
    return BrowseRow("instance", r[0], (_number(r[1]), r[0]), None, 0, tuple(r))


def lineage(conn: sqlite3.Connection, sop_instance_uids: Iterable[str]
            ) -> list[tuple[BrowseRow, BrowseRow, BrowseRow, BrowseRow]]:
    """(patient, study, series, instance) rows of each of these instances — objects that just
    arrived, to be placed under the parents the browser shows (with fresh counts)."""
    c = _counts(conn)
    sql = (f"SELECT p.pk, p.patient_id, p.patient_name, p.patient_birth_date, p.patient_sex, "
           f"{c['p_studies']}, {c['p_instances']}, "
           f"s.study_uid, s.study_date, s.accession_number, s.study_description, "
           f"{c['s_modalities']}, {c['s_series']}, {c['s_instances']}, "
           f"se.series_uid, se.series_number, se.modality, se.series_description, "
           f"{c['se_instances']}, "
           "i.sop_instance_uid, i.instance_number, i.sop_class_uid, i.transfer_syntax, "
           "i.file_size, i.path "
           "FROM instance i JOIN series se ON i.series_uid = se.series_uid "
           "JOIN study s ON se.study_uid = s.study_uid JOIN patient p ON s.patient_pk = p.pk "
           "WHERE i.sop_instance_uid IN ({marks})")
    uids = list(sop_instance_uids)
    out = []
    for start in range(0, len(uids), 500):
        chunk = uids[start:start + 500]
        for r in conn.execute(sql.format(marks=", ".join("?" * len(chunk))), chunk):
            out.append((_row("patient", r[0:7]), _row("study", r[7:14]),
                        _row("series", r[14:19]), _row("instance", r[19:25])))
    return out


def totals(conn: sqlite3.Connection) -> dict[str, int]:
    """Patients, studies, series and instances in the archive (the browser's status line)."""
    out = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
           for t in ("patient", "study", "series")}
    if _has_counters(conn):
        out["instance"] = conn.execute(
            "SELECT ifnull(SUM(num_instances), 0) FROM study").fetchone()[0]
    else:
        out["instance"] = conn.execute("SELECT COUNT(*) FROM instance").fetchone()[0]
    return out


#: Columns of ``tree_rows``: the patient/study/series/instance facts an archive browser shows.
TREE_COLUMNS = ("patient_id", "patient_name", "study_uid", "study_date", "study_description",
                "accession_number", "series_uid", "modality", "series_number",
                "series_description", "sop_instance_uid", "sop_class_uid", "instance_number",
                "transfer_syntax", "file_size", "path")


def tree_rows(conn: sqlite3.Connection, *, sop_instance_uids: Iterable[str] | None = None,
              study_uid: str | None = None) -> list[tuple]:
    """One tuple per instance (``TREE_COLUMNS`` order, ``path`` relative to the archive),
    ordered patient, study, series, instance — the PS3.4 C.6.1 hierarchy the browser shows.
    ``sop_instance_uids`` restricts it to those instances (objects that just arrived),
    ``study_uid`` to one study (export)."""
    sql = ("SELECT p.patient_id, p.patient_name, s.study_uid, s.study_date, s.study_description, "
           "s.accession_number, se.series_uid, se.modality, se.series_number, "
           "se.series_description, i.sop_instance_uid, i.sop_class_uid, i.instance_number, "
           "i.transfer_syntax, i.file_size, i.path "
           "FROM instance i JOIN series se ON i.series_uid = se.series_uid "
           "JOIN study s ON se.study_uid = s.study_uid JOIN patient p ON s.patient_pk = p.pk")
    order = " ORDER BY p.patient_name, p.patient_id, s.study_date, s.rowid, se.series_number, " \
            "se.rowid, i.instance_number, i.rowid"
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
