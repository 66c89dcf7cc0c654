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
    parser.add_argument("--max-pdu", type=int, default=1048576,  # config.ServerSettings' default
                        help="maximum PDU we receive [1048576]")
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
    security = parser.add_argument_group("who may connect (docs/security.md)")
    security.add_argument("--allow", action="append", default=[], metavar="AET[@ADDR]",
                          help="admit only these calling AE titles, optionally only from an IP "
                               "address or network (repeatable; default: anyone)")
    security.add_argument("--users", type=Path, default=None, metavar="FILE",
                          help="require a user identity from this TOML file of salted password hashes "
                               "(make entries with: python -m dicomdesk.security hash NAME)")
    security.add_argument("--strict-aet", action="store_true",
                          help="refuse associations that call another AE title than --aet")
    security.add_argument("--tls-cert", type=Path, default=None, metavar="PEM",
                          help="speak DICOM TLS with this certificate (PS3.15 B.1)")
    security.add_argument("--tls-key", type=Path, default=None, metavar="PEM",
                          help="private key of --tls-cert (if not in the same file)")
    security.add_argument("--tls-ca", type=Path, default=None, metavar="PEM",
                          help="require client certificates signed by this CA")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-object-size", type=_size, default=0, metavar="BYTES",
                        help="refuse larger objects with A700 (suffixes k, M, G, T) [no limit]")
    limits.add_argument("--max-inflated-size", type=_size, default=0, metavar="BYTES",
                        help="refuse deflated objects inflating to more with A700, checked while "
                             "inflating [256M]")
    limits.add_argument("--min-free", type=_size, default=0, metavar="BYTES",
                        help="refuse objects with A700 when the archive's disk has less free space")
    limits.add_argument("--max-matches", type=int, default=0, metavar="N",
                        help="return at most N C-FIND matches, then a warning status [no limit]")
    limits.add_argument("--network-timeout", type=float, default=60.0, metavar="S",
                        help="drop a connection that sends nothing for S seconds [60]")
    limits.add_argument("--acse-timeout", type=float, default=30.0, metavar="S",
                        help="association set-up and release timeout [30]")
    limits.add_argument("--dimse-timeout", type=float, default=60.0, metavar="S",
                        help="wait at most S seconds for a DIMSE message [60]")
    parser.set_defaults(func=run)


def _size(text: str) -> int:
    """``1500``, ``64k``, ``20M``, ``2G`` → bytes (binary multiples)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
    value = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = units.get(value[-1:], 1)
    if value[-1:] in units:
        value = value[:-1]
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 500M)") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size cannot be negative")
    return int(number * factor)


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
                                     worklist_dir=getattr(args, "worklist", None),
                                     allowed_calling_aets=tuple(getattr(args, "allow", ()) or ()),
                                     users_file=getattr(args, "users", None),
                                     require_called_aet=getattr(args, "strict_aet", False),
                                     tls_cert=getattr(args, "tls_cert", None),
                                     tls_key=getattr(args, "tls_key", None),
                                     tls_ca=getattr(args, "tls_ca", None),
                                     max_object_size=getattr(args, "max_object_size", 0),
                                     min_free_bytes=getattr(args, "min_free", 0),
                                     max_inflated_size=getattr(args, "max_inflated_size", 0),
                                     max_find_matches=getattr(args, "max_matches", 0),
                                     network_timeout=getattr(args, "network_timeout", 60.0),
                                     acse_timeout=getattr(args, "acse_timeout", 30.0),
                                     dimse_timeout=getattr(args, "dimse_timeout", 60.0))
    except config.ConfigError as exc:
        print(f"dicomdesk: {exc}", file=sys.stderr)
        raise SystemExit(2)


#: Seconds after the port opens before pydicom is loaded in the background (``_load_pydicom_soon``).
WARM_UP_DELAY_S = 0.5


def _load_pydicom_soon(stop: threading.Event) -> None:
    """Import pydicom, and what reads objects with it, in the background shortly after the
    port opened. The server starts and answers C-ECHO without it (most of a start, issue 14;
    docs/internals.md, timings), but the first object or query needs it: loaded here, they do not wait for it. The
    delay leaves the first client the interpreter while it connects (an import holds the
    GIL for most of its time)."""
    def load() -> None:
        if stop.wait(WARM_UP_DELAY_S):
            return
        try:
            from ..net.pydicom_tables import load_pydicom

            load_pydicom()
            from ..archive import header_values  # noqa: F401
            from ..net import dataset_codec  # noqa: F401
        except Exception:  # a broken install shows itself where it is used, as before
            logging.getLogger("dicomdesk.serve").debug("pydicom not preloaded", exc_info=True)

    threading.Thread(target=load, name="load-pydicom", daemon=True).start()


def run(args: argparse.Namespace) -> int:
    from ..operations.server import LocalServer

    settings = settings_from_args(args)
    from ..operations.server import bind_warning

    warning = bind_warning(settings)
    if warning:
        print(f"dicomdesk: warning: {warning}", file=sys.stderr)
    server = LocalServer(settings, nodes_path=args.nodes)
    from .. import config

    stop = threading.Event()
    # Ctrl-C and `kill` both end the wait and stop cleanly. The handlers are in place before the
    # port opens: a peer (or a script) can reach the server, and signal it, the moment it listens.
    # SIGINT is handled explicitly: a shell may have set it to "ignore" for a background job.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
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
    _load_pydicom_soon(stop)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("stopped", flush=True)
    return 0
