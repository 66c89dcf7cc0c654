"""``dicomdesk diagnose``: the association doctor on the command line.

Proposes what the given files need (or a standard set), then prints, in words, what the peer
accepted and refused and why (PS3.8 7.1.1.13 / Table 9-18), its maximum PDU length, role
selection and user identity replies and implementation name, or why it rejected the
association (PS3.8 Table 9-21). Exit status 0 when the association was accepted, 1 otherwise.
"""

from __future__ import annotations

import argparse

from .common import add_peer_arguments, peer_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diagnose", help="explain what a node accepts: contexts, transfer syntaxes, roles, limits")
    add_peer_arguments(parser)
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="files or folders whose SOP classes and transfer syntaxes to propose "
                             "(default: a standard set)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..operations.doctor import diagnose

    peer = peer_from_args(args)
    diagnosis = diagnose(peer, files=args.paths or None)
    print(diagnosis.report())
    return 0 if diagnosis.ok else 1
