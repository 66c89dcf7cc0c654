"""Idle connections cannot lock a real requestor out of ``dicomdesk serve`` (issue 11, item 6).

A connection takes an association slot only once its A-ASSOCIATE-RQ has arrived (after the TLS
handshake, which has a short timeout of its own); connections still waiting for their request
are bounded per source address and in all, and the oldest of them is closed to make room. So 64
(or 150) silent sockets — plain TCP or against a TLS port — leave a real C-ECHO working.
"""

from __future__ import annotations

import select
import socket
import time

import pytest

from dicomdesk.config import TLSSettings
from dicomdesk.operations import Peer, echo

from serving import LOCALHOST, ServeProcess, associate_rq, echo_ok, read_pdu

pytestmark = pytest.mark.interop


def _idle_sockets(port: int, count: int, source: str = LOCALHOST) -> list[socket.socket]:
    """``count`` connections that never send a byte (what a slot-exhaustion attacker opens)."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.settimeout(10)
        sock.connect((LOCALHOST, port))
        socks.append(sock)
    return socks


def _closed_by_server(socks: list[socket.socket], timeout: float) -> int:
    """How many of ``socks`` the server has closed (EOF or reset) within ``timeout``."""
    closed, open_ = 0, list(socks)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(open_, [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        for sock in readable:
            try:
                data = sock.recv(1)
            except OSError:
                data = b""
            if not data:
                closed += 1
            open_.remove(sock)
    return closed


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def test_sixty_four_idle_connections_do_not_lock_out_an_echo(tmp_path):
    with ServeProcess(tmp_path / "storage") as proc:
        idle = _idle_sockets(proc.port, 64)
        try:
            started = time.monotonic()
            echo_ok(proc.port, timeout=10)
            assert time.monotonic() - started < 20  # not after the idle ones met ARTIM (30 s)
            # The attacker reconnects: more idle sockets; the oldest silent ones make room.
            idle += _idle_sockets(proc.port, 86)
            echo_ok(proc.port, timeout=10)
        finally:
            _close_all(idle)
        assert proc.alive()


def test_idle_connections_are_capped_per_source_address(tmp_path):
    with ServeProcess(tmp_path / "storage") as proc:
        # 100 silent connections from 127.0.0.2: the server keeps at most its per-address
        # bound of them (32 with the default 32 associations) and closes the others at once.
        idle = _idle_sockets(proc.port, 100, source="127.0.0.2")
        try:
            closed = _closed_by_server(idle, timeout=5)
            assert 100 - 32 <= closed < 100, closed
            echo_ok(proc.port, timeout=10)  # another address still gets in
        finally:
            _close_all(idle)


def test_idle_sockets_on_a_tls_port_neither_hold_slots_nor_wait_long(pki, tmp_path):
    tls = TLSSettings(cert=pki / "client.pem", key=pki / "client.key", ca=pki / "ca.pem")
    with ServeProcess(tmp_path / "storage", "--tls-cert", str(pki / "server.pem"),
                      "--tls-key", str(pki / "server.key"), "--tls-ca", str(pki / "ca.pem")) as proc:
        idle = _idle_sockets(proc.port, 64)
        try:
            started = time.monotonic()
            result = echo(Peer(LOCALHOST, proc.port, "DICOMDESK", timeout=10, tls=tls))
            assert result.ok, result.error
            assert time.monotonic() - started < 20  # not after the idle ones met ARTIM (30 s)
            # A client that starts a handshake and stalls (a TLS record header promising a
            # ClientHello that never comes) is closed by the handshake timeout (5 s), not
            # after the 15 s association timeout.
            stalled = idle[-4:]
            for sock in stalled:
                sock.sendall(b"\x16\x03\x01\x02\x00")
            started = time.monotonic()
            assert _closed_by_server(stalled, timeout=12) == len(stalled)
            assert time.monotonic() - started < 10
        finally:
            _close_all(idle)
        assert proc.alive()


def test_requestors_stalled_inside_their_request_give_way_to_a_new_one(tmp_path):
    with ServeProcess(tmp_path / "storage") as proc:
        # 32 connections from one address (its whole share) each send the first bytes of an
        # A-ASSOCIATE-RQ and stall: the old server gave them every association slot.
        stalled = _idle_sockets(proc.port, 32, source="127.0.0.3")
        try:
            for sock in stalled:
                sock.sendall(associate_rq()[:3])
            time.sleep(2.5)  # past STALLED_REQUEST_S (a deadline: nothing to wait on)
            with socket.socket() as sock:
                sock.bind(("127.0.0.3", 0))
                sock.settimeout(10)
                sock.connect((LOCALHOST, proc.port))
                sock.sendall(associate_rq())
                assert read_pdu(sock)[:1] == b"\x02"  # accepted
            assert _closed_by_server(stalled, timeout=5) >= 1  # the oldest stalled one made room
        finally:
            _close_all(stalled)
