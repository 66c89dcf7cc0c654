"""The archive is readable by its owner only: folders 0700, files 0600 (issue 11, item 9).

The index holds patient names and IDs just as the ``.dcm`` files (made 0600 by the temp file
pool) do. SQLite creates ``-wal`` and ``-shm`` with the permissions of the database file, so
creating ``index.sqlite3`` 0600 before SQLite opens it covers all three without touching the
process-wide umask (other threads create files at the same moment). An archive made by an older
version is tightened when opened, with a log line saying what changed; only the top folder, the
temp folder and the index need it — nothing below a 0700 folder is reachable by anyone else.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: SQLite's companions of the index file (WAL mode).
INDEX_SUFFIXES = ("", "-wal", "-shm", "-journal")


def make_private(root: Path, index_name: str, incoming_name: str) -> list[str]:
    """Create ``root``, its temp folder and an empty index owner-only if missing; tighten them
    if an older version left them open to others. Returns the names it tightened."""
    root.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    (root / incoming_name).mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    index = root / index_name
    os.close(os.open(index, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE))
    tightened = []
    candidates = [(root, PRIVATE_DIR_MODE), (root / incoming_name, PRIVATE_DIR_MODE)]
    candidates += [(root / (index_name + s), PRIVATE_FILE_MODE) for s in INDEX_SUFFIXES]
    for path, mode in candidates:
        try:
            current = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if current & 0o077:
            os.chmod(path, current & ~0o077 | (mode & 0o700))
            tightened.append(f"{path.name or path} {current:o}->{current & ~0o077 | (mode & 0o700):o}")
    if tightened:
        logger.warning("archive %s was readable by other users; made owner-only: %s", root,
                       ", ".join(tightened))
    return tightened
