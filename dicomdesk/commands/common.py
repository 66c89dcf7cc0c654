"""Arguments and peer resolution shared by the sub-commands."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


def path_argument(value: str) -> Path:
    """argparse ``type`` of a file option: a ``Path``, with ``pathlib`` imported only when the
    option is given (``dicomdesk echo`` does not need it, and it loads ``urllib.parse``,
    ``ipaddress`` and ``fnmatch`` with it)."""
    from pathlib import Path

    return Path(value)


def add_peer_arguments(parser: argparse.ArgumentParser, *, default_called: str = "ANY-SCP") -> None:
    """HOST PORT (or a node name from the address book) plus the AE titles and timeout."""
    parser.add_argument("host", help="host name or address, or the name of a node in the address book")
    parser.add_argument("port", nargs="?", help="TCP port (omit when HOST names a node)")
    parser.add_argument("--aet", default="DICOMDESK", help="our (calling) AE title [DICOMDESK]")
    parser.add_argument("--aec", default=None, help=f"the peer's (called) AE title [{default_called}]")
    parser.add_argument("--timeout", type=float, default=30.0, help="connection/response timeout, s [30]")
    parser.add_argument("--nodes", type=path_argument, default=None, help="address book TOML file")
    parser.add_argument("--username", default=None, help="user identity (PS3.7 D.3.3.7)")
    parser.add_argument("--password", default=None, help="password for --username")
    tls = parser.add_argument_group("DICOM TLS (PS3.15 B.1)")
    tls.add_argument("--tls", action="store_true", help="use TLS (implied by the --tls-* options)")
    tls.add_argument("--tls-cert", type=path_argument, default=None, help="our certificate (PEM)")
    tls.add_argument("--tls-key", type=path_argument, default=None, help="our private key (PEM)")
    tls.add_argument("--tls-ca", type=path_argument, default=None,
                     help="CA certificate(s) to verify the peer with (verification is on when given)")


def peer_from_args(args: Any, *, default_called: str = "ANY-SCP"):
    """A ``Peer`` from HOST PORT or a node name; exits with a sentence on bad input."""
    from ..operations.common import Peer

    host, port, aet, node_tls = args.host, args.port, None, None
    username, password = args.username, args.password
    if port is None or not str(port).isdigit():
        node = _lookup_node(args.host, args.nodes)
        if node is None:
            if port is None:
                fail(f"{args.host!r} is not a node in the address book; give HOST PORT")
            fail(f"port must be a number, not {port!r}")
        host, port, aet, node_tls = node.host, node.port, node.aet, node.tls
        username = username or node.username
        password = password or node.password
    port = int(port)
    if not 0 < port < 65536:
        fail(f"port {port} is out of range 1-65535")
    return Peer(host, port, args.aec or aet or default_called, args.aet, args.timeout, username, password,
                tls_from_args(args, node_tls))


def tls_from_args(args: Any, default: Any = None):
    """TLSSettings from --tls/--tls-cert/--tls-key/--tls-ca, else the node's own settings."""
    if not (getattr(args, "tls", False) or args.tls_cert or args.tls_key or args.tls_ca):
        return default
    from .. import config

    for path in (args.tls_cert, args.tls_key, args.tls_ca):
        if path is not None and not path_argument(path).is_file():
            fail(f"TLS file not found: {path}")
    try:
        return config.TLSSettings(cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca)
    except config.ConfigError as exc:
        fail(str(exc))


def _lookup_node(name: str, nodes_path: Path | None):
    from .. import config

    try:
        nodes = config.load_nodes(nodes_path or config.default_nodes_path())
    except config.ConfigError as exc:
        fail(str(exc))
    return config.find_node(nodes, name)


def fail(message: str, code: int = 2) -> None:
    print(f"dicomdesk: {message}", file=sys.stderr)
    raise SystemExit(code)


def parse_keys(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings → ordered mapping; a bare ``KEY`` (empty value) is a return key."""
    keys: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key.strip():
            fail(f"bad key {item!r}: expected KEY=VALUE")
        keys[key.strip()] = value
    return keys
