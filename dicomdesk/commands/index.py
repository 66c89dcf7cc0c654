"""``dicomdesk index DIR``: (re)build the archive index from files already on disk.

Without ``--storage``, DIR *is* the archive: its index (``index.sqlite3``, created if missing)
is rebuilt from the DICOM files found in it, which stay where they are.  With ``--storage
ARCHIVE``, the files of DIR are imported (copied) into that archive — or, when DIR is a folder
inside ARCHIVE, just that part of the index is rebuilt.  Non-DICOM files and files whose UIDs
cannot be file names are skipped (``-v`` lists them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("index", help="(re)build the archive index from files in a folder")
    parser.add_argument("folder", type=Path, help="folder of DICOM files")
    parser.add_argument("--storage", type=Path, default=None,
                        help="archive to import into [FOLDER itself is the archive]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..archive import Archive, ArchiveError

    folder: Path = args.folder
    if not folder.is_dir():
        print(f"dicomdesk: {folder} is not a folder", file=sys.stderr)
        return 2
    root = args.storage if args.storage is not None else folder
    try:
        with Archive(root) as archive:
            indexed = archive.rebuild_index(None if args.storage is None else folder)
            counts = archive.index.counts()
    except (ArchiveError, OSError) as exc:
        print(f"dicomdesk: cannot index {folder}: {exc}", file=sys.stderr)
        return 1
    action = "indexed" if args.storage is None else f"imported into {root}"
    print(f"{indexed} instances {action}")
    print(f"archive {root}: {counts['patient']} patients, {counts['study']} studies, "
          f"{counts['series']} series, {counts['instance']} instances")
    return 0
