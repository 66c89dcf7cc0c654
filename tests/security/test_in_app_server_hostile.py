"""The in-app server (``operations.LocalServer`` in the window's own process) meets hostile peers.

The same server code runs behind ``dicomdesk serve`` (tests/security/test_hostile_peers.py);
here it runs in-process, as the desktop app hosts it: each case ends only its own association,
the process keeps its threads and the archive stays clean, and an echo right after succeeds.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from serving import (
    RawAssociation,
    archive_state,
    associate_rq,
    connect,
    echo_ok,
    make_dataset,
    encode_dataset,
    read_all,
    read_pdu,
    store_rq,
)

from dicomdesk import config
from dicomdesk.net.applicationentity import MAX_IDLE_ASSOCIATION_THREADS
from dicomdesk.operations import LocalServer

pytestmark = pytest.mark.interop

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def in_app(tmp_path):
    events = []
    settings = config.ServerSettings(port=0, storage_dir=tmp_path / "archive", network_timeout=2.0)
    with LocalServer(settings, nodes=[], on_association=events.append) as server:
        echo_ok(server.port)
        baseline = threading.active_count()
        yield server, events
        deadline = time.monotonic() + 10
        while threading.active_count() > baseline + MAX_IDLE_ASSOCIATION_THREADS and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= baseline + MAX_IDLE_ASSOCIATION_THREADS
        echo_ok(server.port)
        assert not archive_state(tmp_path / "archive")[2], "a temp file was left in .incoming"


def test_garbage_gets_an_abort_and_the_in_app_server_stays_up(in_app):
    server, _ = in_app
    with connect(server.port) as sock:
        sock.sendall(b"\xff" * 100)
        answer = read_pdu(sock)  # then Sta13: the server waits (ARTIM) for us to close
    assert answer == b"" or answer[:1] == b"\x07"


def test_a_4_gib_length_field_is_refused_before_any_body(in_app):
    server, _ = in_app
    with connect(server.port) as sock:
        sock.sendall(struct.pack(">BBL", 0x04, 0, 0xFFFFFFFF))
        started = time.monotonic()
        answer = read_pdu(sock)
    assert answer[:1] == b"\x07"
    assert time.monotonic() - started < 3


def test_association_request_in_data_transfer_is_aborted(in_app):
    server, events = in_app
    raw = RawAssociation(server.port)
    assert raw.accepted
    raw.sock.sendall(associate_rq())
    answer = read_all(raw.sock)
    assert answer[:1] == b"\x07"
    raw.close()
    deadline = time.monotonic() + 30
    while not any(e.state == "aborted" for e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(e.state == "aborted" for e in events)


def test_peer_vanishing_mid_object_leaves_no_file_and_no_row(in_app, tmp_path):
    server, _ = in_app
    raw = RawAssociation(server.port, ((1, CT),))
    assert raw.accepted
    data = encode_dataset(make_dataset("1.2.826.0.1.3680043.8.498.99.1"))
    raw.send_command(1, store_rq("1.2.826.0.1.3680043.8.498.99.1"))
    raw.send_data(1, data[: len(data) // 2], last=False)
    raw.vanish()
    deadline = time.monotonic() + 30
    while server.ae.active_associations and time.monotonic() < deadline:
        time.sleep(0.05)
    files, rows, temps = archive_state(tmp_path / "archive")
    assert not files and not rows and not temps


def test_a_hundred_connections_at_once_are_answered(in_app):
    server, _ = in_app
    socks = []
    try:
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(associate_rq())
            socks.append(sock)
        answers = []
        for sock in socks:
            sock.settimeout(10)
            try:
                answers.append(sock.recv(1)[:1])
            except OSError:
                answers.append(b"")
        assert set(answers) <= {b"\x02", b"\x03", b""}
        assert answers.count(b"\x02") >= 1
    finally:
        for sock in socks:
            sock.close()
