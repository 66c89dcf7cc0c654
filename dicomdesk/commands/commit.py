"""``dicomdesk commit``: ask a node to commit stored instances (Storage Commitment, PS3.4 J.3)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_peer_arguments, fail, peer_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "commit", help="request storage commitment for files (N-ACTION, PS3.4 J.3)",
        description="Send a Storage Commitment request for the files' SOP instances and wait "
                    "for the result (N-EVENT-REPORT), on the same association or on a new one "
                    "to our AE title: the peer must know our AE title, this host and --port. "
                    "--timeout bounds both the connection and the wait for the result.")
    add_peer_arguments(parser)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="DICOM files to commit")
    parser.add_argument("--port", dest="listen_port", type=int, default=0,
                        help="port on which we accept the result on a new association [any free]")
    parser.add_argument("--bind", default="127.0.0.1",
                        help="address on which we listen for the result [127.0.0.1]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..operations.commitment import commit, describe_reason

    # HOST PORT PATH...: argparse gives PORT to "port" only when it is a number.
    if args.port is not None and not str(args.port).isdigit():
        args.paths.insert(0, Path(args.port))
        args.port = None
    peer = peer_from_args(args)
    files = [path for path in args.paths]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        fail(f"not a file: {', '.join(missing)}")
    if not 0 <= args.listen_port < 65536:
        fail(f"--port {args.listen_port} is out of range 0-65535")

    def listening(port: int) -> None:
        print(f"listening for the result as {peer.calling_aet} on {args.bind}:{port}",
              file=sys.stderr, flush=True)

    result = commit(peer, files, timeout=args.timeout, listen_port=args.listen_port,
                    listen_address=args.bind, on_listening=listening)
    for uid in result.committed:
        print(f"committed  {uid}")
    for uid, reason in result.failed:
        print(f"failed     {uid}  {describe_reason(reason)}")
    if result.error:
        print(f"commit {peer.describe()}: {result.error}", file=sys.stderr)
        return 1
    print(f"{len(result.committed)} instance(s) committed (transaction {result.transaction_uid})",
          file=sys.stderr)
    return 0
