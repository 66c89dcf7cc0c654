"""``dicomdesk worklist``: query a Modality Worklist SCP (PS3.4 Annex K.6), like ``findscu -W``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import add_peer_arguments, parse_keys, peer_from_args

#: Columns of the plain output: (heading, keyword, inside the Scheduled Procedure Step item).
COLUMNS = (
    ("date", "ScheduledProcedureStepStartDate", True),
    ("time", "ScheduledProcedureStepStartTime", True),
    ("modality", "Modality", True),
    ("station", "ScheduledStationAETitle", True),
    ("patient", "PatientName", False),
    ("id", "PatientID", False),
    ("accession", "AccessionNumber", False),
    ("procedure", "ScheduledProcedureStepDescription", True),
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worklist", help="query a modality worklist (C-FIND, PS3.4 K.6)",
        description="Query a Modality Worklist SCP. Scheduled Procedure Step keys "
                    "(Modality, ScheduledStationAETitle, ScheduledProcedureStepStartDate...) "
                    "are put inside the Scheduled Procedure Step Sequence for you.")
    add_peer_arguments(parser)
    parser.add_argument("-k", "--key", action="append", default=[], metavar="KEY=VALUE",
                        help="matching key (keyword or gggg,eeee); KEY alone asks for it back")
    parser.add_argument("--json", action="store_true", help="print the matches as DICOM JSON")
    parser.set_defaults(func=run)


def _value(ds: Any, keyword: str, in_sps: bool) -> str:
    if in_sps:
        items = ds.get("ScheduledProcedureStepSequence") or []
        ds = items[0] if len(items) else None
        if ds is None:
            return ""
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def run(args: argparse.Namespace) -> int:
    from ..operations.modality_worklist import worklist

    peer = peer_from_args(args)
    keys = parse_keys(args.key)
    matches = []

    def show(ds: Any) -> None:
        matches.append(ds)
        if not args.json:
            print("  ".join(f"{_value(ds, keyword, sps) or '-'}" for _, keyword, sps in COLUMNS),
                  flush=True)

    if not args.json:
        print("  ".join(heading for heading, _, _ in COLUMNS))
    result = worklist(peer, keys, on_match=show)
    if args.json:
        json.dump([ds.to_json_dict() for ds in matches], sys.stdout, indent=1)
        print()
    if result.error:
        print(f"worklist {peer.describe()}: {result.error}", file=sys.stderr)
        return 1
    print(f"{len(matches)} scheduled procedure step(s), {result.status}", file=sys.stderr)
    return 0
