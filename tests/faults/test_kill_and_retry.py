"""``kill -9`` of ``dicomdesk serve`` while it stores and while it serves a C-MOVE, and a send
that fails half-way then is retried.

After a restart (``Archive.recover`` runs at start) the archive's files and index agree, no temp
file is left, and every object the sender was told was stored (C-STORE 0000) is present with the
very bytes that were sent. A retry sends only what was not stored.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))

from serving import (  # noqa: E402
    REPO,
    ServeProcess,
    archive_state,
    data_set_bytes,
    echo_ok,
    make_dataset,
    wait_until,
    write_part10,
)

from dicomdesk.operations import Peer, move, send  # noqa: E402

pytestmark = pytest.mark.interop

STUDY = "1.2.826.0.1.77"


def _files(folder: Path, count: int, pixels: int, prefix: str = "1.2.826.0.1.77.1") -> dict[str, Path]:
    return {f"{prefix}.{i}": write_part10(make_dataset(f"{prefix}.{i}", study=STUDY, pixels=pixels),
                                          folder / f"{i:03d}.dcm") for i in range(count)}


def _assert_consistent(storage: Path, sent: dict[str, Path], acknowledged: set[str]) -> set[str]:
    """Files == index rows, no temp file, acknowledged objects intact; returns the stored UIDs."""
    files, rows, temp = archive_state(storage)
    assert files == rows, f"files without rows {files - rows}, rows without files {rows - files}"
    assert not temp, temp
    assert acknowledged <= files, f"acknowledged but missing: {acknowledged - files}"
    for uid in files:
        stored = next(storage.rglob(f"{uid}.dcm"))
        assert data_set_bytes(stored) == data_set_bytes(sent[uid]), f"{uid} differs from what was sent"
    return files


def _negotiated_window(port: int) -> int:
    from dicomdesk.net import uids
    from dicomdesk.net.applicationentity import ClientAE
    from dicomdesk.operations.sending import MAX_OUTSTANDING

    ae = ClientAE("PROBE")
    ae.max_ops_invoked = MAX_OUTSTANDING
    ae.update_context_def_list([uids.CT_IMAGE_STORAGE], transfer_syntaxes=[uids.EXPLICIT_VR_LITTLE_ENDIAN])
    with ae.request_association({"aet": "DICOMDESK", "address": "127.0.0.1", "port": port,
                                 "timeout": 20}) as assoc:
        return assoc.ops_window


def test_kill_9_while_storing_then_restart_keeps_every_acknowledged_object(tmp_path):
    """The default (durable) server with the sender's asynchronous window: up to 8 C-STOREs
    outstanding, fsyncs out of line; what was acknowledged is there after the kill."""
    from dicomdesk.operations.sending import MAX_OUTSTANDING

    sent = _files(tmp_path / "out", 40, pixels=20_000)
    storage = tmp_path / "storage"
    acknowledged: set[str] = set()
    server = ServeProcess(storage).start()
    assert _negotiated_window(server.port) == MAX_OUTSTANDING  # the pipelined, deferred path
    peer = Peer("127.0.0.1", server.port, "DICOMDESK", timeout=10)
    by_path = {str(p): uid for uid, p in sent.items()}
    in_flight: set[str] = set()
    most = [0]

    def progress(p):
        if p.state == "sending":
            in_flight.add(str(p.path))
            most[0] = max(most[0], len(in_flight))
        elif p.state in ("stored", "failed"):
            in_flight.discard(str(p.path))
        if p.state == "stored":
            acknowledged.add(by_path[str(p.path)])
            if len(acknowledged) == 8:
                server.kill9()  # from the sender's progress: objects 9.. are in flight

    result = send(peer, sorted(sent.values()), progress=progress)
    assert not server.alive()
    assert 1 <= most[0] <= MAX_OUTSTANDING
    assert result.error is not None or result.failed
    with ServeProcess(storage) as restarted:
        echo_ok(restarted.port)
        stored = _assert_consistent(storage, sent, acknowledged)
        # The retry sends only what the archive does not hold, and then all is there.
        retry = send(Peer("127.0.0.1", restarted.port, "DICOMDESK", timeout=10), result.failed_paths)
        assert retry.ok, retry.error
        assert {by_path[str(p)] for p in result.failed_paths}.isdisjoint(acknowledged)
        assert len(result.failed_paths) + len(acknowledged) >= len(sent) - 1  # one may be half-known
        final = _assert_consistent(storage, sent, acknowledged | stored)
        assert final == set(sent)


def test_kill_9_during_a_c_move_leaves_both_archives_consistent(tmp_path):
    sent = _files(tmp_path / "out", 24, pixels=150_000)
    dest = ServeProcess(tmp_path / "dest", aet="DEST").start()
    try:
        nodes = tmp_path / "nodes.toml"
        nodes.write_text(f'[[node]]\nname = "dest"\naet = "DEST"\nhost = "127.0.0.1"\nport = {dest.port}\n')
        storage = tmp_path / "source"
        source = ServeProcess(storage, "--nodes", str(nodes)).start()
        peer = Peer("127.0.0.1", source.port, "DICOMDESK", timeout=10)
        filled = send(peer, sorted(sent.values()))
        assert filled.ok, filled.error
        killed = threading.Event()

        def progress(p):
            if p.completed >= 3 and not killed.is_set():
                killed.set()
                source.kill9()

        result = move(peer, "DEST", "STUDY", {"StudyInstanceUID": STUDY}, progress=progress)
        assert killed.is_set(), f"the move ended before the kill: {result}"
        assert result.error is not None
        with ServeProcess(storage, "--nodes", str(nodes)) as restarted:
            echo_ok(restarted.port)
            _assert_consistent(storage, sent, set(sent))
        # The destination saw its association end mid-object: what it kept is whole.
        assert wait_until(lambda: not archive_state(dest.storage)[2], timeout=10)
        moved = _assert_consistent(dest.storage, sent, set())
        assert 3 <= len(moved) < len(sent)
        echo_ok(dest.port, "DEST")
    finally:
        dest.stop()


def test_cli_send_that_fails_half_way_prints_a_retry_command_that_sends_only_the_rest(tmp_path):
    small = _files(tmp_path / "out", 4, pixels=1_000, prefix="1.2.826.0.1.78.1")
    big = _files(tmp_path / "out-big", 3, pixels=400_000, prefix="1.2.826.0.1.78.2")
    storage = tmp_path / "storage"
    from peers import free_port

    port = free_port()
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "dicomdesk"]
    with ServeProcess(storage, "--max-object-size", "200k", port=port):
        first = subprocess.run([*cli, "send", "127.0.0.1", str(port), "--aec", "DICOMDESK",
                                str(tmp_path / "out"), str(tmp_path / "out-big")],
                               capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert first.returncode == 1, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    retry_line = lines[lines.index("to retry the failed files:") + 1].strip()
    retry = shlex.split(retry_line)
    assert retry[:2] == ["dicomdesk", "send"]
    assert sorted(retry[-3:]) == sorted(str(p) for p in big.values())  # only the refused ones
    assert archive_state(storage)[1] == set(small)
    with ServeProcess(storage, port=port):
        second = subprocess.run([*cli, *retry[1:]], capture_output=True, text=True, env=env, cwd=REPO,
                                timeout=60)
        assert second.returncode == 0, second.stdout + second.stderr
    assert ": 3 stored" in second.stdout, second.stdout
    _assert_consistent(storage, {**small, **big}, set(small) | set(big))
