"""High-level use cases shared by the command line and the desktop app.

One function (or class) per thing a user does; each blocks, reports through plain
callbacks, honours a ``threading.Event`` for cancel and returns a result value whose
``error`` is a sentence for a user. Names are loaded lazily so that ``dicomdesk echo``
imports only what an echo needs. No submodule is named like a function it exports: importing
such a module would replace the function of that name on the package.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Peer": "common", "describe_error": "common",
    "EchoResult": "verification", "echo": "verification",
    "FileInfo": "files", "scan_paths": "files",
    "SendProgress": "sending", "SendResult": "sending", "FileOutcome": "sending", "send": "sending",
    "FindResult": "query", "find": "query", "worklist": "modality_worklist",
    "RetrieveProgress": "query", "RetrieveResult": "query", "move": "query", "get": "query",
    "CommitResult": "commitment", "commit": "commitment",
    "LocalServer": "server", "AssociationEvent": "server", "StoredObject": "server",
    "ForwardEvent": "server",
    "diagnose": "doctor", "Diagnosis": "doctor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dicomdesk.operations' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
