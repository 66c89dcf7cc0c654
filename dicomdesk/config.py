"""Local AE settings and the address book of remote DICOM nodes.

Everything here is read once, validated, and handed on as frozen values: the network stack and
the archive receive a host, a port, an AE title, never a settings object (ARCHITECTURE.md,
"archive/ and config.py").

The address book is a TOML file of ``[[node]]`` tables::

    [[node]]
    name = "pacs"            # optional, defaults to the AE title
    aet = "PACS"             # the peer's AE title (PS3.8 9.3.2, Called AE Title)
    host = "pacs.example.org"
    port = 104
    description = "Main archive"
    retrieve = "move"        # "move" (C-MOVE to us) or "get" (C-GET on the same association)
    username = "alice"       # optional User Identity negotiation (PS3.7 D.3.3.7)
    password = "secret"
    [node.tls]               # optional, PS3.15 B.1 (TLS secure transport)
    ca = "ca.pem"            # paths are relative to the folder of the file
    cert = "me.pem"
    key = "me.key"
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from .durable import fsync_directory

logger = logging.getLogger(__name__)

APP_NAME = "dicomdesk"
AE_TITLE_MAX_LENGTH = 16
PORT_RANGE = (1, 65535)
RETRIEVE_METHODS = ("move", "get")
MAX_PDU_LENGTH_LIMIT = 0xFFFFFFFF  # a 4-byte field (PS3.8 D.1, Maximum Length Sub-Item)
_NODE_FIELDS = frozenset(
    {"name", "aet", "host", "port", "description", "tls", "username", "password", "retrieve"}
)
_TLS_FIELDS = frozenset({"cert", "key", "ca"})
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


class ConfigError(ValueError):
    """A configuration value or file that dicomdesk refuses, with a message meant for a user.

    ``path``, ``line`` and ``field`` are set when known, so a GUI can point at the culprit.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.field = field


# --------------------------------------------------------------------------- validators


def validate_ae_title(value: object, what: str = "AE title") -> str:
    """Return ``value`` without its non-significant spaces, or raise ConfigError.

    PS3.5 6.2 (VR AE): at most 16 characters of the Default Character Repertoire, without
    backslash or control characters; leading and trailing spaces are not significant, so a
    title made only of spaces is no title.
    """
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be text, got {value!r}", field="aet")
    if not value:
        raise ConfigError(f"{what} must not be empty", field="aet")
    if "\\" in value:
        raise ConfigError(f"{what} {value!r} must not contain a backslash", field="aet")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(f"{what} {value!r} must not contain control characters", field="aet")
    if not value.isascii():
        raise ConfigError(
            f"{what} {value!r} must use the default character repertoire (ASCII)", field="aet"
        )
    stripped = value.strip(" ")
    if not stripped:
        raise ConfigError(f"{what} must not be all spaces", field="aet")
    if len(stripped) > AE_TITLE_MAX_LENGTH:
        raise ConfigError(
            f"{what} {stripped!r} is longer than {AE_TITLE_MAX_LENGTH} characters", field="aet"
        )
    return stripped


def validate_port(value: object, *, allow_zero: bool = False) -> int:
    """Return a TCP port number, or raise ConfigError (0 only where the OS may pick one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            raise ConfigError(f"port must be a whole number, got {value!r}", field="port")
    low = 0 if allow_zero else PORT_RANGE[0]
    if not low <= value <= PORT_RANGE[1]:
        raise ConfigError(
            f"port {value} is out of range {low}-{PORT_RANGE[1]}", field="port"
        )
    return value


def _require_text(value: object, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be text, got {value!r}", field=name)
    if not allow_empty and not value.strip():
        raise ConfigError(f"{name} must not be empty", field=name)
    if any(ord(c) < 0x20 and c not in "\t" for c in value):
        raise ConfigError(f"{name} {value!r} must not contain control characters", field=name)
    return value


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class TLSSettings:
    """Files for a TLS connection (PS3.15 B.1): our certificate and key, and the CAs we trust.

    All are optional: without ``cert`` we do not authenticate ourselves; without ``ca`` the
    system trust store is used.
    """

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def __post_init__(self) -> None:
        for name in ("cert", "key", "ca"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(_require_text(value, f"tls.{name}")))
        if self.key is not None and self.cert is None:
            raise ConfigError("tls.key is given without tls.cert", field="tls.key")


@dataclass(frozen=True)
class Node:
    """A remote application entity of the address book (PS3.8 7.1: AE title, host, port)."""

    name: str
    aet: str
    host: str
    port: int
    description: str = ""
    tls: TLSSettings | None = None
    username: str | None = None
    password: str | None = None
    retrieve: str = "move"

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _require_text(self.name, "name").strip())
        object.__setattr__(self, "aet", validate_ae_title(self.aet))
        host = _require_text(self.host, "host").strip()
        if any(c.isspace() for c in host):
            raise ConfigError(f"host {host!r} must not contain spaces", field="host")
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", validate_port(self.port))
        _require_text(self.description, "description", allow_empty=True)
        if self.tls is not None and not isinstance(self.tls, TLSSettings):
            raise ConfigError(f"tls must be a table, got {self.tls!r}", field="tls")
        if self.username is not None:
            _require_text(self.username, "username")
        if self.password is not None:
            _require_text(self.password, "password", allow_empty=True)
            if self.username is None:
                raise ConfigError("password is given without username", field="password")
        if self.retrieve not in RETRIEVE_METHODS:
            raise ConfigError(
                f"retrieve {self.retrieve!r} must be 'move' or 'get'", field="retrieve"
            )


def default_config_dir() -> Path:
    """The per-user folder for dicomdesk's configuration (XDG_CONFIG_HOME on Linux)."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def default_nodes_path() -> Path:
    """Where the address book lives unless the user names another file."""
    return default_config_dir() / "nodes.toml"


def default_settings_path() -> Path:
    """Where the local AE settings (a ``[server]`` table) live unless named otherwise."""
    return default_config_dir() / "settings.toml"


def default_data_dir() -> Path:
    """The per-user folder for dicomdesk's data (XDG_DATA_HOME on Linux)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_storage_dir() -> Path:
    """Where the local server stores received objects and its index."""
    return default_data_dir() / "archive"


@dataclass(frozen=True)
class ForwardRule:
    """Forward received objects to address-book nodes (by name or AE title).

    Empty ``calling_aets`` / ``modalities`` mean any; otherwise an object is forwarded only when
    its sender's AE title, and its series' Modality, are listed.
    """

    destinations: tuple[str, ...]
    calling_aets: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("destinations", "calling_aets", "modalities"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"forward rule {name} must be a list of text, got {value!r}",
                                  field=name)
            object.__setattr__(self, name, tuple(_require_text(v, name).strip() for v in value))
        if not self.destinations:
            raise ConfigError("a forward rule needs at least one destination", field="destinations")
        object.__setattr__(self, "calling_aets",
                           tuple(validate_ae_title(a, "calling AE title") for a in self.calling_aets))


@dataclass(frozen=True)
class ServerSettings:
    """The local AE: what we answer as and how much we accept.

    ``port`` 0 lets the OS choose (tests); ``max_pdu_length`` 0 means no limit (PS3.8 D.1);
    ``durable`` makes the archive fsync each object before answering C-STORE success.
    """

    aet: str = "DICOMDESK"
    port: int = 11112
    bind: str = "127.0.0.1"
    storage_dir: Path = field(default_factory=default_storage_dir)
    max_associations: int = 32
    #: 1 MiB: a large object costs the receiver per PDU (issue 13: 52 MB objects take a
    #: third less server CPU than at 256 KiB); the framer grows to it once per association.
    max_pdu_length: int = 1048576
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    durable: bool = True
    forward_rules: tuple[ForwardRule, ...] = ()
    worklist_dir: Path | None = None
    # Access policy (see dicomdesk/security.py, docs/security.md): "AET" or "AET@ADDR[,ADDR]"
    # entries (empty: any calling AE), a users TOML file of salted hashes (PS3.7 D.3.3.7), and
    # whether a called AE title other than ``aet`` is refused (PS3.8 Table 9-21, reason 7).
    allowed_calling_aets: tuple[str, ...] = ()
    users_file: Path | None = None
    require_called_aet: bool = False
    # DICOM TLS (PS3.15 B.1): our certificate and key; with ``tls_ca`` clients must present a
    # certificate signed by it.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    # Resource limits: largest object received (bytes, 0: none) and the free space the archive
    # keeps (both answered with A700 Out of Resources), most C-FIND matches returned (0: all;
    # past it the final C-FIND status is the warning B000, see archive/scp.py).
    max_object_size: int = 0
    min_free_bytes: int = 0
    max_find_matches: int = 0
    # A deflated object (PS3.5 A.5) inflating to more bytes is refused with A700, checked while
    # it inflates (0: net.inflate.DEFAULT_MAX_INFLATED_SIZE, 256 MiB); see docs/security.md.
    max_inflated_size: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "aet", validate_ae_title(self.aet))
        object.__setattr__(self, "port", validate_port(self.port, allow_zero=True))
        object.__setattr__(self, "bind", _require_text(self.bind, "bind").strip())
        if not isinstance(self.storage_dir, Path):
            storage = _require_text(self.storage_dir, "storage_dir")
            object.__setattr__(self, "storage_dir", Path(storage).expanduser())
        _check_int(self.max_associations, "max_associations", 1, 1024)
        _check_int(self.max_pdu_length, "max_pdu_length", 0, MAX_PDU_LENGTH_LIMIT)
        if 0 < self.max_pdu_length < 1024:
            raise ConfigError(
                f"max_pdu_length {self.max_pdu_length} must be 0 (no limit) or at least 1024",
                field="max_pdu_length",
            )
        for name in ("acse_timeout", "dimse_timeout", "network_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number of seconds, got {value!r}", field=name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} {value} must be a positive number of seconds", field=name)
            object.__setattr__(self, name, float(value))
        if not isinstance(self.durable, bool):
            raise ConfigError(f"durable must be true or false, got {self.durable!r}", field="durable")
        rules = self.forward_rules
        if isinstance(rules, (str, bytes)) or not isinstance(rules, (list, tuple)):
            raise ConfigError(f"forward_rules must be a list, got {rules!r}", field="forward_rules")
        object.__setattr__(self, "forward_rules", tuple(
            r if isinstance(r, ForwardRule) else ForwardRule(**_forward_rule_fields(r)) for r in rules))
        if self.worklist_dir is not None and not isinstance(self.worklist_dir, Path):
            folder = _require_text(self.worklist_dir, "worklist_dir")
            object.__setattr__(self, "worklist_dir", Path(folder).expanduser())
        allowed = self.allowed_calling_aets
        if isinstance(allowed, (str, bytes)) or not isinstance(allowed, (list, tuple)):
            raise ConfigError(f"allowed_calling_aets must be a list, got {allowed!r}",
                              field="allowed_calling_aets")
        from .security import AllowedCaller, PolicyError  # pure module, no I/O

        for entry in allowed:
            try:
                AllowedCaller.parse(_require_text(entry, "allowed_calling_aets"))
            except PolicyError as exc:
                raise ConfigError(str(exc), field="allowed_calling_aets") from None
        object.__setattr__(self, "allowed_calling_aets", tuple(a.strip() for a in allowed))
        for name in ("users_file", "tls_cert", "tls_key", "tls_ca"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(_require_text(value, name)).expanduser())
        if not isinstance(self.require_called_aet, bool):
            raise ConfigError(f"require_called_aet must be true or false, got {self.require_called_aet!r}",
                              field="require_called_aet")
        if (self.tls_key or self.tls_ca) and not self.tls_cert:
            raise ConfigError("tls_key/tls_ca need tls_cert (the server's certificate)", field="tls_cert")
        for name in ("max_object_size", "min_free_bytes", "max_find_matches", "max_inflated_size"):
            _check_int(getattr(self, name), name, 0, 2 ** 63 - 1)


def _forward_rule_fields(table: object) -> dict[str, Any]:
    """A ``[[server.forward_rules]]`` table as ForwardRule arguments."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"a forward rule must be a table, got {table!r}", field="forward_rules")
    unknown = sorted(set(table) - {"destinations", "calling_aets", "modalities"})
    if unknown:
        raise ConfigError(f"unknown forward rule field {unknown[0]!r}", field=unknown[0])
    if "destinations" not in table:
        raise ConfigError("a forward rule needs destinations", field="destinations")
    return dict(table)


def _check_int(value: object, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}", field=name)
    if not low <= value <= high:
        raise ConfigError(f"{name} {value} is out of range {low}-{high}", field=name)


# --------------------------------------------------------------------------- files


def _read_toml(path: Path) -> dict[str, Any] | None:
    """The parsed file, None when it does not exist; syntax errors name the file and line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}", path=path) from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}", path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.search(str(exc))
        line = int(match.group(1)) if match else None
        detail = _TOML_POSITION.sub("", str(exc)).strip()
        where = f"line {line}, column {match.group(2)}: " if match else ""
        raise ConfigError(
            f"{path}: {where}invalid TOML: {detail}", path=path, line=line
        ) from exc


def _tls_from_table(table: object, base: Path) -> TLSSettings:
    if not isinstance(table, Mapping):
        raise ConfigError(f"tls must be a table ([node.tls]), got {table!r}", field="tls")
    unknown = sorted(set(table) - _TLS_FIELDS)
    if unknown:
        raise ConfigError(f"unknown field 'tls.{unknown[0]}'", field=f"tls.{unknown[0]}")
    paths: dict[str, Path] = {}
    for name, value in table.items():
        text = _require_text(value, f"tls.{name}")
        candidate = Path(text).expanduser()
        paths[name] = candidate if candidate.is_absolute() else base / candidate
    return TLSSettings(**paths)


def _node_from_table(table: Mapping[str, Any], base: Path) -> Node:
    unknown = sorted(set(table) - _NODE_FIELDS)
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r}", field=unknown[0])
    for required in ("aet", "host", "port"):
        if required not in table:
            raise ConfigError(f"{required} is required", field=required)
    values = dict(table)
    values.setdefault("name", values["aet"])
    if "tls" in values:
        values["tls"] = _tls_from_table(values["tls"], base)
    if isinstance(values["port"], str):  # "104" in TOML is a string: refuse, do not guess
        raise ConfigError(f"port must be a whole number, got {values['port']!r}", field="port")
    return Node(**values)


def load_nodes(path: Path | str) -> list[Node]:
    """Read the address book; a missing file is an empty book.

    Raises ConfigError naming the file, the line (syntax errors) and the node and field.
    """
    path = Path(path)
    document = _read_toml(path)
    if document is None:
        logger.debug("no address book at %s", path)
        return []
    tables = document.get("node", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(
            f"{path}: 'node' must be an array of tables ([[node]])", path=path, field="node"
        )
    nodes: list[Node] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables, start=1):
        label = _node_label(index, table)
        try:
            node = _node_from_table(table, path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {label}: {exc}", path=path, field=exc.field) from exc
        key = node.name.casefold()
        if key in seen:
            raise ConfigError(
                f"{path}: {label}: name {node.name!r} is already used by node {seen[key]}",
                path=path,
                field="name",
            )
        seen[key] = index
        nodes.append(node)
    logger.debug("read %d nodes from %s", len(nodes), path)
    return nodes


def _node_label(index: int, table: Mapping[str, Any]) -> str:
    name = table.get("name", table.get("aet"))
    return f"node {index} ({name!r})" if isinstance(name, str) else f"node {index}"


def _node_to_table(node: Node, base: Path) -> dict[str, Any]:
    table: dict[str, Any] = {"name": node.name, "aet": node.aet, "host": node.host, "port": node.port}
    if node.description:
        table["description"] = node.description
    if node.retrieve != "move":
        table["retrieve"] = node.retrieve
    if node.username is not None:
        table["username"] = node.username
    if node.password is not None:
        table["password"] = node.password
    if node.tls is not None:
        tls: dict[str, str] = {}
        for name in ("cert", "key", "ca"):
            value: Path | None = getattr(node.tls, name)
            if value is not None:
                tls[name] = os.fspath(_relative_if_inside(value, base))
        table["tls"] = tls
    return table


def _relative_if_inside(path: Path, base: Path) -> Path:
    try:
        return path.relative_to(base)
    except ValueError:
        return path


def save_nodes(path: Path | str, nodes: Iterable[Node]) -> None:
    """Write the address book atomically: a temp file in the same folder, fsync, rename.

    A crash leaves either the old or the new file, never half of one; invalid input (duplicate
    names, objects that are not Nodes) raises ConfigError before anything is written.
    """
    path = Path(path)
    nodes = list(nodes)
    seen: set[str] = set()
    for node in nodes:
        if not isinstance(node, Node):
            raise ConfigError(f"{path}: cannot save {node!r}: not a Node", path=path)
        if node.name.casefold() in seen:
            raise ConfigError(
                f"{path}: node name {node.name!r} is used twice", path=path, field="name"
            )
        seen.add(node.name.casefold())
    base = path.parent.absolute()
    document = {"node": [_node_to_table(node, base) for node in nodes]}
    data = tomli_w.dumps(document).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, data)
    logger.debug("saved %d nodes to %s", len(nodes), path)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(temp_name, path.stat().st_mode & 0o7777)
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(path.parent)


def find_node(nodes: Sequence[Node], name: str) -> Node | None:
    """The node called ``name`` (exact match first, then ignoring case), or None."""
    for node in nodes:
        if node.name == name:
            return node
    folded = name.casefold()
    for node in nodes:
        if node.name.casefold() == folded:
            return node
    return None


def resolve_peer(
    target: str, port: str | int | None, nodes: Sequence[Node]
) -> tuple[str, int, str | None]:
    """``HOST PORT`` or a node name, as every networking command accepts both.

    Returns ``(host, port, aet)``; ``aet`` is None for ``HOST PORT`` (the caller's default
    Called AE Title applies) and the node's AE title for a node name.
    """
    if port is not None:
        host = _require_text(target, "host").strip()
        return host, validate_port(port), None
    node = find_node(nodes, target)
    if node is None:
        known = ", ".join(n.name for n in nodes) or "none configured"
        raise ConfigError(
            f"{target!r} is not a known node (give HOST PORT, or one of: {known})", field="node"
        )
    return node.host, node.port, node.aet


def load_server_settings(path: Path | str) -> ServerSettings:
    """Read the ``[server]`` table of a settings file; a missing file or table gives defaults."""
    path = Path(path)
    document = _read_toml(path)
    table = {} if document is None else document.get("server", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'server' must be a table ([server])", path=path, field="server")
    known = {f for f in ServerSettings.__dataclass_fields__}
    unknown = sorted(set(table) - known)
    try:
        if unknown:
            raise ConfigError(f"unknown field {unknown[0]!r}", field=unknown[0])
        values = dict(table)
        for name in ("storage_dir", "users_file", "tls_cert", "tls_key", "tls_ca"):
            if isinstance(values.get(name), str):
                value = Path(values[name]).expanduser()
                values[name] = value if value.is_absolute() else path.parent / value
        return ServerSettings(**values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: server: {exc}", path=path, field=exc.field) from exc
