"""DUL service provider: the thin loop that moves one association's bytes (PS3.8 7, 9.1).

Every protocol decision lives in ``upperlayer.UpperLayerConnection`` (framer, Table 9-10
state machine, DIMSE reassembly, ARTIM and idle-timeout decisions), which owns no socket,
thread or clock. This module only does what it cannot: it opens the requestor's connection
(and its TLS wrap), waits in one ``poll`` over the socket, a wake descriptor (a cancel set in
another thread) and the connection's next deadline; reads into the connection's framer
buffer; hands each event to the service user; has what the connection returns written
(``socket_writer``: one gathered ``sendmsg`` per batch, file regions with ``os.sendfile``);
and closes the transport when the connection says so.

This module and its writer are the only code that moves an association's bytes: nothing else
reads or writes its socket. ``applicationentity.AE`` owns the acceptor's socket around that:
it accepts it, runs its TLS handshake, peeks whether a waiting connection has spoken, may
shut it down to make room while it still waits for its A-ASSOCIATE-RQ, and closes it once
the association has ended.

The service runs in the caller's thread (the association's own thread): ``receive`` reads
the socket right there, so a PDU reaches its service without a thread hand-off, and no
thread is started per association.

TCP_NODELAY is set on every socket: without it each message waits for the peer's delayed ACK.
"""

from __future__ import annotations

import collections
import logging
import math
import select
import socket
import threading
import time
from typing import Any, Callable, Iterable

from . import pdu, trace
from .exceptions import DCMTimeoutError
from .socket_writer import RunScratch, send_parts_nonblocking, sendmsg_all
from .upperlayer import (  # noqa: F401 - re-exported: the reference's names live here
    MIN_TRANSFER_RATE,
    UNLIMITED_PDU_CAP,
    CancelRequested,
    ConnectionClosed,
    UpperLayerConnection,
)
from .wakeup import WakeDescriptor, ringing

logger = logging.getLogger(__name__)

#: Least free space asked of the framer for one read: several short PDUs per syscall.
RECV_MIN = 64 * 1024
#: P-DATA-TF PDUs at least this long are handed on as a view of the receive buffer.
RX_VIEW_MIN = pdu.FRAMER_VIEW_MIN
#: The P-DATA-TF PDUs of one message go to the connection, and to the socket, in batches
#: of about this many bytes (one state machine pass and one gathered write each).
BATCH_BYTES = 1 << 20


class Timer:
    """ARTIM-style timer on the monotonic clock (the reference's helper, PS3.8 9.1.5).

    The DUL itself keeps no timer: the connection decides with the time it is given
    (``UpperLayerConnection.next_deadline``). This stays for code written for the reference.
    """

    def __init__(self, max_seconds: float | None):
        self.max_seconds = max_seconds
        self._started_at: float | None = None

    def start(self) -> None:
        """Set the timer (a no-op when no timeout is configured)."""
        self._started_at = time.monotonic() if self.max_seconds is not None else None

    def stop(self) -> None:
        """Stop the timer."""
        self._started_at = None

    def restart(self) -> None:
        """Start again from now."""
        self.start()

    def check(self) -> bool:
        """True while the timer has not expired (or is not running)."""
        deadline = self.deadline()
        return deadline is None or time.monotonic() < deadline

    def deadline(self) -> float | None:
        """Monotonic time at which the timer expires, or None when it is not running."""
        if self._started_at is None or self.max_seconds is None:
            return None
        return self._started_at + self.max_seconds

    @property
    def running(self) -> bool:
        return self._started_at is not None


def _tune_socket(sock: socket.socket) -> bool:
    """TCP_NODELAY on every DICOM socket: each batch is one write, so Nagle only adds delay.

    A plain socket is also made non-blocking for good, and True returned: every read and
    write is tried first and waited for (``poll``) only when the kernel has nothing.
    TLS sockets keep timeouts (a TLS read may need a write, and the reverse).
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket (tests with socketpair)
        pass
    if getattr(sock, "context", None) is not None:  # ssl.SSLSocket
        return False
    sock.setblocking(False)
    return True


def _pdu_tracer(association_trace: Any) -> Callable[[str, Any, Any], None]:
    """The connection's ``on_pdu`` for a protocol trace (a closure over the trace record,
    not the DUL: the connection must not refer back to its driver). Nobody listening costs
    one ``isEnabledFor`` check per PDU."""
    def on_pdu(direction: str, item: Any, size: Any) -> None:
        if trace.enabled():
            length = size if isinstance(size, int) else sum(len(p) for p in size)
            association_trace.pdu(direction, item, length)
    return on_pdu


def _resolvable(address: tuple[str, int]) -> tuple[str | bytes, int]:
    """``address`` for ``getaddrinfo``, an ASCII host name as bytes: given ``str``, Python
    runs it through the ``idna`` codec first, and importing that codec (with ``stringprep``
    and ``unicodedata``) costs as much as a whole C-ECHO (docs/internals.md). An ASCII name
    needs no IDNA encoding; anything else still goes as ``str``, the codec encodes it."""
    host, port = address[0], address[1]
    if isinstance(host, str) and host.isascii():
        return host.encode("ascii"), port
    return host, port


class DULServiceProvider:
    """Upper-layer service for one association (reference: ``dulprovider.DULServiceProvider``).

    ``store_in_file`` and ``get_file_cb`` go to the DIMSE decoder so that data sets of those
    SOP classes are written straight into a file as fragments arrive. ``dul_socket`` is the
    accepted socket on the acceptor side; on the requestor side it is None and the
    connection is opened when the A-ASSOCIATE-RQ is sent (``connect``).
    ``max_pdu_length`` is our Maximum Length Received for P-DATA-TF PDUs.
    """

    def __init__(self, store_in_file: Iterable[str] = (), get_file_cb: Callable | None = None,
                 dul_socket: socket.socket | None = None, max_pdu_length: int = 65536, *,
                 artim_timeout: float | None = 30.0, idle_timeout: float | None = None,
                 name: str = "dul", message_file_cb: Callable | None = None):
        self.name = name
        self.connection = UpperLayerConnection(
            max_pdu_length=max_pdu_length, artim_timeout=artim_timeout, idle_timeout=idle_timeout,
            store_in_file=store_in_file, get_file_cb=get_file_cb, message_file_cb=message_file_cb)
        self.store_in_file = self.connection.store_in_file
        self.get_file_cb = get_file_cb
        self.max_pdu_length = max_pdu_length
        self.idle_timeout = idle_timeout
        self.dul_socket = dul_socket
        self.peer_address: tuple | None = None
        self.is_killed = False
        self._nonblocking = False
        self._lock = threading.RLock()
        self._wake: WakeDescriptor | None = None
        self._held: collections.deque = collections.deque()  # events read by wait_closed
        self._trace: Any = None
        self._socket_closed = False
        #: Where a run of short P-DATA-TF PDUs is laid out and read (``RunScratch``).
        self._scratch = RunScratch()
        #: Gathered writes issued so far (one ``sendmsg`` run per batch of PDUs): a count the
        #: tests check and a trace can show — C-FIND matches leave in a few, not one each.
        self.writes = 0
        if dul_socket is not None:
            self._nonblocking = _tune_socket(dul_socket)
            try:
                self.peer_address = dul_socket.getpeername()
            except OSError:
                self.peer_address = None
            # EVT_5: a transport connection indication starts the acceptor in Sta2 with ARTIM running.
            self.connection.connection_made(time.monotonic())

    # ------------------------------------------------------------------ public API
    @property
    def trace(self) -> Any:
        """The association's protocol trace record (``trace.AssociationTrace``) or None."""
        return self._trace

    @trace.setter
    def trace(self, value: Any) -> None:
        self._trace = value
        self.connection.on_pdu = _pdu_tracer(value) if value is not None else None

    @property
    def state_machine(self) -> Any:
        return self.connection.state_machine

    @property
    def state(self) -> Any:
        return self.connection.state

    @property
    def accepted_contexts(self) -> dict:
        """Accepted presentation contexts (pc_id -> PContextDef) of the current association."""
        return self.connection.accepted_contexts

    @accepted_contexts.setter
    def accepted_contexts(self, contexts: dict) -> None:
        self.connection.accepted_contexts = contexts

    @property
    def dimse_decoder(self) -> Any:
        return self.connection.dimse_decoder

    @property
    def primitive(self) -> Any:
        """The PDU the state machine handles now (the reference's variable)."""
        return self.connection.state_machine.primitive

    @property
    def event(self) -> Any:
        """The event the state machine handled last (the reference's variable)."""
        return self.connection.state_machine.event

    @property
    def closed(self) -> bool:
        """The transport connection is closed."""
        return self.connection.transport_closed

    def connect(self, address: tuple[str, int], rq_pdu: Any, timeout: float | None,
                ssl_context: Any = None) -> None:
        """Requestor: EVT_1 (A-ASSOCIATE request) → open the connection → EVT_2 sends the RQ.

        With ``ssl_context`` the TLS handshake completes before the RQ is sent (PS3.15 B.1).
        Raises OSError (refused, unreachable, timed out, TLS failure).
        """
        with self._lock:
            self.connection.request(rq_pdu, time.monotonic())
            try:
                sock = socket.create_connection(_resolvable(address), timeout=timeout)
                if ssl_context is not None:
                    try:
                        sock = ssl_context.wrap_socket(sock, server_hostname=address[0])
                    except OSError:
                        sock.close()
                        raise
            except OSError:
                self.connection.connection_lost(time.monotonic())  # AA-4: back to Sta1
                raise
            self._nonblocking = _tune_socket(sock)
            self.dul_socket = sock
            self.peer_address = address
            self._flush(self.connection.connected(time.monotonic()))

    def send(self, primitive: Any) -> None:
        """Send a PDU now, in the caller's thread, through the state machine: one gathered
        write before ``send`` returns (no queue, no hand-off to another thread)."""
        with self._lock:
            self._flush(self.connection.send(primitive, time.monotonic()))

    def send_pdata(self, pdus: list) -> None:
        """Send many P-DATA-TF PDUs (one message, or a batch of it): one pass through the
        state machine and one gathered write (``sendmsg``; file regions by ``sendfile``)."""
        with self._lock:
            self._flush(self.connection.send_data(pdus, time.monotonic()))

    def receive(self, timeout: float | None, cancel: Any = None) -> Any:
        """Next item for the service user: a ``(DIMSEMessage, pc_id)`` tuple or an indication
        (A-ASSOCIATE-RQ/AC/RJ, A-RELEASE-RQ/RP, A-ABORT PDU, ``fsm.APAbortIndication`` or
        ``ConnectionClosed``). Raises DCMTimeoutError when nothing arrives in ``timeout`` s.

        ``cancel`` (a ``threading.Event``): once it is set, ``CancelRequested`` is returned;
        setting it in another thread wakes this wait at once (a wake descriptor in the same
        poll as the socket).
        """
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        with self._lock:
            self.connection.waiting(now)
        if cancel is None:
            return self._receive(deadline, None)
        with ringing(cancel, self._wake_descriptor().wake) as rings:
            return self._receive(deadline, cancel, rings)

    def _receive(self, deadline: float | None, cancel: Any, rings: bool = False) -> Any:
        while True:
            with self._lock:
                if self._held:
                    return self._held.popleft()
                if cancel is not None and cancel.is_set():
                    self.connection.cancel()
                item = self._next_event()
                if item is not None:
                    if self.connection.awaiting_close and self.connection.discarding_input:
                        # A PDU refused from its header (AA-8): let the peer read our A-ABORT
                        # and close (or ARTIM expire) before the user closes on it, so that
                        # unread input does not reset the connection under the A-ABORT.
                        self._run_until_closed(None)
                    return item
                if self.connection.transport_closed:
                    return ConnectionClosed()
            self._step(deadline, rings)

    def receive_nowait(self) -> Any | None:
        """The next item if one is already there or readable now, else None (never blocks)."""
        with self._lock:
            if self._held:
                return self._held.popleft()
            item = self._next_event()
            if item is not None or self.connection.transport_closed or self.dul_socket is None:
                return item
            if self._readable_now():
                self._read()
            return self._next_event()

    def stop(self) -> bool:
        """Stop an idle service (Sta1 or Sta13); False when an association is still active."""
        if self.connection.state.value in (0, 12):  # STA_1, STA_13
            self.kill()
            return True
        return False

    def kill(self) -> None:
        """Close the transport and let go of every buffer the association held."""
        with self._lock:
            self.is_killed = True
            self._close_transport()
            self.connection.close()
            self._held.clear()
            self._scratch.release()
            if self._wake is not None:
                self._wake.close()
                self._wake = None

    def wait_closed(self, timeout: float | None) -> bool:
        """Wait until the transport is closed (after a release or abort): PDUs that still
        arrive go through the state machine; the indications are kept for ``receive``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._run_until_closed(deadline)
        except DCMTimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ the loop
    def _next_event(self) -> Any | None:
        """The connection's next event, after writing what it produced (an A-ABORT, an RJ)
        and closing the transport if it said so."""
        item = self.connection.next_event()
        self._flush(self.connection.data_to_send())
        return item

    def _run_until_closed(self, deadline: float | None) -> None:
        while True:
            with self._lock:
                while (item := self._next_event()) is not None:
                    self._held.append(item)
                if self.connection.transport_closed:
                    return
            self._step(deadline, False)

    def _wake_descriptor(self) -> WakeDescriptor:
        if self._wake is None:
            self._wake = WakeDescriptor()
        return self._wake

    def _step(self, deadline: float | None, rings: bool) -> None:
        """Wait once — for bytes, a wake-up, the connection's next deadline or the caller's
        ``deadline`` (DCMTimeoutError) — and feed what happened to the connection."""
        sock = self.dul_socket
        if sock is None or self.connection.transport_closed:
            with self._lock:
                self.connection.connection_lost(time.monotonic())
            return
        timers = self.connection.next_deadline()
        until = timers if deadline is None or (timers is not None and timers < deadline) else deadline
        if self._nonblocking and self._read():
            return
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            self._read(until)
            return
        poller = select.poll()
        try:
            poller.register(sock, select.POLLIN)
        except (OSError, ValueError):  # closed under us
            with self._lock:
                self.connection.connection_lost(time.monotonic())
            return
        wake = self._wake if rings else None
        if wake is not None:
            poller.register(wake.fileno(), select.POLLIN)
        wait_ms = None if until is None else max(0, math.ceil((until - time.monotonic()) * 1000))
        ready = poller.poll(wait_ms)
        if ready:
            for fd, _ in ready:
                if wake is not None and fd == wake.fileno():
                    wake.clear()
                else:
                    self._read(until)
            return
        now = time.monotonic()
        with self._lock:
            if timers is not None and now >= timers:
                self.connection.timers_expired(now)
                self._flush(self.connection.data_to_send())
                return
        if deadline is not None and now >= deadline:
            raise DCMTimeoutError("no message from the peer in time")

    def _read(self, until: float | None = None) -> bool:
        """Read what the socket has into the connection's buffer; False when nothing was
        there (a non-blocking socket) — an EOF or error counts as something (closed).
        A TLS socket (blocking, with a timeout) waits at most until ``until`` for the rest
        of a record."""
        sock = self.dul_socket
        with self._lock:
            if sock is None or self.connection.transport_closed:
                return True
            if not self._nonblocking:
                try:
                    sock.settimeout(None if until is None else max(0.001, until - time.monotonic()))
                except OSError:
                    pass
            view = self.connection.recv_buffer(RECV_MIN)
            try:
                count = sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                return False
            except socket.timeout:  # a TLS record that does not complete: the timers decide
                return False
            except OSError:
                count = 0
            finally:
                del view
            self.connection.received(count, time.monotonic())
            if not count:
                self._close_transport()
            return True

    def _readable_now(self) -> bool:
        """True when a read would not block: buffered TLS bytes or a readable socket."""
        sock = self.dul_socket
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return True
        try:
            return bool(_poll_now(sock))
        except (OSError, ValueError):  # closed under us: _read reports it
            return True

    # ------------------------------------------------------------------ writing
    def _flush(self, parts: list) -> None:
        """Write ``parts`` (one gathered write), then close if the connection asked to."""
        if parts:
            self._write(parts)
        if self.connection.must_close:
            self._close_transport()

    def _write(self, parts: list) -> None:
        sock = self.dul_socket
        if sock is None or self.connection.transport_closed:
            return
        self.writes += 1
        try:
            if self._nonblocking:
                send_parts_nonblocking(sock, parts, self.idle_timeout, self._scratch)
            else:
                sock.settimeout(self.idle_timeout)
                sendmsg_all(sock, parts)
        except OSError as exc:
            logger.info("write to %s failed: %s", self._peer(), exc)
            self._close_transport()

    def _close_transport(self) -> None:
        """Close the socket (once) and tell the connection (Evt17)."""
        sock = self.dul_socket
        if sock is not None and not self._socket_closed:
            self._socket_closed = True
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
        self.connection.connection_lost(time.monotonic())

    def _peer(self) -> str:
        if self.peer_address:
            return f"{self.peer_address[0]}:{self.peer_address[1]}"
        return "?"


def _poll_now(sock: Any) -> list:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return poller.poll(0)
