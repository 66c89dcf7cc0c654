"""A peer that accepts the TCP connection but never answers the A-ASSOCIATE-RQ: every command
gives up within its ``--timeout`` with exit status 1 and a sentence (PS3.8 9.1.4: the ACSE
timer; only loopback is used, so the "host" is a socket nobody reads)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.interop


@pytest.fixture
def silent_port():
    """A listening socket whose connections are accepted by the kernel and never read."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", [["echo"], ["find", "-L", "STUDY", "-k", "PatientID=1"]],
                         ids=["echo", "find"])
def test_command_against_a_peer_that_never_answers_fails_within_its_timeout(silent_port, command):
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "dicomdesk", command[0], "127.0.0.1", str(silent_port),
                          "--timeout", "1.5", *command[1:]], capture_output=True, text=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=30)
    elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stdout + out.stderr
    # Python's start-up is in the figure (seconds on a loaded machine): the bound only has to
    # stay well under the 30 s default timeout that an ignored --timeout would mean.
    assert elapsed < 1.5 + 12, f"took {elapsed:.1f} s with --timeout 1.5"
    message = (out.stdout + out.stderr).lower()
    assert "no answer" in message or "timed out" in message or "timeout" in message, message


def test_send_against_a_peer_that_never_answers_fails_within_its_timeout(silent_port, tmp_path):
    sys.path.insert(0, str(REPO / "tests" / "security"))
    from serving import make_dataset, write_part10

    path = write_part10(make_dataset("1.2.826.0.1.99.1"), tmp_path / "a.dcm")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "dicomdesk", "send", "127.0.0.1", str(silent_port),
                          "--timeout", "1.5", str(path)], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=30)
    assert out.returncode == 1
    assert time.monotonic() - started < 1.5 + 12  # well under the 30 s default (see above)
    assert "to retry the failed files" in out.stdout
