"""PS3.4 C.2.2.2 matching: one table, run through both the SQL path and the Python path."""

from __future__ import annotations

import sqlite3

import pytest

from dicomdesk.archive import matching
from dicomdesk.archive.matching import QueryError

# (VR, query value, stored value, expected match)
CASES = [
    # universal matching (C.2.2.2.3)
    ("LO", "", "anything", True),
    ("LO", "*", "anything", True),
    ("DA", "*", "20240101", True),
    ("UI", "", "1.2.3", True),
    ("PN", "", "", True),
    ("DA", "", "", True),
    ("LO", "*", "", True),
    # single value matching, case-sensitive for non-PN text (C.2.2.2.1)
    ("LO", "ABC", "ABC", True),
    ("LO", "ABC", "abc", False),
    ("LO", "ABC ", "ABC", True),
    ("CS", "CT", "MR", False),
    # wildcards (C.2.2.2.4)
    ("LO", "A*", "ABC", True),
    ("LO", "*C", "ABC", True),
    ("LO", "*B*", "ABC", True),
    ("LO", "A*B*C*", "AxxBxxC", True),
    ("LO", "A*B*C", "AxxBxxCx", False),
    ("LO", "A?C", "ABC", True),
    ("LO", "A?C", "AC", False),
    ("LO", "A??", "ABC", True),
    ("LO", "?", "", False),
    # SQL LIKE/GLOB specials are literal
    ("LO", "A_C", "ABC", False),
    ("LO", "A_C", "A_C", True),
    ("LO", "50%", "500", False),
    ("LO", "50%*", "50% off", True),
    ("LO", "[AB]*", "A1", False),
    ("LO", "[AB]*", "[AB]1", True),
    ("LO", "a]b*", "a]bc", True),
    ("SH", "x.y*", "xzy", False),
    # person names: case-insensitive, trailing separators insignificant
    ("PN", "DOE*", "Doe^John", True),
    ("PN", "doe^john", "Doe^John", True),
    ("PN", "Doe^John", "DOE^JOHN^^^", True),
    ("PN", "DOE", "Doe^John", False),
    ("PN", "*JOHN", "Doe^John", True),
    ("PN", "D?E^J*", "Doe^John", True),
    ("PN", "SMITH*", "Doe^John", False),
    ("PN", "Müller*", "MÜLLER^Hans", True),
    ("PN", "d?e^j*", "DOE^JOHN", True),
    ("PN", "doe*", "", False),
    ("CS", "C?", "CT", True),
    # dates: single, ranges open on either side (C.2.2.2.5)
    ("DA", "20240115", "20240115", True),
    ("DA", "20240115", "20240116", False),
    ("DA", "20240101-20240131", "20240115", True),
    ("DA", "20240101-20240131", "20240201", False),
    ("DA", "20240101-20240131", "20240101", True),
    ("DA", "20240101-20240131", "20240131", True),
    ("DA", "20240101-", "20991231", True),
    ("DA", "20240101-", "20231231", False),
    ("DA", "-20240101", "19000101", True),
    ("DA", "-20240101", "20240102", False),
    ("DA", "-20240101", "", False),
    ("DA", "2024.01.15", "20240115", True),
    ("DA", "20240115", "2024.01.15", True),
    # times: precision of the query value decides, ranges inclusive
    ("TM", "10", "103000", True),
    ("TM", "1030", "103059.5", True),
    ("TM", "1030", "1031", False),
    ("TM", "1000-1100", "1059", True),
    ("TM", "1000-1100", "110059", True),
    ("TM", "1000-1100", "1101", False),
    ("TM", "1000-", "235959", True),
    ("TM", "-0900", "0930", False),
    ("TM", "-0900", "085959.999", True),
    ("TM", "10:30-11:00", "104500", True),
    # date-times, with an ignored UTC offset
    ("DT", "20240115", "20240115103000", True),
    ("DT", "20240115-20240116", "20240116235959", True),
    ("DT", "20240115-20240116", "20240117000000", False),
    ("DT", "20240115103000-", "20240115103001", True),
    ("DT", "-202401", "20240131", True),
    ("DT", "20240115+0100", "20240115120000", True),
    ("DT", "20240115-0500-20240116-0500", "20240116", True),
    # lists of UIDs (C.2.2.2.2)
    ("UI", "1.2.3", "1.2.3", True),
    ("UI", "1.2.3", "1.2.30", False),
    ("UI", "1.2.3\\1.2.4\\1.2.5", "1.2.4", True),
    ("UI", "1.2.3\\1.2.4", "1.2.6", False),
    ("UI", "1.2.*", "1.2.3", False),
    ("UI", "1.2.3\\1.2.4", "", False),
    # integers
    ("IS", "3", "3", True),
    ("IS", " 3", "03", True),
    ("IS", "3", "4", False),
]

INVALID = [
    ("DA", "2024-01-01"),
    ("DA", "abc"),
    ("DA", "2024*"),
    ("DA", "-"),
    ("DA", "20240101-20240131-20240201"),
    ("DA", "20241301x-"),
    ("TM", "25:00-xx"),
    ("TM", "1-2-3"),
    ("DT", "2024-01-01T10:00"),
    ("IS", "three"),
]


def _sql_match(vr: str, query: str, stored: str) -> bool:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (v)")
        conn.execute("INSERT INTO t VALUES (?)", (matching.stored_form(vr, stored),))
        cond = matching.condition("v", vr, query)
        sql = "SELECT COUNT(*) FROM t" + (f" WHERE {cond[0]}" if cond else "")
        return conn.execute(sql, cond[1] if cond else []).fetchone()[0] == 1
    finally:
        conn.close()


@pytest.mark.parametrize(("vr", "query", "stored", "expected"), CASES)
def test_sql_condition_matches_as_the_standard_says(vr: str, query: str, stored: str, expected: bool) -> None:
    assert _sql_match(vr, query, stored) is expected


@pytest.mark.parametrize(("vr", "query", "stored", "expected"), CASES)
def test_python_matcher_agrees_with_sql(vr: str, query: str, stored: str, expected: bool) -> None:
    assert matching.matches(vr, query, stored) is expected


@pytest.mark.parametrize(("vr", "query"), INVALID)
def test_invalid_query_values_raise_query_error(vr: str, query: str) -> None:
    with pytest.raises(QueryError) as info:
        matching.condition("v", vr, query)
    assert info.value.status == 0xA900
    with pytest.raises(QueryError):
        matching.matches(vr, query, "20240101")


def test_multi_valued_stored_value_matches_if_any_value_matches() -> None:
    assert matching.matches("AE", "CT1", ["CT2", "CT1"])
    assert not matching.matches("AE", "MR*", ["CT2", "CT1"])


def test_any_of_matches_each_backslash_value() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (v)")
        conn.executemany("INSERT INTO t VALUES (?)", [("CT",), ("MR",), ("US",)])
        sql, params = matching.any_of("v", "CS", "CT\\M*")
        rows = conn.execute(f"SELECT v FROM t WHERE {sql} ORDER BY v", params).fetchall()
    finally:
        conn.close()
    assert [r[0] for r in rows] == ["CT", "MR"]


@pytest.mark.parametrize(("date", "time", "stored_date", "stored_time", "expected"), [
    ("20240105-20240107", "1000-1800", "20240105", "0900", False),
    ("20240105-20240107", "1000-1800", "20240105", "2300", True),
    ("20240105-20240107", "1000-1800", "20240106", "0300", True),
    ("20240105-20240107", "1000-1800", "20240107", "1830", False),
    ("20240105-", "2200-", "20240105", "2230", True),
    ("20240105", "2200-2300", "20240105", "2230", True),
])
def test_combined_datetime_range_spans_days(date: str, time: str, stored_date: str, stored_time: str,
                                            expected: bool) -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (d, tm)")
        conn.execute("INSERT INTO t VALUES (?, ?)",
                     (matching.stored_form("DA", stored_date), matching.stored_form("TM", stored_time)))
        sql, params = matching.combined_datetime_condition("d", "tm", date, time)
        assert (conn.execute(f"SELECT COUNT(*) FROM t WHERE {sql}", params).fetchone()[0] == 1) is expected
    finally:
        conn.close()


def test_combined_datetime_is_none_when_either_key_is_universal() -> None:
    assert matching.combined_datetime_condition("d", "t", "20240101", "") is None
