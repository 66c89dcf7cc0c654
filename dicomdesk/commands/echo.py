"""``dicomdesk echo``: one association, one C-ECHO, what the peer negotiated."""

from __future__ import annotations

import argparse
import sys

from .common import add_peer_arguments, peer_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("echo", help="check that a DICOM node answers (C-ECHO)")
    add_peer_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..operations.verification import echo

    peer = peer_from_args(args)
    result = echo(peer)
    if not result.ok:
        print(f"echo {peer.describe()} failed: {result.error}", file=sys.stderr)
        return 1
    print(f"echo {peer.describe()}: {result.status} in {result.rtt_ms:.2f} ms "
          f"(association {result.association_ms:.1f} ms)")
    print(f"  peer implementation: {result.peer_implementation_version or '-'} "
          f"({result.peer_implementation_uid or '-'}), max PDU {result.peer_max_pdu or 'unlimited'}")
    return 0
