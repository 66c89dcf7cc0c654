"""The archive is its owner's alone (issue 11, item 9): ``dicomdesk serve`` makes its storage
folder and every folder below 0700, the index and SQLite's ``-wal``/``-shm`` 0600 like the
``.dcm`` files, whatever the umask; an archive left open by an older version is tightened at
start with a log line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dicomdesk.net import uids

from serving import (
    CT_IMAGE_STORAGE,
    RawAssociation,
    ServeProcess,
    encode_dataset,
    make_dataset,
    store_rq,
    wait_until,
)

pytestmark = pytest.mark.interop


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _serve(storage: Path) -> ServeProcess:
    """Start the server under umask 022 (the usual one), which is what left files 0644."""
    old = os.umask(0o022)
    try:
        return ServeProcess(storage).start()
    finally:
        os.umask(old)


def _store_one(port: int, instance_uid: str) -> None:
    raw = RawAssociation(port, ((1, uids.VERIFICATION_SOP_CLASS), (3, CT_IMAGE_STORAGE)))
    assert raw.accepted
    raw.send_command(3, store_rq(instance_uid))
    raw.send_data(3, encode_dataset(make_dataset(instance_uid)), last=True)
    assert int(raw.receive_message().Status) == 0
    assert raw.release()[:1] == b"\x06"


def test_a_new_archive_is_readable_by_its_owner_only(tmp_path):
    storage = tmp_path / "storage"
    proc = _serve(storage)
    try:
        _store_one(proc.port, "1.2.826.0.1.3680043.8.498.11901")
        files = {p.relative_to(storage).as_posix(): p for p in storage.rglob("*")}
        assert any(name.endswith(".dcm") for name in files)
        assert wait_until(lambda: (storage / "index.sqlite3-wal").exists(), 30)
        too_open = {name: oct(_mode(p)) for name, p in files.items()
                    if _mode(p) & 0o077 or (p.is_dir() and _mode(p) != 0o700)}
        assert _mode(storage) == 0o700 and not too_open, too_open
        for name in ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"):
            assert _mode(storage / name) == 0o600, name
    finally:
        proc.stop()


def test_an_archive_left_open_by_an_older_version_is_tightened_at_start(tmp_path):
    storage = tmp_path / "storage"
    proc = _serve(storage)
    proc.stop()
    os.chmod(storage, 0o755)
    os.chmod(storage / ".incoming", 0o755)
    os.chmod(storage / "index.sqlite3", 0o644)
    proc = _serve(storage)
    try:
        assert _mode(storage) == 0o700
        assert _mode(storage / ".incoming") == 0o700
        assert _mode(storage / "index.sqlite3") == 0o600
        assert wait_until(lambda: "made owner-only" in proc.log(), 30), proc.log()[-2000:]
    finally:
        proc.stop()
