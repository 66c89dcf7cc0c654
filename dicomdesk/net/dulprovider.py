"""DUL service provider: the only module that touches a socket (PS3.8 section 7 and 9.2).

One ``DULServiceProvider`` drives one association's state machine (``fsm.StateMachine``)
over one TCP connection. Reading waits on the socket with a deadline (the ARTIM timer while
it runs, else the idle timeout, or the caller's own deadline), frames whole PDUs, refuses a
length field above the local maximum before reading the body, feeds each PDU to the state
machine and, in data transfer, to the ``DIMSEDecoder``; only *complete* DIMSE messages and
indications reach the service user. Sending runs the P-DATA / release / abort event through
the state machine and writes the PDU at once, header and payload gathered into one
``sendmsg`` call.

Two ways to run it:

* pump mode (what associations use): ``receive`` reads the socket in the caller's thread —
  the association's own thread — so there is no thread hand-off per PDU or per message and
  no thread start per association;
* reader-thread mode (the reference's model): ``start()`` runs ``run()`` in its own thread,
  which queues indications for ``receive``.

TCP_NODELAY is set on every socket: without it each message waits ~40 ms for a delayed ACK.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import select
import socket
import sys
import threading
import time
from typing import Any, Callable, Iterable

from . import fsm, pdu, trace
from .exceptions import (
    ABORT_REASON_NOT_SPECIFIED,
    ABORT_SOURCE_SERVICE_PROVIDER,
    DCMTimeoutError,
    DIMSEProcessingError,
    NetDICOMError,
    PDUProcessingError,
)

logger = logging.getLogger(__name__)

#: Bytes asked of the kernel per recv() when no large body is pending.
RECV_CHUNK = 256 * 1024
#: The receive buffer's first size; it grows to the longest PDU received (at most our
#: Maximum Length, or UNLIMITED_PDU_CAP) and is reused for every PDU after that.
RX_BUFFER_START = 64 * 1024
#: P-DATA-TF PDUs at least this long are handed on as a view of the receive buffer
#: (no copy); shorter PDUs, and every other PDU, get bytes of their own.
RX_VIEW_MIN = 64 * 1024

#: What we read at most for one P-DATA-TF PDU when we announced "no limit" (0): the peer
#: may send any length then, but memory must stay bounded (PS3.8 D.1 allows refusing it).
UNLIMITED_PDU_CAP = 64 * 1024 * 1024

#: Slowest rate (bytes/s) a peer may send one PDU at, on top of the idle timeout, before the
#: association is aborted (slowloris protection; 64 KiB/s moves a 256 KiB PDU in 4 s).
MIN_TRANSFER_RATE = 64 * 1024


class Timer:
    """ARTIM-style timer on the monotonic clock (PS3.8 9.1.5).

    It never sleeps or wakes anything: the reader turns ``deadline()`` into the timeout of
    its next blocking socket wait.
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


class ConnectionClosed:
    """Indication that the transport connection closed (EVT_17) without a PDU saying why."""

    def __repr__(self) -> str:
        return "ConnectionClosed()"


def _tune_socket(sock: socket.socket) -> bool:
    """TCP_NODELAY on every DICOM socket: each PDU is one write, so Nagle only adds delay.

    A plain socket is also made non-blocking for good, and True returned: every read and
    write is tried first and waited for (``poll``) only when the kernel has nothing, where
    a socket timeout costs an ``ioctl`` per change of timeout and a ``poll`` before every
    call. TLS sockets keep timeouts (a TLS read may need a write, and the reverse).
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket (tests with socketpair)
        pass
    if getattr(sock, "context", None) is not None:  # ssl.SSLSocket
        return False
    sock.setblocking(False)
    return True


def _wait_io(sock: socket.socket, writing: bool, timeout: float | None) -> bool:
    """Wait until ``sock`` can be read (or written); False when ``timeout`` s pass first."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT if writing else select.POLLIN)
    return bool(poller.poll(None if timeout is None else math.ceil(timeout * 1000)))


class DULServiceProvider(threading.Thread):
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
        super().__init__(name=name, daemon=True)
        self.store_in_file = set(store_in_file)
        self.get_file_cb = get_file_cb
        # Extension: ``message_file_cb(context, msg)`` opens the file from the message's
        # fields (no pydicom command set per received object); see DIMSEDecoder.
        self.message_file_cb = message_file_cb
        self.dul_socket = dul_socket
        self.max_pdu_length = max_pdu_length
        self.idle_timeout = idle_timeout
        self.timer = Timer(artim_timeout)
        self.state_machine = fsm.StateMachine(self, self.timer, self.store_in_file, get_file_cb)
        self.to_service_user: queue.SimpleQueue = queue.SimpleQueue()
        self.is_killed = False
        self.primitive: Any = None
        self.event: Any = None
        self.dimse_decoder: Any = None
        self._accepted_contexts: dict = {}
        self._fsm_lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._closed = threading.Event()
        self.trace: Any = None  # trace.AssociationTrace, set by the association
        self._reader_started = False
        self._finished = False
        # Received bytes not yet framed are ``_rx[_rx_start:_rx_end]`` (``_read_pdu``).
        self._rx = bytearray(RX_BUFFER_START)
        self._rx_start = 0
        self._rx_end = 0
        self.peer_address: tuple | None = None
        self._nonblocking = False
        if dul_socket is not None:
            self._nonblocking = _tune_socket(dul_socket)
            try:
                self.peer_address = dul_socket.getpeername()
            except OSError:
                self.peer_address = None
            # EVT_5: a transport connection indication starts the acceptor in Sta2 with ARTIM running.
            self._handle(fsm.Events.EVT_5, None)

    # ------------------------------------------------------------------ public API
    @property
    def accepted_contexts(self) -> dict:
        """Accepted presentation contexts (pc_id -> PContextDef) of the current association."""
        return self._accepted_contexts

    @accepted_contexts.setter
    def accepted_contexts(self, contexts: dict) -> None:
        self._accepted_contexts = dict(contexts)
        from .dimsedecoder import DIMSEDecoder  # late: decoder needs the contexts first
        self.dimse_decoder = DIMSEDecoder(self._accepted_contexts, self.store_in_file, self.get_file_cb,
                                          message_file_cb=self.message_file_cb)

    @property
    def state(self) -> fsm.States:
        return self.state_machine.current_state

    def connect(self, address: tuple[str, int], rq_pdu: Any, timeout: float | None,
                ssl_context: Any = None) -> None:
        """Requestor: EVT_1 (A-ASSOCIATE request) → open the connection → EVT_2 sends the RQ.

        With ``ssl_context`` the TLS handshake completes before the RQ is sent (PS3.15 B.1).
        Raises OSError (refused, unreachable, timed out, TLS failure) before any thread starts.
        """
        self.state_machine.is_requestor = True
        with self._fsm_lock:
            effects = self.state_machine.action(fsm.Events.EVT_1, rq_pdu)
        for effect in effects:
            if not isinstance(effect, fsm.OpenTransport):
                self._apply(effect)
        sock = socket.create_connection(address, timeout=timeout)
        if ssl_context is not None:
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=address[0])
            except OSError:
                sock.close()
                raise
        self._nonblocking = _tune_socket(sock)
        self.dul_socket = sock
        self.peer_address = address
        self._handle(fsm.Events.EVT_2, rq_pdu)

    def send(self, primitive: Any) -> None:
        """Send a PDU now, in the caller's thread, through the state machine.

        Unlike the reference's queue, the write happens before ``send`` returns: one
        ``sendmsg`` per PDU and no hand-off to another thread.
        """
        event = _local_event_for(primitive, self.state_machine)
        self._handle(event, primitive)

    def start(self) -> None:
        """Run the reader in its own thread (the reference's model). Without it, the
        service runs in "pump" mode: ``receive`` reads the socket in the caller's thread."""
        self._reader_started = True
        super().start()

    def receive(self, timeout: float | None) -> Any:
        """Next item for the service user: a ``(DIMSEMessage, pc_id)`` tuple or an indication
        (A-ASSOCIATE-RQ/AC/RJ, A-RELEASE-RQ/RP, A-ABORT PDU, ``fsm.APAbortIndication`` or
        ``ConnectionClosed``). Raises DCMTimeoutError when nothing arrives in ``timeout`` s.

        In pump mode (no reader thread) the socket is read right here: one wake-up per PDU,
        no hand-off between threads.
        """
        if self._reader_started:
            try:
                return self.to_service_user.get(timeout=timeout)
            except queue.Empty:
                raise DCMTimeoutError(f"no message from the peer within {timeout} s") from None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self.to_service_user.get_nowait()
            except queue.Empty:
                pass
            if self._finished:
                return ConnectionClosed()
            if not self._pump_one(deadline):
                self._finish()

    def receive_nowait(self) -> Any | None:
        """The next item if one is already there or readable now, else None (never blocks)."""
        try:
            return self.to_service_user.get_nowait()
        except queue.Empty:
            pass
        if self._reader_started or self._finished or not self._readable_now():
            return None
        try:
            if not self._pump_one(time.monotonic()):
                self._finish()
        except DCMTimeoutError:
            return None
        try:
            return self.to_service_user.get_nowait()
        except queue.Empty:
            return None

    def _readable_now(self) -> bool:
        """True when a read would not block: buffered bytes, TLS-decrypted bytes or a
        readable socket (a zero-timeout ``select``). A socket timeout cannot ask this: the
        kernel wait it becomes is rounded up to 1 ms, which an SCP checking for C-CANCEL
        between C-FIND responses would pay on every match."""
        sock = self.dul_socket
        if sock is None or self._rx_end > self._rx_start or self._closed.is_set():
            return True  # let _pump_one report what there is (data or the closed transport)
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):  # closed under us: _pump_one reports it
            return True
        return bool(readable)

    def stop(self) -> bool:
        """Stop an idle service (Sta1 or Sta13); False when an association is still active."""
        if self.state_machine.current_state in (fsm.States.STA_1, fsm.States.STA_13):
            self.kill()
            return True
        return False

    def kill(self) -> None:
        """Close the transport and wait for the reader thread (if any) to end."""
        self.is_killed = True
        self._close_socket()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)

    def wait_closed(self, timeout: float | None) -> bool:
        """Wait until the transport is closed (after a release or abort)."""
        if self._reader_started or self._closed.is_set():
            return self._closed.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed.is_set():
            try:
                if not self._pump_one(deadline):
                    self._finish()
            except DCMTimeoutError:
                return False
        return True

    # ------------------------------------------------------------------ reading
    def run(self) -> None:
        """Reader thread: one whole PDU at a time, until the transport closes."""
        try:
            while not self.is_killed and self.dul_socket is not None:
                if not self._pump_one(None):
                    break
        except Exception:  # never let a reader thread die silently with an open socket
            logger.exception("DUL reader for %s failed", self._peer())
            self._abort_locally(ABORT_REASON_NOT_SPECIFIED)
        finally:
            self._finish()

    def _finish(self) -> None:
        """The transport is gone: close it and tell the service user, once."""
        self._close_socket()
        if not self._finished:
            self._finished = True
            self.to_service_user.put(ConnectionClosed())

    def _pump_one(self, deadline: float | None) -> bool:
        """Read one PDU and run it through the state machine; False once the transport is closed.

        ``deadline`` (monotonic) bounds the wait for the *start* of a PDU (DCMTimeoutError);
        a PDU that has begun is read to its end under the idle timeout.
        """
        if self.is_killed or self.dul_socket is None or self._closed.is_set():
            return False
        try:
            raw = self._read_pdu(deadline)
        except PDUProcessingError as exc:
            # The length field cannot be trusted, so the stream cannot be re-framed:
            # answer (AA-1/AA-8), then only drain until close or ARTIM (Sta13).
            logger.warning("peer %s sent an invalid PDU: %s", self._peer(), exc)
            self._rx_start = self._rx_end = 0
            self._handle(fsm.Events.EVT_19, exc)
            self._drain_until_closed()
            return not self._closed.is_set()
        except _ArtimExpired:
            self._handle(fsm.Events.EVT_18, None)
            return not self._closed.is_set()
        except _IdleTimeout:
            logger.warning("peer %s: no data for %s s, aborting", self._peer(), self.idle_timeout)
            self._abort_locally(ABORT_REASON_NOT_SPECIFIED)
            return False
        except _WaitOver:
            raise DCMTimeoutError("no message from the peer in time") from None
        if raw is None:  # EOF or connection error
            self._handle(fsm.Events.EVT_17, None)
            return False
        try:
            # P-DATA-TF: PDV values stay views of ``raw`` (no copy of the data)
            pdu_obj = pdu.PDataTfPDU.decode(raw, copy=False) if raw[0] == 4 else pdu.decode_pdu(raw)
        except PDUProcessingError as exc:
            logger.warning("peer %s sent an undecodable PDU: %s", self._peer(), exc)
            self._handle(fsm.Events.EVT_19, exc)
            return not self._closed.is_set()
        if self.trace is not None and trace.enabled():
            self.trace.pdu("received", pdu_obj, len(raw))
        self._handle(fsm.event_for_pdu(pdu_obj), pdu_obj)
        if type(raw) is memoryview:
            # The DIMSE decoder has written or copied every PDV: drop the last references to
            # the PDU so that the receive buffer it views can take the next one.
            self.primitive = self.state_machine.primitive = None
        return not self._closed.is_set()

    def _drain_until_closed(self) -> None:
        """Discard input until the peer closes or the ARTIM timer expires (then close)."""
        while not self.is_killed and self.dul_socket is not None and not self._closed.is_set():
            try:
                if not self._recv(RECV_CHUNK, None):
                    self._handle(fsm.Events.EVT_17, None)
                    return
            except _ArtimExpired:
                self._handle(fsm.Events.EVT_18, None)
                return
            except _IdleTimeout:
                self._close_socket()
                return
        self._rx_start = self._rx_end = 0

    def _read_pdu(self, deadline: float | None) -> bytes | memoryview | None:
        """One whole PDU (header and body) or None at EOF; the length is checked first.

        The bytes land in one reusable buffer (``_rx``): a read asks for as much as the
        buffer holds (several short PDUs in one syscall), and a long P-DATA-TF body is read
        straight into place and handed on as a view of it — no allocation, zeroing or copy
        per PDU. The view is valid until the next call; ``_pump_one`` consumes it before.

        Once a PDU has begun, it must be complete within the idle timeout plus its length at
        MIN_TRANSFER_RATE: a peer dribbling a byte now and then cannot hold a slot forever.
        """
        self._rx_reclaim()
        started = time.monotonic() if self._rx_end > self._rx_start else None
        while self._rx_end - self._rx_start < 6:
            if self._rx_end == len(self._rx):
                self._rx_fit(6)
            pdu_deadline = self._pdu_deadline(started, 6)
            n = self._recv_into(memoryview(self._rx)[self._rx_end:],
                                deadline if self._rx_end == self._rx_start else None, pdu_deadline)
            if not n:
                return None
            if started is None:
                started = time.monotonic()
            self._rx_end += n
        start = self._rx_start
        pdu_type, length = pdu.parse_pdu_header(bytes(self._rx[start:start + 6]))
        pdu.check_pdu_length(pdu_type, length, self.max_pdu_length or UNLIMITED_PDU_CAP)
        total = 6 + length
        if start + total > len(self._rx):
            self._rx_fit(total)
            start = self._rx_start
        pdu_deadline = self._pdu_deadline(started, total)
        end = start + total
        while self._rx_end < end:
            n = self._recv_into(memoryview(self._rx)[self._rx_end:end], None, pdu_deadline)
            if not n:
                return None
            self._rx_end += n
        if self._rx_end == end:
            self._rx_start = self._rx_end = 0
        else:
            self._rx_start = end
        if total >= RX_VIEW_MIN and pdu_type == 4:
            return memoryview(self._rx)[start:end]
        return bytes(self._rx[start:end])

    def _rx_reclaim(self) -> None:
        """Write into ``_rx`` only when no view of it is alive (someone kept a PDU: the
        protocol trace, a test): otherwise move the unframed bytes to a buffer of their own."""
        if sys.getrefcount(self._rx) > 2:  # the attribute and the call's argument
            size = max(RX_BUFFER_START, self._rx_end - self._rx_start)
            fresh = bytearray(size)
            fresh[:self._rx_end - self._rx_start] = self._rx[self._rx_start:self._rx_end]
            self._rx, self._rx_end, self._rx_start = fresh, self._rx_end - self._rx_start, 0

    def _rx_fit(self, total: int) -> None:
        """Make room for a PDU of ``total`` bytes from ``_rx_start``: move the unframed bytes
        to the front, and grow the buffer (once, to that PDU's length) if it is too short."""
        have = self._rx_end - self._rx_start
        if total > len(self._rx):
            fresh = bytearray(total)
            fresh[:have] = self._rx[self._rx_start:self._rx_end]
            self._rx = fresh
        elif self._rx_start:
            self._rx[:have] = self._rx[self._rx_start:self._rx_end]
        self._rx_start, self._rx_end = 0, have

    def _pdu_deadline(self, started: float | None, length: int) -> float | None:
        if started is None or self.idle_timeout is None:
            return None
        return started + self.idle_timeout + length / MIN_TRANSFER_RATE

    def _wait_timeout(self, deadline: float | None = None,
                      pdu_deadline: float | None = None) -> tuple[float | None, type | None]:
        """The socket timeout for the next wait and what its expiry means."""
        now = time.monotonic()
        artim = self.timer.deadline()
        if artim is not None:
            timeout, kind = max(0.0, artim - now), _ArtimExpired
        elif self.idle_timeout is not None:
            timeout, kind = self.idle_timeout, _IdleTimeout
        else:
            timeout, kind = None, None
        if pdu_deadline is not None and (timeout is None or pdu_deadline - now < timeout):
            timeout, kind = max(1e-6, pdu_deadline - now), _IdleTimeout
        if deadline is not None and (timeout is None or deadline - now < timeout):
            timeout, kind = max(1e-6, deadline - now), _WaitOver
        return timeout, kind

    def _recv(self, size: int, deadline: float | None, pdu_deadline: float | None = None) -> bytes:
        data = bytearray(size)
        n = self._recv_into(memoryview(data), deadline, pdu_deadline)
        del data[n:]
        return bytes(data)

    def _recv_into(self, view: memoryview, deadline: float | None = None,
                   pdu_deadline: float | None = None) -> int:
        """Read what is there into ``view`` (0 at EOF or on a transport error); waiting is
        bounded by ``_wait_timeout``, whose expiry raises the exception it names."""
        sock = self.dul_socket
        if sock is None:
            return 0
        if not self._nonblocking:
            timeout, on_timeout = self._wait_timeout(deadline, pdu_deadline)
            try:
                sock.settimeout(timeout)
                return sock.recv_into(view)
            except socket.timeout:
                raise on_timeout() from None
            except OSError:
                return 0
        while True:
            try:
                return sock.recv_into(view)
            except BlockingIOError:
                pass
            except OSError:
                return 0
            timeout, on_timeout = self._wait_timeout(deadline, pdu_deadline)
            try:
                ready = _wait_io(sock, False, timeout)
            except (OSError, ValueError):  # closed under us
                return 0
            if not ready:
                raise on_timeout()

    # ------------------------------------------------------------------ state machine driver
    def _handle(self, event: fsm.Events, primitive: Any) -> None:
        """Run one event through the state machine and carry out its effects in order."""
        with self._fsm_lock:
            self.event, self.primitive = event, primitive
            effects = self.state_machine.action(event, primitive)
            writes = []
            for effect in effects:
                if isinstance(effect, fsm.SendPDU):
                    writes.append(effect.pdu)
                else:
                    if writes:
                        self._write_all(writes)
                        writes = []
                    self._apply(effect)
            if writes:
                self._write_all(writes)

    def _apply(self, effect: Any) -> None:
        if isinstance(effect, fsm.Indicate):
            self._indicate(effect.primitive)
        elif isinstance(effect, fsm.CloseTransport):
            self._close_socket()
        elif isinstance(effect, fsm.StartARTIM):
            self.timer.start()
        elif isinstance(effect, fsm.StopARTIM):
            self.timer.stop()
        elif isinstance(effect, fsm.SendPDU):
            self._write_all([effect.pdu])
        elif isinstance(effect, fsm.OpenTransport):
            pass  # the requestor connects in connect(); nothing to do here
        else:  # pragma: no cover - a new effect type without a driver is a programming error
            raise NetDICOMError(f"unknown state machine effect {effect!r}")

    def _indicate(self, primitive: Any) -> None:
        """Hand an indication to the service user; P-DATA goes through the DIMSE decoder."""
        if getattr(primitive, "pdu_type", None) == 4:
            if self.dimse_decoder is None:
                raise PDUProcessingError("P-DATA-TF before any presentation context was accepted")
            try:
                completed = self.dimse_decoder.process(primitive)
            except DIMSEProcessingError as exc:
                logger.warning("peer %s sent an invalid DIMSE message: %s", self._peer(), exc)
                # Treat like an invalid PDU (EVT_19 → AA-8): A-ABORT to the peer, A-P-ABORT
                # to the user. The lock is re-entrant and the P-DATA action already ran.
                self._handle(fsm.Events.EVT_19, exc)
                return
            for item in completed:
                self.to_service_user.put(item)
            return
        self.to_service_user.put(primitive)

    def _write_all(self, pdus: list) -> None:
        sock = self.dul_socket
        if sock is None:
            return
        with self._write_lock:
            for item in pdus:
                parts = item.encode_parts() if hasattr(item, "encode_parts") else [item.encode()]
                if self.trace is not None and trace.enabled():
                    self.trace.pdu("sent", item, sum(len(p) for p in parts))
                try:
                    if self._nonblocking:
                        _send_parts_nonblocking(sock, parts, self.idle_timeout)
                    else:
                        sock.settimeout(self.idle_timeout)
                        _sendmsg_all(sock, parts)
                except OSError as exc:
                    logger.info("write to %s failed: %s", self._peer(), exc)
                    self._close_socket()
                    return

    def _abort_locally(self, reason: int) -> None:
        """Send an A-ABORT (service-provider) if possible and indicate A-P-ABORT."""
        try:
            if self.dul_socket is not None:
                self._write_all([pdu.AAbortPDU(ABORT_SOURCE_SERVICE_PROVIDER, reason)])
        finally:
            self.to_service_user.put(fsm.APAbortIndication(ABORT_SOURCE_SERVICE_PROVIDER, reason))
            self._close_socket()

    def _close_socket(self) -> None:
        sock = self.dul_socket
        if sock is None:
            self._closed.set()
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass
        self._closed.set()

    def _peer(self) -> str:
        if self.peer_address:
            return f"{self.peer_address[0]}:{self.peer_address[1]}"
        return "?"


class _ArtimExpired(Exception):
    """The ARTIM timer ran out while waiting for the socket (EVT_18)."""


class _IdleTimeout(Exception):
    """No byte arrived within the idle (network) timeout."""


class _WaitOver(Exception):
    """The service user's own deadline passed before a PDU began."""


def _sendmsg_all(sock: socket.socket, parts: list) -> None:
    """Write all buffers, gathered, with as few syscalls as the kernel allows."""
    parts = _as_buffers(parts)
    if len(parts) == 1:
        sock.sendall(parts[0])
        return
    if not hasattr(sock, "sendmsg") or getattr(sock, "context", None) is not None:
        # TLS sockets cannot gather: one record per PDU instead.
        sock.sendall(b"".join(parts))
        return
    _sendmsg_views(sock, [memoryview(p) for p in parts if len(p)], None, 0)


_BUFFERS = (bytes, bytearray, memoryview)
#: Sending file data with ``os.sendfile`` needs MSG_MORE: the PDU's headers, written first,
#: must wait in the kernel for the file bytes (one segment, no delayed-ACK stall).
_CAN_SENDFILE = hasattr(os, "sendfile") and hasattr(socket, "MSG_MORE")


def _as_buffers(parts: list) -> list:
    """Parts with every file region (``dimsemessages.FileRegion``) read into bytes."""
    return [p if isinstance(p, _BUFFERS) else bytes(p) for p in parts]


def _send_parts_nonblocking(sock: socket.socket, parts: list, timeout: float | None) -> None:
    """``_sendmsg_all`` on a non-blocking socket, waiting at most ``timeout`` s whenever the
    peer's window is full (then ``socket.timeout``).

    A file region's bytes go from the page cache to the socket (``os.sendfile``); the
    headers before them are written with MSG_MORE, so the PDU still leaves as one stream
    of full segments.
    """
    if not _CAN_SENDFILE:
        parts = _as_buffers(parts)
    pending: list[memoryview] = []
    for part in parts:
        if isinstance(part, _BUFFERS):
            if len(part):
                pending.append(memoryview(part))
            continue
        if part.head:
            pending.append(memoryview(part.head))
        if part.length:
            _sendmsg_views(sock, pending, timeout, socket.MSG_MORE)
            pending = []
            _sendfile_all(sock, part.fileno(), part.offset, part.length, timeout)
    _sendmsg_views(sock, pending, timeout, 0)


def _sendmsg_views(sock: socket.socket, views: list[memoryview], timeout: float | None,
                   flags: int) -> None:
    """Gathered writes of ``views`` until all are sent. On a non-blocking socket a full
    window is waited for (at most ``timeout`` s); a socket with a timeout waits itself."""
    while views:
        try:
            sent = sock.sendmsg(views, [], flags)
        except BlockingIOError:
            if not _wait_io(sock, True, timeout):
                raise socket.timeout("the peer takes no data") from None
            continue
        while sent and views:
            first = views[0]
            if sent >= len(first):
                sent -= len(first)
                views.pop(0)
            else:
                views[0] = first[sent:]
                sent = 0


def _sendfile_all(sock: socket.socket, fd: int, offset: int, count: int, timeout: float | None) -> None:
    out = sock.fileno()
    while count:
        try:
            sent = os.sendfile(out, fd, offset, count)
        except BlockingIOError:
            if not _wait_io(sock, True, timeout):
                raise socket.timeout("the peer takes no data") from None
            continue
        if not sent:  # the PDU's length is on the wire already: the stream cannot go on
            raise OSError(f"the file ended {count} bytes early while sending")
        offset += sent
        count -= sent


_LOCAL_EVENTS = {
    1: fsm.Events.EVT_1,   # A-ASSOCIATE-RQ → A-ASSOCIATE request primitive
    2: fsm.Events.EVT_7,   # A-ASSOCIATE-AC → response (accept)
    3: fsm.Events.EVT_8,   # A-ASSOCIATE-RJ → response (reject)
    4: fsm.Events.EVT_9,   # P-DATA-TF → P-DATA request
    7: fsm.Events.EVT_15,  # A-ABORT → A-ABORT request
}


def _local_event_for(primitive: Any, machine: fsm.StateMachine) -> fsm.Events:
    """Map a PDU the service user sends to its request/response primitive event (PS3.8 9.2)."""
    pdu_type = getattr(primitive, "pdu_type", None)
    if pdu_type in _LOCAL_EVENTS:
        return _LOCAL_EVENTS[pdu_type]
    if pdu_type == 5:
        return fsm.Events.EVT_11  # A-RELEASE request
    if pdu_type == 6:
        return fsm.Events.EVT_14  # A-RELEASE response
    raise NetDICOMError(f"cannot send {primitive!r}: not a PDU")
