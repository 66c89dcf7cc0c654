"""The DUL's receive buffer: PDUs framed from one reusable buffer, long P-DATA-TF as views.

The DUL reads (``recv_into``) straight into the buffer of the connection's framer
(``pdu.PDUFramer``, the one framer of the stack), which grows to the longest PDU and is then
reused: a long P-DATA-TF PDU is handed on as a view of it (no allocation, zeroing or copy per
PDU). These tests read real bytes from a socket pair and check the framing, the reuse, and
that a PDU somebody kept is never overwritten by the next one.
"""

from __future__ import annotations

import socket
import threading

import pytest

from dicomdesk.net import pdu
from dicomdesk.net.dulprovider import RX_VIEW_MIN, DULServiceProvider
from dicomdesk.net.socket_writer import wait_io
from dicomdesk.net.upperlayer import IdleTimeout, pdu_buffers


def p_data(context_id: int, payload: bytes) -> bytes:
    """One P-DATA-TF PDU with one PDV (message control header 0x00: data, not last)."""
    return pdu.PDataTfPDU([pdu.PresentationDataValueItem(context_id, b"\x00" + payload)]).encode()


@pytest.fixture
def dul_and_peer():
    ours, theirs = socket.socketpair()
    dul = DULServiceProvider(dul_socket=ours, max_pdu_length=1 << 20, idle_timeout=10)
    yield dul, theirs
    theirs.close()
    ours.close()


def read_pdu(dul: DULServiceProvider):
    """The next whole raw PDU as the DUL reads it (into the framer's buffer), None at EOF."""
    framer = dul.connection.framer
    while (raw := framer.next_pdu()) is None:
        if dul.closed:
            return None
        if not dul._read():
            assert wait_io(dul.dul_socket, False, 10)
    return raw


def pdu_parts(pdus: list) -> list:
    return [part for item in pdus for part in pdu_buffers(item)]


def send_later(sock: socket.socket, data: bytes) -> threading.Thread:
    """Write from another thread: more than a socket buffer holds would block this one."""
    thread = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    thread.start()
    return thread


def payloads(count: int, size: int) -> list[bytes]:
    return [bytes([i]) * size for i in range(count)]


def test_short_and_long_pdus_in_one_stream_are_framed_exactly(dul_and_peer):
    dul, peer = dul_and_peer
    sizes = [10, 300_000, 3, RX_VIEW_MIN, 70, 900_000, 1]
    stream = [p_data(1, bytes([i % 251]) * n) for i, n in enumerate(sizes)]
    writer = send_later(peer, b"".join(stream))
    for expected in stream:
        raw = read_pdu(dul)
        assert bytes(raw) == expected
        del raw
    writer.join(5)


def test_long_p_data_pdus_reuse_one_buffer(dul_and_peer):
    dul, peer = dul_and_peer
    data = payloads(6, 400_000)
    writer = send_later(peer, b"".join(p_data(1, d) for d in data))
    buffers = set()
    for d in data:
        raw = read_pdu(dul)
        assert isinstance(raw, memoryview) and raw.obj is dul.connection.framer._buffer
        assert bytes(raw[12:]) == d  # 6-byte PDU header, 4-byte length, context, control
        buffers.add(id(raw.obj))
        del raw
    writer.join(5)
    assert len(buffers) == 1


def test_a_pdu_kept_by_someone_is_never_overwritten(dul_and_peer):
    dul, peer = dul_and_peer
    data = payloads(4, 300_000)
    writer = send_later(peer, b"".join(p_data(1, d) for d in data))
    kept = [read_pdu(dul) for _ in data]  # e.g. a protocol trace holding every PDU
    writer.join(5)
    assert [bytes(k[12:]) for k in kept] == data


def test_p_data_decoded_as_views_matches_the_copying_decoder(dul_and_peer):
    dul, peer = dul_and_peer
    stream = p_data(3, bytes(range(256)) * 1000)
    writer = send_later(peer, stream)
    raw = read_pdu(dul)
    writer.join(5)
    viewed = pdu.PDataTfPDU.decode(raw, copy=False)
    copied = pdu.PDataTfPDU.decode(stream)
    assert [(v.context_id, bytes(v.data_value)) for v in viewed.data_value_items] == \
        [(v.context_id, v.data_value) for v in copied.data_value_items]
    assert isinstance(copied.data_value_items[0].data_value, bytes)


def test_a_peer_that_closes_mid_pdu_gives_end_of_stream(dul_and_peer):
    dul, peer = dul_and_peer
    peer.sendall(p_data(1, b"x" * 200_000)[:100_000])
    peer.shutdown(socket.SHUT_WR)
    assert read_pdu(dul) is None


def test_a_peer_that_stops_reading_gets_the_connection_closed_after_the_idle_timeout():
    """Writes wait for the peer's window at most ``idle_timeout`` s (the socket is
    non-blocking; the wait is a poll), then the transport is closed, not held forever."""
    import time

    ours, theirs = socket.socketpair()
    try:
        dul = DULServiceProvider(dul_socket=ours, max_pdu_length=1 << 20, idle_timeout=0.3)
        big = pdu.PDataTfPDU([pdu.PresentationDataValueItem(1, b"\x00" + bytes(16 << 20))])
        started = time.monotonic()
        dul._write(pdu_parts([big]))  # nobody reads ``theirs``
        assert dul.closed
        assert 0.3 <= time.monotonic() - started < 5
    finally:
        theirs.close()
        ours.close()


def test_a_wait_for_the_next_pdu_ends_at_the_idle_timeout():
    """A PDU that begins and then stops: the idle timeout is an event of the connection
    (an A-P-ABORT indication), the transport is closed and the state machine knows it."""
    import time

    ours, theirs = socket.socketpair()
    try:
        dul = DULServiceProvider(dul_socket=ours, max_pdu_length=1 << 20, idle_timeout=0.2,
                                 artim_timeout=None)
        theirs.sendall(p_data(1, b"x" * 100)[:20])  # a PDU that begins, then nothing
        started = time.monotonic()
        assert isinstance(dul.receive(10), IdleTimeout)
        assert time.monotonic() - started < 5
        assert dul.closed and dul.state.name == "STA_1"
    finally:
        theirs.close()
        ours.close()


def _write_while_draining(dul: DULServiceProvider, parts: list, peer: socket.socket, expected: int) -> bytes:
    """``dul._write(parts)`` while another thread reads ``expected`` bytes from ``peer``
    (more than the socket buffers hold: the write waits for the window)."""
    received = bytearray()

    def drain():
        while len(received) < expected:
            chunk = peer.recv(1 << 16)
            if not chunk:
                return
            received.extend(chunk)

    reader_thread = threading.Thread(target=drain, daemon=True)
    reader_thread.start()
    dul._write(parts)
    reader_thread.join(10)
    return bytes(received)


def test_file_regions_are_written_whole_through_a_full_window(tmp_path):
    """A PDU whose data set stays in a file (``FileRegion``, sent with ``os.sendfile``)
    arrives byte for byte, also when the peer's window fills and the write has to wait."""
    from dicomdesk.net.fragmentation import FileRegion
    from dicomdesk.net.sopclass.storage_send import _DataSetReader

    data = bytes(range(256)) * (12 << 10)  # 3 MiB: more than the socket buffers hold
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 100 + data)
    ours, theirs = socket.socketpair()
    try:
        dul = DULServiceProvider(dul_socket=ours, max_pdu_length=1 << 20, idle_timeout=10)
        with open(path, "rb") as fp:
            reader = _DataSetReader(fp, len(data), False, None)
            pdus = [pdu.PDataTfPDU([pdu.PresentationDataValueItem(
                1, FileRegion(b"\x02", reader, 100 + start, min(1 << 20, len(data) - start)))])
                for start in range(0, len(data), 1 << 20)]
            expected = b"".join(p.encode() for p in pdus)
            received = _write_while_draining(dul, pdu_parts(pdus), theirs, len(expected))
        assert not dul.closed
        assert received == expected
    finally:
        theirs.close()
        ours.close()


@pytest.mark.parametrize("max_pdu", [16384, 256 * 1024 + 6])
def test_runs_of_file_pdus_are_written_whole_through_a_full_window(tmp_path, max_pdu):
    """A run of P-DATA-TF PDUs over a file (``pdu.PDataFileRun``) arrives byte for byte —
    short fragments laid out and read with ``preadv``, long ones by ``sendfile`` after their
    headers — also when the peer's window fills and the write has to wait."""
    from dicomdesk.net.sopclass.storage_send import _DataSetReader

    data = bytes(range(256)) * (12 << 10) + b"tail"  # 3 MiB and a short last fragment
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 100 + data)
    ours, theirs = socket.socketpair()
    try:
        dul = DULServiceProvider(dul_socket=ours, max_pdu_length=1 << 20, idle_timeout=10)
        with open(path, "rb") as fp:
            reader = _DataSetReader(fp, len(data), False, None)
            half = len(data) // 2 // (max_pdu - 6) * (max_pdu - 6)
            runs = [pdu.PDataFileRun(1, reader, 100, half, max_pdu - 6, 0, 0),
                    pdu.PDataFileRun(1, reader, 100 + half, len(data) - half, max_pdu - 6, 0, 2)]
            expected = b"".join(bytes(run) for run in runs)
            assert len(expected) == len(data) + 12 * sum(run.count for run in runs)
            # two runs in one write: neither overwrites the other's buffer
            received = _write_while_draining(dul, pdu_parts(runs), theirs, len(expected))
        assert not dul.closed
        assert received == expected
    finally:
        theirs.close()
        ours.close()


def test_a_file_that_shrank_under_a_run_closes_the_association_rather_than_send_a_short_pdu(tmp_path):
    """The PDU lengths of a run are fixed before its bytes are read: a file truncated in
    between cannot be sent whole, so the write fails and the transport is closed (the peer
    sees a cut association, never a PDU with bytes of something else)."""
    from dicomdesk.net.sopclass.storage_send import _DataSetReader

    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 100 + bytes(100_000))
    ours, theirs = socket.socketpair()
    try:
        dul = DULServiceProvider(dul_socket=ours, max_pdu_length=1 << 20, idle_timeout=10)
        with open(path, "rb") as fp:
            reader = _DataSetReader(fp, 100_000, False, None)
            run = pdu.PDataFileRun(1, reader, 100, 100_000, 16378, 0, 2)
            with open(path, "r+b") as shrink:
                shrink.truncate(50_000)
            dul._write(pdu_parts([run]))
        assert dul.closed
    finally:
        theirs.close()
        ours.close()
