"""``kill -9`` of ``dicomdesk serve`` between the index commit that moves an instance's row to a
new study/series and the removal of the copy at its old path.

The same SOP Instance UID sent again under another study is written to a new path; the row
moves there in one transaction, then the old file is removed. A crash in between used to leave
the old file unindexed and unknown to the journal (whose entry names only the new path): a
later ``rebuild_index`` or reconcile could bring back the older version of an acknowledged
object. The crash is placed exactly (``DICOMDESK_FAULT_KILL_AT``), not at a random time.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))

from serving import ServeProcess, make_dataset, store_status  # noqa: E402

from dicomdesk.archive.store import Archive  # noqa: E402

pytestmark = pytest.mark.interop

UID = "1.2.826.0.1.3680043.8.498.77.1"
OLD = ("1.2.826.0.1.78.1", "1.2.826.0.1.78.1.1")
NEW = ("1.2.826.0.1.78.2", "1.2.826.0.1.78.2.1")


def _copies(storage: Path) -> list[str]:
    return sorted(p.relative_to(storage).as_posix() for p in storage.rglob(f"{UID}.dcm")
                  if ".incoming" not in p.parts and ".journal" not in p.parts)


def _row_path(storage: Path) -> str | None:
    db = sqlite3.connect(f"file:{storage / 'index.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT path FROM instance WHERE sop_instance_uid = ?", (UID,)).fetchone()
    finally:
        db.close()
    return row[0] if row else None


def test_kill_between_row_move_and_old_copy_removal(tmp_path: Path, monkeypatch) -> None:
    storage = tmp_path / "archive"
    old_rel = f"{OLD[0]}/{OLD[1]}/{UID}.dcm"
    new_rel = f"{NEW[0]}/{NEW[1]}/{UID}.dcm"

    server = ServeProcess(storage).start()
    try:
        assert store_status(server.port, make_dataset(UID, study=OLD[0], series=OLD[1], pixels=4000)) == 0
    finally:
        server.stop()
    assert _copies(storage) == [old_rel]

    monkeypatch.setenv("DICOMDESK_FAULT_KILL_AT", "before-replaced-removal")
    server = ServeProcess(storage).start()
    try:
        # the journal entry is durable before the response; the index thread that commits the
        # moved row may kill the process before or after the response is sent
        try:
            store_status(server.port, make_dataset(UID, study=NEW[0], series=NEW[1], pixels=6000))
        except Exception:
            pass
        assert server.proc is not None
        assert server.proc.wait(timeout=60) == -9, "the fault point was not reached"
    finally:
        server.stop()
    # the crash point: the row already names the new path, both copies are on disk
    assert _row_path(storage) == new_rel
    assert _copies(storage) == sorted([old_rel, new_rel])

    monkeypatch.delenv("DICOMDESK_FAULT_KILL_AT")
    server = ServeProcess(storage).start()  # recovery runs before it listens
    try:
        assert _copies(storage) == [new_rel], "the replaced copy survived the restart"
        assert _row_path(storage) == new_rel
    finally:
        server.stop()

    # and a full rebuild finds only the newest object
    with Archive(storage) as archive:
        assert archive.rebuild_index() == 1
        row = archive.index.instance(UID)
        assert row is not None and row["path"] == new_rel
        assert archive.index.replaced_copies() == []
    assert _copies(storage) == [new_rel]
