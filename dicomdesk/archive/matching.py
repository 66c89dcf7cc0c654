"""Attribute matching of PS3.4 C.2.2.2 as SQL fragments and as a Python predicate.

The index keeps, next to each original value, a *matching form* (``stored_form``) so that every kind
of matching becomes a plain comparison SQLite can use an index for:

- PN values are case-folded (PACS users expect ``DOE*`` to find ``Doe^John``; C.2.2.2.1 lets the SCP
  match PN case-insensitively) and lose trailing component separators (``Doe^John^^`` is ``Doe^John``);
- DA values become ``YYYYMMDD`` (the old ``YYYY.MM.DD`` form is accepted);
- TM values become ``HHMMSS.FFFFFF`` padded with zeros, DT values ``YYYYMMDDHHMMSS.FFFFFF`` (the UTC
  offset is ignored: the archive has no reliable local time zone of the modality);
- IS values become integers.

Query values are parsed here and turned into a ``(sql, params)`` pair (``condition``) or evaluated in
Python against a stored value (``matches``, used by the worklist).  Both paths share the parsing so
they cannot disagree; the tests run the same table through both.

Kinds (C.2.2.2): single value (C.2.2.2.1), universal (C.2.2.2.3: empty value, or ``*`` alone),
wildcard ``*``/``?`` (C.2.2.2.4, via SQLite GLOB whose own special ``[`` is escaped, so ``_`` and
``%`` stay literal), range for DA/TM/DT (C.2.2.2.5: ``A-B``, ``A-``, ``-B``; a single TM/DT value
matches every instant at its precision), list of UIDs (C.2.2.2.2, backslash separated), and the
combined Study Date + Study Time range (C.2.2.2.5.1, Extended Negotiation "combined datetime").
A value that cannot be a valid query (``2020-01-01``, ``abc`` for a date) raises ``QueryError`` with
status 0xA900 (PS3.4 C.4.1.1.4: Identifier does not match SOP Class).
"""

from __future__ import annotations

import re
import sys

from ..net.statuses import C_FIND_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS as STATUS_IDENTIFIER_DOES_NOT_MATCH

#: VRs compared as text, with wildcard support (C.2.2.2.4 lists these minus UI/dates/numbers).
TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT", "AS"})
RANGE_VRS = frozenset({"DA", "TM", "DT"})

_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_DT = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?(?:[+-](\d{2})(\d{2}))?$"
)


class QueryError(Exception):
    """A query the SCP refuses; ``status`` is the C-FIND/C-MOVE/C-GET failure status to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"0x{status:04X}: {reason}")
        self.status = status
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Normalisation of stored values (the "matching form" kept in the index)


def fold_person_name(value: str) -> str:
    """Case-fold a PN and drop empty trailing components/groups (PS3.5 6.2: they are insignificant)."""
    groups = [g.rstrip("^ ") for g in str(value).strip().split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups).casefold()


def _norm_da(value: str) -> str:
    v = value.strip()
    if len(v) == 10 and v[4] == "." and v[7] == ".":  # ACR-NEMA YYYY.MM.DD
        v = v.replace(".", "")
    return v if _DA.match(v) else ""


def _tm_parts(value: str) -> tuple[str, str | None, str | None, str | None] | None:
    m = _TM.match(value.strip().replace(":", ""))
    return m.groups() if m else None  # type: ignore[return-value]


def _tm_bound(value: str, upper: bool) -> str:
    """``HHMMSS.FFFFFF`` for the first (or last, if ``upper``) instant at the value's precision."""
    parts = _tm_parts(value)
    if parts is None:
        raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH, f"invalid TM value {value!r}")
    hh, mm, ss, frac = parts
    fill = "59" if upper else "00"
    digits = hh + (mm or fill) + (ss or fill)
    if frac is None:
        frac = ("9" if upper else "0") * 6
    else:
        frac = frac.ljust(6, "9" if upper else "0")
    return f"{digits}.{frac}"


def _norm_tm(value: str) -> str:
    try:
        return _tm_bound(value, upper=False)
    except QueryError:
        return ""


def _dt_bound(value: str, upper: bool) -> str:
    m = _DT.match(value.strip())
    if m is None or not _valid_offset(m.group(8), m.group(9)):
        raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH, f"invalid DT value {value!r}")
    year, month, day, hh, mi, ss, frac = m.groups()[:7]
    if upper:
        out = year + (month or "12") + (day or "31") + (hh or "23") + (mi or "59") + (ss or "59")
        frac = (frac or "").ljust(6, "9")
    else:
        out = year + (month or "01") + (day or "01") + (hh or "00") + (mi or "00") + (ss or "00")
        frac = (frac or "").ljust(6, "0")
    return f"{out}.{frac}"


def _valid_offset(hours: str | None, minutes: str | None) -> bool:
    return hours is None or (int(hours) <= 14 and int(minutes or "0") < 60)


def _norm_dt(value: str) -> str:
    try:
        return _dt_bound(value, upper=False)
    except QueryError:
        return ""


def stored_form(vr: str, value: object) -> str | int | None:
    """The matching form of a stored value (what the index keeps in its ``*_m`` column)."""
    if value is None:
        return "" if vr != "IS" else None
    text = str(value)
    if vr == "PN":
        return fold_person_name(text)
    if vr == "DA":
        return _norm_da(text)
    if vr == "TM":
        return _norm_tm(text)
    if vr == "DT":
        return _norm_dt(text)
    if vr == "IS":
        try:
            return int(text.strip())
        except ValueError:
            return None
    if vr == "UI":
        return text.strip("\0 ")
    return text.strip()


# --------------------------------------------------------------------------------------------
# Parsing of query values


def value_text(value: object) -> str:
    """The text of a data element value as a query or stored string (None → ''; a multi-value,
    as pydicom splits ``A\\B``, is joined back with backslashes)."""
    if value is None:
        return ""
    if isinstance(value, _multi_value_types()):
        return "\\".join(str(v) for v in value)
    return str(value)


def _multi_value_types() -> tuple[type, ...]:
    """list, tuple and pydicom's MultiValue — known without importing pydicom: if it was
    never imported, no value is one (``dicomdesk serve`` starts without it)."""
    module = sys.modules.get("pydicom.multival")
    return (list, tuple) if module is None else (list, tuple, module.MultiValue)


def is_universal(value: object) -> bool:
    """C.2.2.2.3: zero length, or ``*`` alone (equivalent for every VR), matches everything."""
    if value is None:
        return True
    text = str(value).strip()
    return text in ("", "*")


def has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def glob_pattern(value: str) -> str:
    """Turn a DICOM wildcard value into a SQLite GLOB pattern: ``*``/``?`` keep their meaning,
    ``[`` (GLOB's only other special) is made literal.  ``_`` and ``%`` need nothing (not LIKE)."""
    return value.replace("[", "[[]")


def _wildcard_regex(value: str) -> re.Pattern[str]:
    parts = []
    for ch in value:
        parts.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def _split_range(vr: str, value: str) -> tuple[str | None, str | None] | None:
    """``(lo, hi)`` bounds in matching form for a DA/TM/DT value; ``None`` side means open."""
    v = value.strip()
    if vr == "DT":
        # A DT may carry a "-ZZXX" offset, so only split where the whole value is not one DT.
        try:
            return _dt_bound(v, False), _dt_bound(v, True)
        except QueryError:
            pass
    pieces = v.split("-")
    if len(pieces) == 1:
        lo_text = hi_text = v
    elif vr == "DT" and len(pieces) > 2:
        lo_text = hi_text = None
        for i in range(1, len(pieces)):
            left, right = "-".join(pieces[:i]), "-".join(pieces[i:])
            try:
                if left:
                    _dt_bound(left, False)
                if right:
                    _dt_bound(right, True)
            except QueryError:
                continue
            lo_text, hi_text = left, right
            break
        if lo_text is None:
            raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH, f"invalid DT range {value!r}")
        lo_text, hi_text = lo_text or None, hi_text or None
        if lo_text is None and hi_text is None:
            raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH, f"invalid range {value!r}")
        return _bounds(vr, lo_text, hi_text, value)
    elif len(pieces) == 2:
        lo_text, hi_text = pieces[0] or None, pieces[1] or None
        if lo_text is None and hi_text is None:
            raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH, f"invalid range {value!r}")
    else:
        raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH, f"invalid {vr} range {value!r}")
    return _bounds(vr, lo_text, hi_text, value)


def _bounds(vr: str, lo_text: str | None, hi_text: str | None, original: str) -> tuple[str | None, str | None]:
    if vr == "DA":
        lo = _norm_da(lo_text) if lo_text else None
        hi = _norm_da(hi_text) if hi_text else None
        if (lo_text and not lo) or (hi_text and not hi):
            raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH, f"invalid DA value {original!r}")
        return lo, hi
    bound = _tm_bound if vr == "TM" else _dt_bound
    return (
        bound(lo_text, False) if lo_text else None,
        bound(hi_text, True) if hi_text else None,
    )


def _uid_list(value: str) -> list[str]:
    return [u.strip("\0 ") for u in value.split("\\") if u.strip("\0 ")]


def _text_query(vr: str, value: str) -> str:
    v = value.strip() if vr not in ("LT", "ST", "UT") else value.rstrip()
    return fold_person_name(v) if vr == "PN" else v


# --------------------------------------------------------------------------------------------
# SQL and Python evaluation


def condition(column: str, vr: str, value: object) -> tuple[str, list[object]] | None:
    """SQL ``WHERE`` fragment matching ``column`` (the matching-form column) against a query value.

    Returns ``None`` for universal matching (no constraint)."""
    if is_universal(value):
        return None
    text = str(value)
    if vr == "UI":
        uids = _uid_list(text)
        if len(uids) == 1:
            return f"{column} = ?", [uids[0]]
        return f"{column} IN ({', '.join('?' * len(uids))})", list(uids)
    if vr in RANGE_VRS:
        lo, hi = _split_range(vr, text)
        if vr == "DA" and lo is not None and lo == hi:
            return f"{column} = ?", [lo]
        clauses, params = [f"{column} <> ''"], []
        if lo is not None:
            clauses.append(f"{column} >= ?")
            params.append(lo)
        if hi is not None:
            clauses.append(f"{column} <= ?")
            params.append(hi)
        return "(" + " AND ".join(clauses) + ")", params
    if vr == "IS":
        try:
            return f"{column} = ?", [int(text.strip())]
        except ValueError:
            raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH, f"invalid IS value {text!r}") from None
    query = _text_query(vr, text)
    if has_wildcard(query):
        return f"{column} GLOB ?", [glob_pattern(query)]
    return f"{column} = ?", [query]


def any_of(column: str, vr: str, value: object) -> tuple[str, list[object]] | None:
    """Like ``condition`` but a backslash-separated value matches if any of its values matches
    (used for multi-valued derived keys such as ModalitiesInStudy)."""
    if is_universal(value):
        return None
    if vr == "UI":
        return condition(column, vr, value)
    parts = [condition(column, vr, v) for v in str(value).split("\\") if not is_universal(v)]
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    return "(" + " OR ".join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]


def combined_datetime_condition(
    date_column: str, time_column: str, date_value: object, time_value: object
) -> tuple[str, list[object]] | None:
    """C.2.2.2.5.1: with combined datetime matching, ``StudyDate=D1-D2`` and ``StudyTime=T1-T2``
    mean the interval D1T1 .. D2T2 (not "each day between T1 and T2"). ``None`` if either is universal
    (then the two keys are matched separately)."""
    if is_universal(date_value) or is_universal(time_value):
        return None
    dlo, dhi = _split_range("DA", str(date_value))
    tlo, thi = _split_range("TM", str(time_value))
    expr = f"({date_column} || CASE WHEN {time_column} = '' THEN '000000.000000' ELSE {time_column} END)"
    clauses, params = [f"{date_column} <> ''"], []
    if dlo is not None:
        clauses.append(f"{expr} >= ?")
        params.append(dlo + (tlo or "000000.000000"))
    if dhi is not None:
        clauses.append(f"{expr} <= ?")
        params.append(dhi + (thi or "235959.999999"))
    return "(" + " AND ".join(clauses) + ")", params


def matches(vr: str, query: object, stored: object) -> bool:
    """Python twin of ``condition`` for data not in SQLite (worklist items).  A multi-valued stored
    value matches if any of its values matches."""
    if is_universal(query):
        return True
    if stored is None:
        return False
    if isinstance(stored, _multi_value_types()):
        return any(matches(vr, query, s) for s in stored)
    text = str(query)
    form = stored_form(vr, stored)
    if vr == "UI":
        return form in _uid_list(text)
    if vr in RANGE_VRS:
        lo, hi = _split_range(vr, text)
        if form == "":
            return False
        return (lo is None or form >= lo) and (hi is None or form <= hi)  # type: ignore[operator]
    if vr == "IS":
        try:
            return form == int(text.strip())
        except ValueError:
            raise QueryError(STATUS_IDENTIFIER_DOES_NOT_MATCH, f"invalid IS value {text!r}") from None
    q = _text_query(vr, text)
    if has_wildcard(q):
        return _wildcard_regex(q).fullmatch(str(form)) is not None
    return form == q
