"""``dicomdesk serve``: run the local server in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the local DICOM server (Ctrl-C stops it)")
    parser.add_argument("--port", type=int, default=11112, help="TCP port [11112]")
    parser.add_argument("--aet", default="DICOMDESK", help="our AE title [DICOMDESK]")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    parser.add_argument("--storage", type=Path, default=None,
                        help="folder for received objects and the index [user data folder]")
    parser.add_argument("--max-associations", type=int, default=32)
    parser.add_argument("--max-pdu", type=int, default=262144, help="maximum PDU we receive [262144]")
    parser.add_argument("--nodes", type=Path, default=None, help="address book TOML file")
    parser.add_argument("--worklist", type=Path, default=None, metavar="DIR",
                        help="serve Modality Worklist queries from the *.wl/*.dcm items in DIR")
    parser.add_argument("--forward", default=None, metavar="NODE[,NODE]",
                        help="forward every received object to these address-book nodes")
    parser.add_argument("--forward-from", action="append", default=[], metavar="AET",
                        help="forward only objects sent by this calling AE title (repeatable)")
    parser.add_argument("--forward-modality", action="append", default=[], metavar="MOD",
                        help="forward only objects of this modality (repeatable)")
    parser.add_argument("--durable", action=argparse.BooleanOptionalAction, default=True,
                        help="fsync each object before answering C-STORE [--durable]")
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    from .. import config

    try:
        rules = ()
        forward = getattr(args, "forward", None)
        if forward:
            rules = (config.ForwardRule(
                destinations=tuple(d for d in forward.split(",") if d.strip()),
                calling_aets=tuple(args.forward_from), modalities=tuple(args.forward_modality)),)
        elif getattr(args, "forward_from", None) or getattr(args, "forward_modality", None):
            raise config.ConfigError("--forward-from/--forward-modality need --forward NODE")
        return config.ServerSettings(aet=args.aet, port=args.port, bind=args.bind,
                                     storage_dir=args.storage or config.default_storage_dir(),
                                     max_associations=args.max_associations,
                                     max_pdu_length=args.max_pdu,
                                     durable=getattr(args, "durable", True),
                                     forward_rules=rules,
                                     worklist_dir=getattr(args, "worklist", None))
    except config.ConfigError as exc:
        print(f"dicomdesk: {exc}", file=sys.stderr)
        raise SystemExit(2)


def run(args: argparse.Namespace) -> int:
    from ..operations.server import LocalServer

    settings = settings_from_args(args)
    server = LocalServer(settings, nodes_path=args.nodes) if _accepts_nodes() else LocalServer(settings)
    from .. import config

    try:
        server.start()
    except OSError as exc:
        print(f"dicomdesk: cannot listen on {settings.bind}:{settings.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    except config.ConfigError as exc:  # e.g. a malformed --nodes file
        print(f"dicomdesk: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("dicomdesk.serve").info(
        "dicomdesk serving as %s on %s:%d, storage %s (Ctrl-C stops)", settings.aet, settings.bind,
        server.port, settings.storage_dir)
    print(f"listening as {settings.aet} on {settings.bind}:{server.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("stopped", flush=True)
    return 0


def _accepts_nodes() -> bool:
    import inspect

    from ..operations.server import LocalServer

    return "nodes_path" in inspect.signature(LocalServer.__init__).parameters
