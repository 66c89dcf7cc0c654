"""Recovery is bounded by what was in flight, not by the archive's size (issue 14, issue 11).

An archive of 10,000 instances (generated through the archive's own receive path,
``archive_fill.py``; 100,000 were run once by hand, see docs/security.md) receives a stream
of 300 objects from the real client; ``dicomdesk serve`` is killed with SIGKILL halfway.
At the restart, ``recover`` reads only the journal (a few entries, never the 10,000 files),
the port answers at once, and every object the sender was told was stored (0000) is there,
intact and indexed. An archive from before the journal is reconciled once, in the
background: the server answers while it runs.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from archive_fill import fill_archive, sop_instance_uid  # noqa: E402
from serving import (  # noqa: E402
    ServeProcess,
    archive_state,
    data_set_bytes,
    echo_ok,
    make_dataset,
    wait_until,
    write_part10,
)

from dicomdesk.operations import Peer, send  # noqa: E402

pytestmark = pytest.mark.interop

ARCHIVE_SIZE = 10_000
STREAM = 300
STUDY = "1.2.826.0.1.3680043.8.498.15"


@pytest.fixture(scope="module")
def large_archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scale") / "storage"
    fill_archive(root, ARCHIVE_SIZE)
    return root


def _recovery_line(log: str) -> tuple[int, int]:
    """(journaled objects, headers read) of the last start's recovery log line."""
    found = re.findall(r"recovery: (\d+) journaled objects, \d+ temp files, (\d+) headers read", log)
    assert found, log[-2000:]
    journaled, read = found[-1]
    return int(journaled), int(read)


def test_kill_9_during_a_300_file_stream_into_a_large_archive_loses_nothing_acknowledged(
        large_archive, tmp_path):
    sent = {f"{STUDY}.{i}": write_part10(make_dataset(f"{STUDY}.{i}", study=STUDY, series=STUDY + ".1",
                                                      pixels=4000), tmp_path / "out" / f"{i:03d}.dcm")
            for i in range(STREAM)}
    by_path = {str(p): uid for uid, p in sent.items()}
    log = tmp_path / "serve.log"
    acknowledged: set[str] = set()
    server = ServeProcess(large_archive, log=log).start()

    def progress(p):
        if p.state == "stored":
            acknowledged.add(by_path[str(p.path)])
            if len(acknowledged) == STREAM // 2:
                server.kill9()  # mid-stream: objects in flight, rows still queued

    result = send(Peer("127.0.0.1", server.port, "DICOMDESK", timeout=10), sorted(sent.values()),
                  progress=progress)
    assert not server.alive() and result.failed
    with ServeProcess(large_archive, log=log) as restarted:
        echo_ok(restarted.port)
        journaled, headers_read = _recovery_line(log.read_text())
        assert headers_read == journaled <= 64, "recovery read more than what was in flight"
        files, rows, temp = archive_state(large_archive)
        assert files == rows and not temp
        assert acknowledged <= rows, f"acknowledged but lost: {sorted(acknowledged - rows)[:5]}"
        assert {sop_instance_uid(i) for i in (0, ARCHIVE_SIZE // 2, ARCHIVE_SIZE - 1)} <= rows
        assert len(rows) == ARCHIVE_SIZE + len(rows & set(sent))
        for uid in acknowledged:
            stored = large_archive / STUDY / (STUDY + ".1") / f"{uid}.dcm"
            assert data_set_bytes(stored) == data_set_bytes(sent[uid])
        assert not list((large_archive / ".journal").glob("*.ack"))


def test_an_archive_from_before_the_journal_is_reconciled_while_the_server_answers(tmp_path):
    storage = tmp_path / "old"
    fill_archive(storage, 600)
    # What an older dicomdesk could leave after a crash: acknowledged files whose rows were
    # never written, and no record that the archive was ever reconciled.
    with sqlite3.connect(storage / "index.sqlite3") as db:
        db.execute("DROP TABLE archive_flags")
        db.execute("DELETE FROM instance WHERE rowid % 3 = 0")
    db.close()
    log = tmp_path / "serve.log"
    with ServeProcess(storage, log=log) as server:
        echo_ok(server.port)
        assert wait_until(lambda: "archive reconciled" in log.read_text(), timeout=60), log.read_text()[-2000:]
        files, rows, _ = archive_state(storage)
        assert len(files) == 600 and files == rows
    with ServeProcess(storage, log=log) as again:
        echo_ok(again.port)
    assert log.read_text().count("archive reconciled") == 1  # once, never again
