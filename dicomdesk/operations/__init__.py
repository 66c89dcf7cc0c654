"""High-level use cases shared by the command line and the desktop app.

One function (or class) per thing a user does; each blocks, reports through plain
callbacks, honours a ``threading.Event`` for cancel and returns a result value whose
``error`` is a sentence for a user. Names are loaded lazily so that ``dicomdesk echo``
imports only what an echo needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Peer": "common", "describe_error": "common",
    "EchoResult": "echo", "echo": "echo",
    "FileInfo": "files", "scan_paths": "files",
    "SendProgress": "send", "SendResult": "send", "FileOutcome": "send", "send": "send",
    "FindResult": "query", "find": "query", "worklist": "worklist",
    "RetrieveProgress": "query", "RetrieveResult": "query", "move": "query", "get": "query",
    "CommitResult": "commit", "commit": "commit",
    "LocalServer": "server", "AssociationEvent": "server", "StoredObject": "server",
    "ForwardEvent": "server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dicomdesk.operations' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
