"""One association's DICOM upper layer as a sans-IO object (PS3.8 7, 9.1, 9.2; PS3.7 6.3).

``UpperLayerConnection`` composes what decides, and nothing that waits: the PDU framer
(``pdu.PDUFramer``, PS3.8 9.3.1), the state machine of Table 9-10 (``fsm.StateMachine``), the
DIMSE reassembler (``DIMSEDecoder``, PS3.7 6.3 / PS3.8 Annex E) and the decisions of the
ARTIM timer (PS3.8 9.1.5) and of the idle (network) timeout. h11's ``Connection`` is the
model: bytes go in (``receive_data``), events come out (``next_event``), and what the
service user sends comes back as buffers to write (``send`` / ``send_data``). It owns no
socket, thread or clock: time is an argument (``now``, on any monotonic clock the driver
chooses), and the driver (``dulprovider``) asks ``next_deadline()`` how long it may sleep
and calls ``timers_expired(now)`` when that moment has come.

Because local aborts, idle timeouts and cancels are events of this object too, the state
machine always knows the state: after an idle timeout the association is in Sta13/Sta1,
never left in Sta6 with a closed socket.

Events given to the service user (``next_event``), in order of arrival:

* ``(DIMSEMessage, pc_id)``: a complete DIMSE message;
* a PDU object: A-ASSOCIATE-RQ/AC/RJ, A-RELEASE-RQ/RP, A-ABORT (from the peer's user);
* ``fsm.APAbortIndication``: the provider ended the association (PS3.8 7.4);
* ``CancelRequested``: the local user asked to cancel (``cancel()``), for a waiting SCU;
* the driver adds ``ConnectionClosed`` once the transport is gone and nothing is left.

PDUs are handled one at a time, when the next event is asked for: what the service user
does in reply to one PDU (e.g. an A-RELEASE-RQ of its own) happens before the next one is
looked at, as with a reader of one PDU per wake-up.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Iterable

from . import fsm, pdu, state_table
from .exceptions import (
    ABORT_REASON_NOT_SPECIFIED,
    ABORT_SOURCE_SERVICE_PROVIDER,
    DIMSEProcessingError,
    NetDICOMError,
    PDUProcessingError,
)

logger = logging.getLogger(__name__)

#: What we read at most for one P-DATA-TF PDU when we announced "no limit" (0): the peer
#: may send any length then, but memory must stay bounded (PS3.8 D.1 allows refusing it).
UNLIMITED_PDU_CAP = 64 * 1024 * 1024

#: Slowest rate (bytes/s) a peer may send one PDU at, on top of the idle timeout, before the
#: association is aborted (slowloris protection; 64 KiB/s moves a 256 KiB PDU in 4 s).
MIN_TRANSFER_RATE = 64 * 1024


class ConnectionClosed:
    """Indication that the transport connection closed (EVT_17) without a PDU saying why."""

    def __repr__(self) -> str:
        return "ConnectionClosed()"


class CancelRequested:
    """The local user asked to cancel the operation in progress (a C-FIND/GET/MOVE SCU
    then sends C-CANCEL-RQ, PS3.7 9.3.2.3); the association itself goes on."""

    def __repr__(self) -> str:
        return "CancelRequested()"


class IdleTimeout(fsm.APAbortIndication):
    """A-P-ABORT indication for an idle timeout: nothing arrived for ``idle_timeout`` s
    while we waited (or a PDU that had begun did not end in time)."""


# PDU type of a primitive the service user sends -> its event (PS3.8 9.2, Table 9-10).
_LOCAL_EVENTS = {
    1: fsm.Events.EVT_1,   # A-ASSOCIATE-RQ -> A-ASSOCIATE request primitive
    2: fsm.Events.EVT_7,   # A-ASSOCIATE-AC -> response (accept)
    3: fsm.Events.EVT_8,   # A-ASSOCIATE-RJ -> response (reject)
    4: fsm.Events.EVT_9,   # P-DATA-TF -> P-DATA request
    5: fsm.Events.EVT_11,  # A-RELEASE-RQ -> A-RELEASE request
    6: fsm.Events.EVT_14,  # A-RELEASE-RP -> A-RELEASE response
    7: fsm.Events.EVT_15,  # A-ABORT -> A-ABORT request
}


def local_event_for(primitive: Any) -> fsm.Events:
    """The request/response primitive event of a PDU the service user sends (PS3.8 9.2)."""
    event = _LOCAL_EVENTS.get(getattr(primitive, "pdu_type", None))
    if event is None:
        raise NetDICOMError(f"cannot send {primitive!r}: not a PDU")
    return event


def pdu_buffers(item: Any) -> list:
    """The buffers of one PDU for a gathered write (a P-DATA-TF's values are not copied)."""
    encode_parts = getattr(item, "encode_parts", None)
    return encode_parts() if encode_parts is not None else [item.encode()]


class UpperLayerConnection:
    """The upper layer of one association, bytes in and events out (see the module doc).

    ``max_pdu_length`` is our Maximum Length Received (0: no limit, read up to
    ``UNLIMITED_PDU_CAP``); ``store_in_file``, ``get_file_cb`` and ``message_file_cb`` go
    to the DIMSE decoder. ``artim_timeout`` and ``idle_timeout`` are in seconds (None: off).
    ``on_pdu(direction, pdu, size)``, when set, sees every PDU (the protocol trace); ``size``
    is the length received, or the buffers to send (summed only if the trace wants it).
    """

    def __init__(self, *, max_pdu_length: int = 65536, artim_timeout: float | None = 30.0,
                 idle_timeout: float | None = None, store_in_file: Iterable[str] = (),
                 get_file_cb: Callable | None = None, message_file_cb: Callable | None = None,
                 is_requestor: bool = False):
        self.max_pdu_length = max_pdu_length
        self.artim_timeout = artim_timeout
        self.idle_timeout = idle_timeout
        self.store_in_file = set(store_in_file)
        self.get_file_cb = get_file_cb
        self.message_file_cb = message_file_cb
        self.framer = pdu.PDUFramer(max_pdu_length or UNLIMITED_PDU_CAP)
        self.state_machine = fsm.StateMachine(None, None, self.store_in_file, get_file_cb)
        self.state_machine.is_requestor = is_requestor
        self.dimse_decoder: Any = None
        self._accepted_contexts: dict = {}
        self.on_pdu: Callable[[str, Any, Any], None] | None = None
        self._events: collections.deque = collections.deque()
        self._outgoing: list = []
        self._now = 0.0
        self._artim_deadline: float | None = None
        self._idle_since: float | None = None
        self._pdu_started: float | None = None
        self._refused = False  # the framer refused a PDU: the stream cannot be framed again
        #: The transport must be closed once the buffers to send are written.
        self.must_close = False
        #: The transport is closed (the driver reported it, or we closed it).
        self.transport_closed = False

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> fsm.States:
        return self.state_machine.current_state

    @property
    def is_requestor(self) -> bool:
        return self.state_machine.is_requestor

    @property
    def accepted_contexts(self) -> dict:
        """Accepted presentation contexts (pc_id -> PContextDef); setting them starts the
        DIMSE decoder, which needs each context's transfer syntax."""
        return self._accepted_contexts

    @accepted_contexts.setter
    def accepted_contexts(self, contexts: dict) -> None:
        from .dimsedecoder import DIMSEDecoder

        self._accepted_contexts = dict(contexts)
        self.dimse_decoder = DIMSEDecoder(self._accepted_contexts, self.store_in_file,
                                          self.get_file_cb, message_file_cb=self.message_file_cb)

    @property
    def discarding_input(self) -> bool:
        """A PDU was refused from its header: what follows cannot be framed and is dropped
        until the peer closes or ARTIM expires."""
        return self._refused

    @property
    def awaiting_close(self) -> bool:
        """Sta13 with the transport open: the peer is to close (or ARTIM to expire)."""
        return self.state == fsm.States.STA_13 and not self.transport_closed

    # ------------------------------------------------------------------ transport events
    def connection_made(self, now: float) -> None:
        """Acceptor: a transport connection indication (Evt5): Sta2, ARTIM running."""
        self._now = now
        self._run(fsm.Events.EVT_5, None)

    def request(self, rq_pdu: Any, now: float) -> None:
        """Requestor: the A-ASSOCIATE request primitive (Evt1); the driver opens the
        transport connection next and reports it with ``connected``."""
        self._now = now
        self.state_machine.is_requestor = True
        self._run(fsm.Events.EVT_1, rq_pdu)

    def connected(self, now: float) -> list:
        """Requestor: the transport connection is open (Evt2): the A-ASSOCIATE-RQ to send."""
        self._now = now
        self._idle_since = now
        self._run(fsm.Events.EVT_2, None)
        return self.data_to_send()

    def connection_lost(self, now: float | None = None) -> None:
        """The transport connection closed (Evt17), by the peer or by the driver."""
        if now is not None:
            self._now = now
        if self.transport_closed:
            return
        self.transport_closed = True
        self.must_close = False
        self._artim_deadline = None
        self._run(fsm.Events.EVT_17, None)

    # ------------------------------------------------------------------ bytes in
    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Bytes from the peer; empty ``data`` means the peer closed the connection."""
        if not data:
            self.connection_lost(now)
            return
        self._note_received(now)
        if not self._refused:
            self.framer.feed(data)

    def recv_buffer(self, min_size: int = 1) -> memoryview:
        """Where the driver may ``recv_into`` (the framer's own buffer: no copy)."""
        return self.framer.recv_buffer(min_size)

    def received(self, count: int, now: float) -> None:
        """``count`` bytes were read into the last ``recv_buffer`` (0: the peer closed)."""
        if not count:
            self.connection_lost(now)
            return
        self._note_received(now)
        if self._refused:
            self.framer.discard()
        else:
            self.framer.advance(count)

    def _note_received(self, now: float) -> None:
        self._now = now
        self._idle_since = now
        if self._pdu_started is None:
            self._pdu_started = now

    # ------------------------------------------------------------------ events out
    def next_event(self) -> Any | None:
        """The next event for the service user, or None until more bytes (or time) come."""
        events = self._events
        while not events:
            if not self._handle_next_pdu():
                return None
        return events.popleft()

    def _handle_next_pdu(self) -> bool:
        """Frame and handle one PDU; False when no whole PDU is buffered."""
        if self._refused or self.transport_closed:
            return False
        framer = self.framer
        try:
            raw = framer.next_pdu()
        except PDUProcessingError as exc:
            # The length field cannot be trusted: answer (AA-1/AA-8), then only drain
            # until the peer closes or ARTIM expires (Sta13).
            logger.warning("peer sent an invalid PDU: %s", exc)
            self._refused = True
            framer.discard()
            self._pdu_started = None
            self._run(fsm.Events.EVT_19, exc)
            return True
        if raw is None:
            if not framer.buffered:
                self._pdu_started = None
            return False
        self._pdu_started = self._now if framer.buffered else None
        try:
            # P-DATA-TF: PDV values stay views of ``raw`` (no copy of the data)
            item = pdu.PDataTfPDU.decode(raw, copy=False) if raw[0] == 4 else pdu.decode_pdu(raw)
        except PDUProcessingError as exc:
            logger.warning("peer sent an undecodable PDU: %s", exc)
            self._run(fsm.Events.EVT_19, exc)
            return True
        if self.on_pdu is not None:
            self.on_pdu("received", item, len(raw))
        if type(item) is pdu.PDataTfPDU:
            self._apply_all(self.state_machine.data_indication(item))
        else:
            self._run(state_table.event_for_pdu(item), item)
        # The DIMSE decoder has written or copied every PDV: no reference to the PDU stays,
        # so the framer's buffer it views can take the next one.
        self.state_machine.primitive = None
        return True

    def cancel(self) -> None:
        """The local user asked to cancel: a ``CancelRequested`` event (nothing is sent;
        one pending at a time)."""
        if not any(type(item) is CancelRequested for item in self._events):
            self._events.append(CancelRequested())

    # ------------------------------------------------------------------ sending
    def send(self, primitive: Any, now: float | None = None) -> list:
        """Run a PDU the service user sends through the state machine (its request or
        response primitive) and return the buffers to write, gathered in one write."""
        if now is not None:
            self._now = now
            self._idle_since = now
        self._run(local_event_for(primitive), primitive)
        return self.data_to_send()

    def send_data(self, pdus: list, now: float | None = None) -> list:
        """P-DATA request for many P-DATA-TF PDUs at once (one message, or a batch of it):
        one pass through the state machine, one list of buffers for one gathered write."""
        if now is not None:
            self._now = now
            self._idle_since = now
        self._apply_all(self.state_machine.data_requests(pdus))
        return self.data_to_send()

    def data_to_send(self) -> list:
        """Buffers (bytes, memoryviews, ``fragmentation.FileRegion``) waiting to be written."""
        out, self._outgoing = self._outgoing, []
        return out

    def abort_locally(self, reason: int = ABORT_REASON_NOT_SPECIFIED, now: float | None = None,
                      indication: type = fsm.APAbortIndication) -> list:
        """The provider ends the association (idle timeout, a failure of our own): an A-ABORT
        (service-provider source) to the peer if one can go, an A-P-ABORT indication to the
        user, and the transport closed without waiting for the peer (PS3.8 7.4)."""
        if now is not None:
            self._now = now
        self._abort_locally(reason, indication)
        return self.data_to_send()

    def _abort_locally(self, reason: int, indication: type) -> None:
        state = self.state
        if state == fsm.States.STA_1:
            return
        if state not in (fsm.States.STA_2, fsm.States.STA_13):  # Evt15 is blank there
            self._run(fsm.Events.EVT_15, pdu.AAbortPDU(ABORT_SOURCE_SERVICE_PROVIDER, reason))
        self._events.append(indication(ABORT_SOURCE_SERVICE_PROVIDER, reason))
        self.must_close = True

    # ------------------------------------------------------------------ time
    def next_deadline(self) -> float | None:
        """When ``timers_expired`` must be called if nothing happens before (or None)."""
        if self._artim_deadline is not None:
            return self._artim_deadline
        if self.idle_timeout is None or self.transport_closed:
            return None
        deadline = None if self._idle_since is None else self._idle_since + self.idle_timeout
        if self._pdu_started is not None and self.framer.buffered:
            expected = self.framer.expected_length or 6
            pdu_deadline = self._pdu_started + self.idle_timeout + expected / MIN_TRANSFER_RATE
            deadline = pdu_deadline if deadline is None else min(deadline, pdu_deadline)
        return deadline

    def waiting(self, now: float) -> None:
        """The service user starts waiting for the peer: the idle timeout runs from now
        (time spent in our own code is not the peer's idleness)."""
        self._now = now
        self._idle_since = now

    def timers_expired(self, now: float) -> None:
        """Time has come (``now`` >= ``next_deadline()``): ARTIM expiry (Evt18) or the idle
        timeout (a local provider abort)."""
        self._now = now
        if self._artim_deadline is not None:
            if now >= self._artim_deadline:
                self._artim_deadline = None
                self._run(fsm.Events.EVT_18, None)
            return
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            logger.warning("no data from the peer for %s s: aborting", self.idle_timeout)
            self._abort_locally(ABORT_REASON_NOT_SPECIFIED, IdleTimeout)

    # ------------------------------------------------------------------ engine
    def _run(self, event: fsm.Events, primitive: Any) -> None:
        self._apply_all(self.state_machine.action(event, primitive))

    def _apply_all(self, effects: list) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is fsm.SendPDU:
                item = effect.pdu
                parts = pdu_buffers(item)
                if self.on_pdu is not None:
                    self.on_pdu("sent", item, parts)
                self._outgoing.extend(parts)
            elif kind is fsm.Indicate:
                self._indicate(effect.primitive)
            elif kind is fsm.CloseTransport:
                self.must_close = True
            elif kind is fsm.StartARTIM:
                if self.artim_timeout is not None:
                    self._artim_deadline = self._now + self.artim_timeout
            elif kind is fsm.StopARTIM:
                self._artim_deadline = None
            elif kind is fsm.OpenTransport:
                pass  # the driver opens it, then calls ``connected``
            else:  # pragma: no cover - a new effect type without a handler is a programming error
                raise NetDICOMError(f"unknown state machine effect {effect!r}")

    def _indicate(self, primitive: Any) -> None:
        """Hand an indication to the service user; P-DATA goes through the DIMSE decoder."""
        if getattr(primitive, "pdu_type", None) != 4:
            self._events.append(primitive)
            return
        if self.dimse_decoder is None:
            self._run(fsm.Events.EVT_19, PDUProcessingError(
                "P-DATA-TF before any presentation context was accepted"))
            return
        try:
            completed = self.dimse_decoder.process(primitive)
        except DIMSEProcessingError as exc:
            logger.warning("peer sent an invalid DIMSE message: %s", exc)
            # Treated like an invalid PDU (Evt19 -> AA-8): A-ABORT to the peer, A-P-ABORT
            # to the user.
            self._run(fsm.Events.EVT_19, exc)
            return
        self._events.extend(completed)

    def close(self) -> None:
        """Let go of everything the association held: unfinished messages (their files are
        closed by the decoder's owner), the framer's buffer, queued events."""
        self._events.clear()
        self._outgoing = []
        self.framer.close()
        decoder, self.dimse_decoder = self.dimse_decoder, None
        release = getattr(decoder, "close", None)
        if release is not None:
            release()
        self.state_machine.primitive = None
        self.state_machine.requested_pdu = None
