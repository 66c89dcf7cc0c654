"""The local archive: storage folder, SQLite index, Q/R matching and the modality worklist.

Independent of the network stack: the server's AE subclass routes its ``get_file`` and
``on_receive_*`` hooks here (see ARCHITECTURE.md "archive/ and config.py").
"""

from __future__ import annotations

from .forward_queue import ForwardItem
from .index import Index
from .schema import InstanceRef
from .matching import QueryError
from .store import (
    Archive,
    ArchiveError,
    ArchiveRefusal,
    IncomingFile,
    RecoveryReport,
    StoredInstance,
    is_path_safe_uid,
)
from .worklist import WorklistStore

__all__ = [
    "Archive",
    "ArchiveError",
    "ArchiveRefusal",
    "ForwardItem",
    "IncomingFile",
    "Index",
    "InstanceRef",
    "QueryError",
    "RecoveryReport",
    "StoredInstance",
    "WorklistStore",
    "is_path_safe_uid",
]
