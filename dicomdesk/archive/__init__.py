"""The local archive: storage folder, SQLite index, Q/R matching and the modality worklist.

The local server's AE forwards its service hooks (``get_file``, ``on_receive_*``) to
``scp.ArchiveSCP``, composed onto it (see ARCHITECTURE.md "archive/ and config.py"). Received
files arrive in ``incoming.py``, are placed by ``placement.py`` for ``store.Archive``, and a
crash is undone by ``recovery.py``.
"""

from __future__ import annotations

from .forward_queue import ForwardItem
from .index import Index
from .schema import InstanceRef
from .matching import QueryError
from .errors import ArchiveError, ArchiveRefusal
from .incoming import IncomingFile
from .recovery import RecoveryReport
from .placement import StoredInstance
from .store import Archive, is_path_safe_uid
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
