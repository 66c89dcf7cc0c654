"""C-FIND SCP matching in SQL (PS3.4 C.4.1.3.1): an identifier compiled into a query
(``build_find``), its rows read in batches (``MatchingRows``) and each row's response,
as a Dataset (``FindQuery.response``) or already encoded (``FindQuery.encoder``).
"""

from __future__ import annotations

import functools
import re
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import matching
from .matching import STATUS_IDENTIFIER_DOES_NOT_MATCH, QueryError, value_text
from .schema import DERIVED, KEYS, LEVELS, UNIQUE_KEYS, _CHARSET_TAG, _RANK

if TYPE_CHECKING:  # pydicom loads on first use: `dicomdesk serve` answers C-ECHO without it
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset

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
