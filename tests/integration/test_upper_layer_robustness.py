"""Bad peers against the server: each ends its own connection only, and echo still works.

PS3.8 9.2: an invalid PDU leads to A-ABORT (AA-8), a connection that never sends an
A-ASSOCIATE-RQ is closed when the ARTIM timer expires (AA-2), a peer that vanishes ends its
association (AA-4) — the server stays up.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from dicomdesk.net import pdu, uids
from dicomdesk.net.applicationentity import AE
from dicomdesk.net.sopclass import verification_scp
from dicomdesk.operations import Peer, echo

pytestmark = pytest.mark.interop


class RecordingAE(AE):
    """Server whose association endings are visible to the test."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ended = []
        self.changed = threading.Condition()

    def _record(self, what):
        with self.changed:
            self.ended.append(what)
            self.changed.notify_all()

    def on_association_released(self, asce):
        self._record("released")

    def on_association_aborted(self, asce, error):
        self._record("aborted")


@pytest.fixture
def server():
    ae = RecordingAE("SERVER", 0, max_associations=4)
    ae.artim_timeout = 0.5
    ae.network_timeout = 2
    ae.add_scp(verification_scp)
    with ae:
        yield ae


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (the test times out otherwise)."""
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _read_reject(sock: socket.socket) -> bytes:
    """The 10-byte A-ASSOCIATE-RJ; then we close, as a requestor must (PS3.8 Sta13)."""
    data = b""
    while len(data) < 10:
        chunk = sock.recv(10 - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _associate_rq(called: str = "SERVER") -> bytes:
    from dicomdesk.net.applicationentity import ClientAE
    from dicomdesk.net.asceprovider import AssociationRequester
    from dicomdesk.net.sopclass import verification_scu

    client = ClientAE("RAW").add_scu(verification_scu)
    return AssociationRequester(client, 16384, {"aet": called}).build_request().encode()


def _echo_still_works(ae: AE) -> None:
    result = echo(Peer("127.0.0.1", ae.port, "SERVER", timeout=5))
    assert result.ok, result.error


def test_garbage_bytes_before_association_close_that_connection_only(server):
    with _connect(server.port) as sock:
        sock.sendall(b"\x99" * 64)  # unknown PDU type
        answer = _read_all(sock)
    # Sta2 + invalid PDU → AA-1: A-ABORT then close (or close at once, AA-2 semantics)
    assert answer == b"" or answer[0] == 0x07
    _echo_still_works(server)


def test_length_field_of_0xffffffff_is_refused_before_reading_the_body(server):
    with _connect(server.port) as sock:
        started = time.monotonic()
        sock.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFFFFFF) + b"\x00" * 10)
        answer = _read_all(sock)
        assert time.monotonic() - started < 3, "the server waited for a body it must refuse"
    assert answer[:1] == b"\x07"  # A-ABORT
    abort = pdu.AAbortPDU.decode(answer[:10])
    assert abort.source == 2
    _echo_still_works(server)


def test_p_data_length_above_our_maximum_aborts_the_association(server):
    with _connect(server.port) as sock:
        sock.sendall(_associate_rq())
        ac = sock.recv(65536)
        assert ac[0] == 0x02
        sock.sendall(struct.pack(">BBL", 0x04, 0, server.max_pdu_length + 1000))
        answer = _read_all(sock)
    assert answer[:1] == b"\x07"
    with server.changed:
        server.changed.wait_for(lambda: "aborted" in server.ended, timeout=30)
    _echo_still_works(server)


def test_connection_that_sends_nothing_is_closed_when_artim_expires(server):
    with _connect(server.port) as sock:
        started = time.monotonic()
        answer = _read_all(sock)
        waited = time.monotonic() - started
    assert answer == b""
    assert 0.3 < waited < 4
    _echo_still_works(server)


def test_pdu_out_of_place_for_the_state_is_aborted(server):
    with _connect(server.port) as sock:
        sock.sendall(_associate_rq())
        assert sock.recv(65536)[0] == 0x02
        sock.sendall(_associate_rq())  # A-ASSOCIATE-RQ in Sta6: unexpected PDU
        answer = _read_all(sock)
    abort = pdu.AAbortPDU.decode(answer[:10])
    assert (abort.source, abort.reason_diag) == (2, 2)
    _echo_still_works(server)


def test_peer_that_vanishes_mid_association_ends_only_its_association(server):
    sock = _connect(server.port)
    sock.sendall(_associate_rq())
    assert sock.recv(65536)[0] == 0x02
    sock.close()  # gone without release or abort
    with server.changed:
        assert server.changed.wait_for(lambda: "aborted" in server.ended, timeout=30)
    _echo_still_works(server)
    deadline = time.monotonic() + 30
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.active_associations == 0


def test_association_request_truncated_mid_pdu_is_dropped_by_the_idle_timeout(server):
    with _connect(server.port) as sock:
        sock.sendall(_associate_rq()[:20])  # header promises more than ever comes
        started = time.monotonic()
        _read_all(sock)
        assert time.monotonic() - started < 5
    _echo_still_works(server)


def test_connections_over_the_limit_are_rejected_with_local_limit_exceeded(server):
    holders = []
    try:
        for _ in range(server.max_associations):
            sock = _connect(server.port)
            sock.sendall(_associate_rq())
            assert sock.recv(65536)[0] == 0x02
            holders.append(sock)
        with _connect(server.port) as extra:
            extra.sendall(_associate_rq())
            answer = _read_reject(extra)
        rj = pdu.AAssociateRjPDU.decode(answer[:10])
        assert (rj.result, rj.source, rj.reason_diag) == (2, 3, 2)
    finally:
        for sock in holders:
            sock.close()
    deadline = time.monotonic() + 30
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.05)
    _echo_still_works(server)


def test_unknown_called_ae_title_gets_a_reject_when_the_server_is_strict():
    with AE("STRICT", 0, require_called_aet=True).add_scp(verification_scp) as strict:
        with _connect(strict.port) as sock:
            sock.sendall(_associate_rq(called="SOMEONE"))
            answer = _read_reject(sock)
    rj = pdu.AAssociateRjPDU.decode(answer[:10])
    assert (rj.result, rj.source, rj.reason_diag) == (1, 1, 7)


def test_unsupported_protocol_version_is_rejected():
    raw = bytearray(_associate_rq())
    raw[6:8] = b"\x00\x02"  # protocol version bit 0 not set
    with AE("SERVER", 0).add_scp(verification_scp) as server:
        with _connect(server.port) as sock:
            sock.sendall(bytes(raw))
            answer = _read_reject(sock)
    rj = pdu.AAssociateRjPDU.decode(answer[:10])
    assert (rj.source, rj.reason_diag) == (2, 2)
    assert uids.VERIFICATION_SOP_CLASS  # the constant the request used


def test_peer_dribbling_a_pdu_byte_by_byte_just_under_the_idle_timeout_is_dropped(server):
    """Slowloris in data transfer (no ARTIM running): each byte resets the idle timer, but a
    PDU must be complete within the idle timeout plus its length at the minimum rate."""
    from dicomdesk.net import dimsemessages

    rq = dimsemessages.CEchoRQMessage()
    rq.message_id = 1
    rq.sop_class_uid = uids.VERIFICATION_SOP_CLASS
    p_data = b"".join(p.encode() for p in rq.encode(1, 16384))
    with _connect(server.port) as sock:
        sock.sendall(_associate_rq())
        assert sock.recv(65536)[0] == 0x02
        started = time.monotonic()
        dropped = False
        for byte in p_data:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                dropped = True
                break
            sock.settimeout(server.network_timeout * 0.6)  # just under the idle timeout
            try:
                answer = sock.recv(100)
            except socket.timeout:
                continue
            except OSError:
                dropped = True
                break
            dropped = answer == b"" or answer[:1] == b"\x07"
            break
        elapsed = time.monotonic() - started
    assert dropped, "the slow peer kept its slot"
    assert elapsed < server.network_timeout * 3
    _echo_still_works(server)
