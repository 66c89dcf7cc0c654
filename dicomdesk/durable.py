"""Making a rename survive a crash: the one helper the archive and the config writer share."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(folder: Path) -> None:
    """fsync a directory so a rename inside it is on disk (POSIX); a no-op where a directory
    cannot be opened (Windows, whose file-system metadata is journaled)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
