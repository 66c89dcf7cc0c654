"""``dicomdesk find`` / ``get`` / ``move``: Query/Retrieve from the command line (PS3.4 Annex C).

Keys are given as ``-k KEY=VALUE`` with KEY a keyword or a ``gggg,eeee`` tag, as DCMTK's
findscu does; an empty VALUE asks for the attribute back. ``find`` prints a table whose
columns are the requested keys (or one JSON object per match with ``--json``); ``get`` and
``move`` print progress from the pending responses and exit 0 only when every
sub-operation succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .common import add_peer_arguments, fail, parse_keys, peer_from_args

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    find = subparsers.add_parser("find", help="query a node (C-FIND)")
    _add_query_arguments(find)
    find.add_argument("--json", action="store_true", help="one JSON object per match")
    find.set_defaults(func=run_find)

    get = subparsers.add_parser("get", help="retrieve matches into a folder (C-GET)")
    _add_query_arguments(get)
    get.add_argument("--out", required=True, help="folder for the received files")
    get.set_defaults(func=run_get)

    move = subparsers.add_parser("move", help="have a node send matches to a destination (C-MOVE)")
    _add_query_arguments(move)
    move.add_argument("--dest", required=True, metavar="AET", help="move destination AE title (-aem)")
    move.set_defaults(func=run_move)


def _add_query_arguments(parser: argparse.ArgumentParser) -> None:
    add_peer_arguments(parser)
    parser.add_argument("--level", "-L", required=True, type=str.upper, choices=LEVELS,
                        help="query/retrieve level")
    parser.add_argument("--model", "-m", type=str.lower, choices=("patient", "study"), default=None,
                        help="information model [study; patient for --level PATIENT]")
    parser.add_argument("-k", "--key", action="append", default=[], metavar="KEY=VALUE",
                        dest="keys", help="matching or return key, by keyword or gggg,eeee "
                        "(repeatable; empty VALUE: return the attribute)")


def one_blas_thread() -> None:
    """Ask numpy's OpenBLAS for no thread pool, unless the user chose a size: pydicom imports
    numpy, OpenBLAS starts a worker per core as it loads, and those workers spin for a while
    on a core the server (often on this machine) and this process need, and must be stopped
    at exit. A query does no linear algebra. Call before pydicom is imported (it is read once)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _prepare(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    from ..operations.query import build_identifier, resolve_model

    peer = peer_from_args(args)
    keys = parse_keys(args.keys)
    try:
        resolve_model(args.level, args.model)
        build_identifier(args.level, keys)  # reports a bad key before connecting
    except ValueError as exc:
        fail(str(exc))
    return peer, keys


# ---------------------------------------------------------------------------- find
def run_find(args: argparse.Namespace) -> int:
    one_blas_thread()
    from ..operations.query import find, parse_key

    peer, keys = _prepare(args)
    columns = [(parse_key(k)[0], parse_key(k)[2]) for k in keys]

    rows: list[list[str]] = []
    count = 0

    def on_match(ds: Any) -> None:
        # Only what is printed is kept (the requested columns), never the decoded match:
        # whatever a peer adds to each match costs no memory here.
        nonlocal count
        count += 1
        if args.json:
            print(json.dumps(match_to_json(ds), ensure_ascii=False), flush=True)
        else:
            rows.append(table_row(columns, ds))

    result = find(peer, args.level, keys, args.model, on_match=on_match, keep_matches=False)
    if not args.json:
        print_rows(columns, rows)
    if result.error:
        print(f"find {peer.describe()} failed: {result.error}", file=sys.stderr)
        return 1
    print(f"{count} match(es); {result.status}", file=sys.stderr)
    return 0


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)
    return str(value)


def _json_value(elem: Any) -> Any:
    value = elem.value
    if elem.VR == "SQ":
        return [match_to_json(item) for item in value]
    if value is None or value == "":
        return None
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_json_scalar(v) for v in value]
    return _json_scalar(value)


def _json_scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):  # IS values are int subclasses
        return int(value)
    if isinstance(value, float):  # DS values are float subclasses
        return float(value)
    return str(value)


def match_to_json(ds: Any) -> dict[str, Any]:
    """A match as keyword → value (tags without a keyword as ``gggg,eeee``)."""
    out: dict[str, Any] = {}
    for elem in ds:
        name = elem.keyword or f"{elem.tag.group:04X},{elem.tag.element:04X}"
        out[name] = _json_value(elem)
    return out


def _table_columns(columns: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return columns or [(0x00080052, "QueryRetrieveLevel")]


def table_row(columns: list[tuple[int, str]], ds: Any) -> list[str]:
    """One match's cells for ``print_rows``."""
    return [_text(ds[tag].value) if tag in ds else "" for tag, _ in _table_columns(columns)]


def print_rows(columns: list[tuple[int, str]], rows: list[list[str]]) -> None:
    """Rows of ``table_row`` as aligned columns, one per requested key."""
    columns = _table_columns(columns)
    headers = [name for _, name in columns]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


# ---------------------------------------------------------------------------- get / move
def _progress(label: str):
    def report(p: Any) -> None:
        remaining = "?" if p.remaining is None else p.remaining
        print(f"{label}: remaining {remaining}, completed {p.completed}, failed {p.failed}, "
              f"warning {p.warning}", file=sys.stderr, flush=True)
    return report


def _finish(label: str, peer: Any, result: Any) -> int:
    print(f"{label}: {result.completed} completed, {result.failed} failed, {result.warning} warning; "
          f"{result.status if result.status is not None else 'no final status'}")
    for uid in result.failed_uids:
        print(f"  failed: {uid}")
    if result.error:
        print(f"{label} {peer.describe()} failed: {result.error}", file=sys.stderr)
    return 0 if result.ok else 1


def run_get(args: argparse.Namespace) -> int:
    from ..operations.query import get

    peer, keys = _prepare(args)
    result = get(peer, args.level, keys, args.out, args.model, progress=_progress("get"))
    return _finish("get", peer, result)


def run_move(args: argparse.Namespace) -> int:
    from ..operations.query import move

    peer, keys = _prepare(args)
    result = move(peer, args.dest, args.level, keys, args.model, progress=_progress("move"))
    return _finish("move", peer, result)
