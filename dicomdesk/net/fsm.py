"""The DICOM Upper Layer state machine (PS3.8 9.2) as data plus a pure engine.

PS3.8 Table 9-10 is held cell by cell in ``TRANSITION_TABLE``: 13 states
(Tables 9-1 .. 9-5) by 19 events, each cell naming the action of Tables 9-6 .. 9-9
and the next state that action's definition gives.  ``StateMachine.action`` looks
a cell up, runs the action and returns *effects*: what the driver
(``dulprovider``) must send, indicate to the service user, open, close, or do
with the ARTIM timer (PS3.8 9.1.5).  The engine itself owns no socket, thread,
queue or clock, so every cell can be exercised in a unit test and two engines
can be joined in memory.

Blank cells of Table 9-10 mean the event cannot happen in that state
(PS3.8 9.2.3).  The engine treats them as follows (see ``StateMachine.action``):

* a local service-user primitive (Evt1, 7, 8, 9, 11, 14, 15): our own code
  misused the API, so ``NetDICOMError`` is raised and nothing changes;
* Evt17 (transport closed) and Evt18 (ARTIM expired) outside the cells that name
  an action, and any PDU event in Sta1: leftovers of a connection that is already
  closed or of a timer that was already stopped; they are ignored (no effect, no
  state change) because there is nobody left to answer;
* any other blank network/transport event (a PDU in Sta4, where no connection is
  open yet; Evt2 outside Sta4; Evt5 outside Sta1): the driver reported something
  that cannot happen, so ``NetDICOMError`` is raised as well.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Callable, Optional, Union

from .exceptions import (
    ABORT_REASON_NOT_SPECIFIED,
    ABORT_REASON_UNEXPECTED_PDU,
    ABORT_SOURCE_SERVICE_PROVIDER,
    ABORT_SOURCE_SERVICE_USER,
    NetDICOMError,
)
from .records import FrozenRecord

logger = logging.getLogger(__name__)


class States(enum.IntEnum):
    """Upper layer states (PS3.8 Tables 9-1 .. 9-5); values as in the reference."""

    STA_1 = 0  # Idle.
    STA_2 = 1  # Transport connection open (awaiting A-ASSOCIATE-RQ PDU).
    STA_3 = 2  # Awaiting local A-ASSOCIATE response primitive (from local user).
    STA_4 = 3  # Awaiting transport connection opening to complete (from local transport service).
    STA_5 = 4  # Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU.
    STA_6 = 5  # Association established and ready for data transfer.
    STA_7 = 6  # Awaiting A-RELEASE-RP PDU.
    STA_8 = 7  # Awaiting local A-RELEASE response primitive (from local user).
    STA_9 = 8  # Release collision requestor side; awaiting A-RELEASE response (from local user).
    STA_10 = 9  # Release collision acceptor side; awaiting A-RELEASE-RP PDU.
    STA_11 = 10  # Release collision requestor side; awaiting A-RELEASE-RP PDU.
    STA_12 = 11  # Release collision acceptor side; awaiting A-RELEASE response (local user).
    STA_13 = 12  # Awaiting transport connection close indication (association no longer exists).


class Events(enum.IntEnum):
    """Upper layer events (PS3.8 Table 9-10 rows); values as in the reference."""

    EVT_1 = 0  # A-ASSOCIATE request (local user).
    EVT_2 = 1  # Transport connect confirmation (local transport service).
    EVT_3 = 2  # A-ASSOCIATE-AC PDU (received on transport connection).
    EVT_4 = 3  # A-ASSOCIATE-RJ PDU (received on transport connection).
    EVT_5 = 4  # Transport connection indication (local transport service).
    EVT_6 = 5  # A-ASSOCIATE-RQ PDU (received on transport connection).
    EVT_7 = 6  # A-ASSOCIATE response primitive (accept).
    EVT_8 = 7  # A-ASSOCIATE response primitive (reject).
    EVT_9 = 8  # P-DATA request primitive.
    EVT_10 = 9  # P-DATA-TF PDU (received on transport connection).
    EVT_11 = 10  # A-RELEASE request primitive.
    EVT_12 = 11  # A-RELEASE-RQ PDU (received on transport connection).
    EVT_13 = 12  # A-RELEASE-RP PDU (received on transport connection).
    EVT_14 = 13  # A-RELEASE response primitive.
    EVT_15 = 14  # A-ABORT request primitive.
    EVT_16 = 15  # A-ABORT PDU (received on transport connection).
    EVT_17 = 16  # Transport connection closed indication (local transport service).
    EVT_18 = 17  # ARTIM timer expired (local timer).
    EVT_19 = 18  # Unrecognized or invalid PDU received.


LOCAL_EVENTS = frozenset({
    Events.EVT_1, Events.EVT_7, Events.EVT_8, Events.EVT_9,
    Events.EVT_11, Events.EVT_14, Events.EVT_15,
})
"""Events that are primitives of the local service user: in a blank cell they are API misuse."""

PDU_EVENTS = frozenset({
    Events.EVT_3, Events.EVT_4, Events.EVT_6, Events.EVT_10,
    Events.EVT_12, Events.EVT_13, Events.EVT_16, Events.EVT_19,
})
"""Events raised by bytes received from the peer."""


# Next state of each action, from its definition in PS3.8 Tables 9-6 .. 9-9.
# None: the action decides (AE-6: Sta3 or Sta13; AR-8: Sta9 or Sta10).
ACTION_NEXT_STATE: dict[str, Optional[States]] = {
    "AE-1": States.STA_4, "AE-2": States.STA_5, "AE-3": States.STA_6,
    "AE-4": States.STA_1, "AE-5": States.STA_2, "AE-6": None,
    "AE-7": States.STA_6, "AE-8": States.STA_13,
    "DT-1": States.STA_6, "DT-2": States.STA_6,
    "AR-1": States.STA_7, "AR-2": States.STA_8, "AR-3": States.STA_1,
    "AR-4": States.STA_13, "AR-5": States.STA_1, "AR-6": States.STA_7,
    "AR-7": States.STA_8, "AR-8": None, "AR-9": States.STA_11,
    "AR-10": States.STA_12,
    "AA-1": States.STA_13, "AA-2": States.STA_1, "AA-3": States.STA_1,
    "AA-4": States.STA_1, "AA-5": States.STA_1, "AA-6": States.STA_13,
    "AA-7": States.STA_13, "AA-8": States.STA_13,
}

_ = None  # a blank cell of Table 9-10
# PS3.8 Table 9-10, one row per event, one column per state Sta1 .. Sta13.
_TABLE_9_10: dict[Events, tuple[Optional[str], ...]] = {
    #               Sta1    Sta2    Sta3    Sta4    Sta5    Sta6    Sta7    Sta8    Sta9    Sta10    Sta11   Sta12   Sta13
    Events.EVT_1:  ("AE-1", _,      _,      _,      _,      _,      _,      _,      _,      _,       _,      _,      _),
    Events.EVT_2:  (_,      _,      _,      "AE-2", _,      _,      _,      _,      _,      _,       _,      _,      _),
    Events.EVT_3:  (_,      "AA-1", "AA-8", _,      "AE-3", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    Events.EVT_4:  (_,      "AA-1", "AA-8", _,      "AE-4", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    Events.EVT_5:  ("AE-5", _,      _,      _,      _,      _,      _,      _,      _,      _,       _,      _,      _),
    Events.EVT_6:  (_,      "AE-6", "AA-8", _,      "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-7"),
    Events.EVT_7:  (_,      _,      "AE-7", _,      _,      _,      _,      _,      _,      _,       _,      _,      _),
    Events.EVT_8:  (_,      _,      "AE-8", _,      _,      _,      _,      _,      _,      _,       _,      _,      _),
    Events.EVT_9:  (_,      _,      _,      _,      _,      "DT-1", _,      "AR-7", _,      _,       _,      _,      _),
    Events.EVT_10: (_,      "AA-1", "AA-8", _,      "AA-8", "DT-2", "AR-6", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    Events.EVT_11: (_,      _,      _,      _,      _,      "AR-1", _,      _,      _,      _,       _,      _,      _),
    Events.EVT_12: (_,      "AA-1", "AA-8", _,      "AA-8", "AR-2", "AR-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    Events.EVT_13: (_,      "AA-1", "AA-8", _,      "AA-8", "AA-8", "AR-3", "AA-8", "AA-8", "AR-10", "AR-3", "AA-8", "AA-6"),
    Events.EVT_14: (_,      _,      _,      _,      _,      _,      _,      "AR-4", "AR-9", _,       _,      "AR-4", _),
    Events.EVT_15: (_,      _,      "AA-1", "AA-2", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1",  "AA-1", "AA-1", _),
    Events.EVT_16: (_,      "AA-2", "AA-3", _,      "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-3",  "AA-3", "AA-3", "AA-2"),
    Events.EVT_17: (_,      "AA-5", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4",  "AA-4", "AA-4", "AR-5"),
    Events.EVT_18: (_,      "AA-2", _,      _,      _,      _,      _,      _,      _,      _,       _,      _,      "AA-2"),
    Events.EVT_19: (_,      "AA-1", "AA-8", _,      "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-7"),
}
del _

TRANSITION_TABLE: dict[tuple[States, Events], tuple[Optional[str], Optional[States]]] = {
    (state, event): (
        (row[state], ACTION_NEXT_STATE[row[state]]) if row[state] is not None else (None, None)
    )
    for event, row in _TABLE_9_10.items()
    for state in States
}
"""All 13 x 19 cells of PS3.8 Table 9-10: ``(state, event) -> (action, next state)``.

Blank cells hold ``(None, None)``; a ``None`` next state beside an action means the
action decides (AE-6, AR-8).
"""


# --- Effects: what the engine asks its driver to do ---------------------------------

class SendPDU(FrozenRecord):
    """Write this PDU on the transport connection."""

    _fields = ("pdu",)

    def __init__(self, pdu: Any) -> None:
        object.__setattr__(self, "pdu", pdu)


class Indicate(FrozenRecord):
    """Hand a primitive to the local service user (indication or confirmation, PS3.8 7).

    The primitive is the PDU object received (A-ASSOCIATE, P-DATA, A-RELEASE,
    A-ABORT from a service user) or an ``APAbortIndication``.
    """

    _fields = ("primitive",)

    def __init__(self, primitive: Any) -> None:
        object.__setattr__(self, "primitive", primitive)


class OpenTransport(FrozenRecord):
    """Issue TRANSPORT CONNECT to the peer's address (AE-1, PS3.8 9.1.2)."""


class CloseTransport(FrozenRecord):
    """Close the TCP connection (PS3.8 9.1.4)."""


class StartARTIM(FrozenRecord):
    """Start, or restart if running, the ARTIM timer (PS3.8 9.1.5)."""


class StopARTIM(FrozenRecord):
    """Stop the ARTIM timer if it is running (PS3.8 9.1.5)."""


class APAbortIndication(FrozenRecord):
    """A-P-ABORT indication (PS3.8 7.4): the provider, not the peer's user, ended it.

    ``source`` and ``reason`` use the A-ABORT PDU's values (PS3.8 Table 9-26).
    """

    _fields = ("source", "reason")

    def __init__(self, source: int, reason: int) -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "reason", reason)


Effect = Union[SendPDU, Indicate, OpenTransport, CloseTransport, StartARTIM, StopARTIM]


# --- Mapping received PDUs to events --------------------------------------------------

# PDU-type byte (PS3.8 9.3) -> event of its reception (PS3.8 Table 9-10).
_EVENT_BY_PDU_TYPE = {
    0x01: Events.EVT_6,   # A-ASSOCIATE-RQ
    0x02: Events.EVT_3,   # A-ASSOCIATE-AC
    0x03: Events.EVT_4,   # A-ASSOCIATE-RJ
    0x04: Events.EVT_10,  # P-DATA-TF
    0x05: Events.EVT_12,  # A-RELEASE-RQ
    0x06: Events.EVT_13,  # A-RELEASE-RP
    0x07: Events.EVT_16,  # A-ABORT
}


def event_for_pdu(pdu: Any) -> Events:
    """The event a received PDU raises, by its ``pdu_type`` (PS3.8 9.3).

    Anything without a known PDU type (including a ``PDUProcessingError`` the
    decoder produced instead of a PDU) is Evt19, "unrecognized or invalid PDU".
    """
    pdu_type = getattr(pdu, "pdu_type", None)
    if isinstance(pdu_type, int) and not isinstance(pdu_type, bool):
        return _EVENT_BY_PDU_TYPE.get(pdu_type, Events.EVT_19)
    return Events.EVT_19


def accept_any_request(pdu: Any) -> None:
    """Default AE-6 check: every A-ASSOCIATE-RQ is acceptable to the provider."""
    return None


def reject_unsupported_protocol_version(pdu: Any):
    """AE-6 check for PS3.8 9.3.2: refuse a request whose protocol version lacks bit 0.

    Returns an A-ASSOCIATE-RJ PDU (rejected-permanent, service-provider ACSE,
    protocol version not supported; PS3.8 Table 9-21) or ``None`` to accept.
    """
    version = getattr(pdu, "protocol_version", 1)
    if isinstance(version, int) and version & 0x0001:
        return None
    from .pdu import AAssociateRjPDU  # lazy: pdu.py is a sibling written separately
    return AAssociateRjPDU(1, 2, 2)


def _is_abort_pdu(obj: Any) -> bool:
    return getattr(obj, "pdu_type", None) == 0x07


def _make_abort_pdu(source: int, reason: int):
    from .pdu import AAbortPDU  # lazy: keep the table importable on its own
    return AAbortPDU(source, reason)


# Short names for error messages (PS3.8 Tables 9-1 .. 9-5 and 9-10).
_STATE_TEXT = {
    States.STA_1: "idle", States.STA_2: "awaiting A-ASSOCIATE-RQ PDU",
    States.STA_3: "awaiting local A-ASSOCIATE response",
    States.STA_4: "awaiting transport connection", States.STA_5: "awaiting A-ASSOCIATE-AC/RJ PDU",
    States.STA_6: "association established", States.STA_7: "awaiting A-RELEASE-RP PDU",
    States.STA_8: "awaiting local A-RELEASE response",
    States.STA_9: "release collision requestor, awaiting local A-RELEASE response",
    States.STA_10: "release collision acceptor, awaiting A-RELEASE-RP PDU",
    States.STA_11: "release collision requestor, awaiting A-RELEASE-RP PDU",
    States.STA_12: "release collision acceptor, awaiting local A-RELEASE response",
    States.STA_13: "awaiting transport close",
}
_EVENT_TEXT = {
    Events.EVT_1: "A-ASSOCIATE request", Events.EVT_2: "transport connect confirmation",
    Events.EVT_3: "A-ASSOCIATE-AC PDU", Events.EVT_4: "A-ASSOCIATE-RJ PDU",
    Events.EVT_5: "transport connection indication", Events.EVT_6: "A-ASSOCIATE-RQ PDU",
    Events.EVT_7: "A-ASSOCIATE response (accept)", Events.EVT_8: "A-ASSOCIATE response (reject)",
    Events.EVT_9: "P-DATA request", Events.EVT_10: "P-DATA-TF PDU",
    Events.EVT_11: "A-RELEASE request", Events.EVT_12: "A-RELEASE-RQ PDU",
    Events.EVT_13: "A-RELEASE-RP PDU", Events.EVT_14: "A-RELEASE response",
    Events.EVT_15: "A-ABORT request", Events.EVT_16: "A-ABORT PDU",
    Events.EVT_17: "transport connection closed", Events.EVT_18: "ARTIM timer expired",
    Events.EVT_19: "unrecognized or invalid PDU",
}


class StateMachine:
    """One association's upper layer state machine (PS3.8 9.2), without I/O.

    The driver feeds events with ``action(event, primitive)`` and carries out the
    returned effects in order.  ``provider``, ``timer``, ``store_in_file`` and
    ``get_file_cb`` are kept for the reference's API; the engine never calls them
    (time and I/O belong to the driver).

    Attributes set by the driver:

    * ``is_requestor``: True on the side that sent the A-ASSOCIATE-RQ; AR-8 needs
      it to resolve a release collision (PS3.8 9.2.2, Table 9-8).
    * ``acceptability_check(rq_pdu) -> None | AAssociateRjPDU``: AE-6's decision
      whether the service provider accepts an A-ASSOCIATE-RQ (default: accept).
    """

    def __init__(self, provider: Any = None, timer: Any = None,
                 store_in_file: Any = (), get_file_cb: Optional[Callable] = None):
        self.provider = provider
        self.timer = timer
        self.store_in_file = store_in_file
        self.get_file_cb = get_file_cb
        self.accepted_contexts: dict = {}
        self.dimse_decoder: Any = None
        self.transition_table = TRANSITION_TABLE
        self.current_state: States = States.STA_1
        self.primitive: Any = None
        self.event: Optional[Events] = None
        self.is_requestor: bool = False
        self.requested_pdu: Any = None
        self.acceptability_check: Callable[[Any], Any] = accept_any_request
        self._effects: list[Effect] = []
        self._next_state: Optional[States] = None

    # --- engine ------------------------------------------------------------------

    def action(self, event: Events | int, primitive: Any = None) -> list[Effect]:
        """Execute the action that ``event`` triggers in the current state.

        ``primitive`` is the PDU received (network events), the PDU to send (local
        primitives), a ``PDUProcessingError`` (Evt19) or ``None``.  Returns the
        effects to carry out; the state changes only if the action succeeds.
        Raises ``NetDICOMError`` for a blank cell that cannot be ignored (see the
        module docstring).
        """
        event = Events(event)
        self.event = event
        self.primitive = primitive
        state = self.current_state
        action_name, next_state = self.transition_table[(state, event)]
        if action_name is None:
            return self._blank_cell(state, event)
        self._effects = []
        self._next_state = next_state
        getattr(self, _ACTION_METHODS[action_name])()
        if self._next_state is None:  # pragma: no cover - every deciding action sets it
            raise NetDICOMError(f"{action_name} did not choose a next state")
        logger.debug("%s + %s -> %s -> %s", state.name, event.name, action_name,
                     self._next_state.name)
        self.current_state = self._next_state
        effects, self._effects = self._effects, []
        return effects

    def data_requests(self, pdus: list) -> list[Effect]:
        """P-DATA request primitives (Evt9) for many P-DATA-TF PDUs in one pass.

        Evt9 keeps the state wherever it has an action (DT-1 in Sta6, AR-7 in Sta8), and
        both actions only send the PDU: one table lookup serves a whole message, so the
        PDUs of one message go out in one gathered write. Elsewhere the first PDU raises
        as ``action`` does (a blank cell: our own code misused the API).
        """
        action_name, _ = self.transition_table[(self.current_state, Events.EVT_9)]
        if action_name not in ("DT-1", "AR-7"):
            return self.action(Events.EVT_9, pdus[0] if pdus else None)
        self.event = Events.EVT_9
        self.primitive = None
        return [SendPDU(item) for item in pdus]

    def data_indication(self, p_data: Any) -> list[Effect]:
        """A received P-DATA-TF PDU (Evt10) the short way where its cell is DT-2 (Sta6):
        that action only indicates the PDU and keeps the state, so no action method runs
        for each of the thousands of PDUs of a C-FIND. Elsewhere ``action`` decides."""
        action_name, _ = self.transition_table[(self.current_state, Events.EVT_10)]
        if action_name != "DT-2" or p_data is None:
            return self.action(Events.EVT_10, p_data)
        self.event = Events.EVT_10
        self.primitive = p_data
        return [Indicate(p_data)]

    def _blank_cell(self, state: States, event: Events) -> list[Effect]:
        """Blank cell of Table 9-10: the event cannot occur (policy in the module docstring)."""
        text = (f"{event.name} ({_EVENT_TEXT[event]}) has no action in "
                f"{state.name} ({_STATE_TEXT[state]}) (PS3.8 Table 9-10)")
        if event in LOCAL_EVENTS:
            raise NetDICOMError(text)
        if event in (Events.EVT_17, Events.EVT_18) or (
                state == States.STA_1 and event in PDU_EVENTS):
            logger.debug("ignored: %s", text)
            return []
        raise NetDICOMError(text)

    # --- helpers -----------------------------------------------------------------

    def _emit(self, *effects: Effect) -> None:
        self._effects.extend(effects)

    def _required_primitive(self, what: str) -> Any:
        if self.primitive is None:
            raise NetDICOMError(f"{self.event.name} in {self.current_state.name} needs {what}")
        return self.primitive

    def _provider_abort_reason(self, default: int) -> int:
        """Reason for a provider A-ABORT: the decoder's own if it gave one (PS3.8 9.3.8)."""
        reason = getattr(self.primitive, "reason", None)
        if isinstance(reason, int) and getattr(self.primitive, "pdu_type", None) is None:
            return reason
        if getattr(self.primitive, "pdu_type", None) is not None:
            return ABORT_REASON_UNEXPECTED_PDU  # a well-formed PDU that is out of place
        return default

    def _provider_abort_pdu(self, default_reason: int):
        if _is_abort_pdu(self.primitive):
            return self.primitive
        return _make_abort_pdu(ABORT_SOURCE_SERVICE_PROVIDER,
                               self._provider_abort_reason(default_reason))

    # --- association establishment (PS3.8 Table 9-6) --------------------------------

    def ae_1(self) -> None:
        """Issue TRANSPORT CONNECT; keep the A-ASSOCIATE-RQ to send once connected."""
        self.requested_pdu = self.primitive
        self._emit(OpenTransport())

    def ae_2(self) -> None:
        """Send the A-ASSOCIATE-RQ PDU (given with Evt2, or kept from Evt1)."""
        pdu = self.primitive if self.primitive is not None else self.requested_pdu
        if pdu is None:
            raise NetDICOMError("AE-2: no A-ASSOCIATE-RQ PDU was given with EVT_1 or EVT_2")
        self.requested_pdu = pdu
        self._emit(SendPDU(pdu))

    def ae_3(self) -> None:
        """Issue A-ASSOCIATE confirmation (accept): the A-ASSOCIATE-AC PDU."""
        self._emit(Indicate(self._required_primitive("the A-ASSOCIATE-AC PDU")))

    def ae_4(self) -> None:
        """Issue A-ASSOCIATE confirmation (reject) and close the transport connection."""
        self._emit(Indicate(self._required_primitive("the A-ASSOCIATE-RJ PDU")), CloseTransport())

    def ae_5(self) -> None:
        """Accept the transport connection and start ARTIM (awaiting the A-ASSOCIATE-RQ)."""
        self._emit(StartARTIM())

    def ae_6(self) -> None:
        """Stop ARTIM; indicate an acceptable A-ASSOCIATE-RQ, else reject it and start ARTIM.

        Acceptability to the service provider (e.g. protocol version, PS3.8 9.3.2)
        is ``acceptability_check``'s decision; the service user decides the rest in Sta3.
        """
        rq = self._required_primitive("the A-ASSOCIATE-RQ PDU")
        self._emit(StopARTIM())
        rejection = self.acceptability_check(rq)
        if rejection is None:
            self._emit(Indicate(rq))
            self._next_state = States.STA_3
        else:
            self._emit(SendPDU(rejection), StartARTIM())
            self._next_state = States.STA_13

    def ae_7(self) -> None:
        """Send the A-ASSOCIATE-AC PDU."""
        self._emit(SendPDU(self._required_primitive("the A-ASSOCIATE-AC PDU")))

    def ae_8(self) -> None:
        """Send the A-ASSOCIATE-RJ PDU and start ARTIM (the peer is to close, PS3.8 9.1.5)."""
        self._emit(SendPDU(self._required_primitive("the A-ASSOCIATE-RJ PDU")), StartARTIM())

    # --- data transfer (PS3.8 Table 9-7) ----------------------------------------------

    def dt_1(self) -> None:
        """Send the P-DATA-TF PDU."""
        self._emit(SendPDU(self._required_primitive("the P-DATA-TF PDU")))

    def dt_2(self) -> None:
        """Issue P-DATA indication: the received P-DATA-TF PDU."""
        self._emit(Indicate(self._required_primitive("the P-DATA-TF PDU")))

    # --- association release (PS3.8 Table 9-8) ----------------------------------------

    def _release_rq(self):
        if self.primitive is not None:
            return self.primitive
        from .pdu import AReleaseRqPDU
        return AReleaseRqPDU()

    def _release_rp(self):
        if self.primitive is not None:
            return self.primitive
        from .pdu import AReleaseRpPDU
        return AReleaseRpPDU()

    def ar_1(self) -> None:
        """Send the A-RELEASE-RQ PDU."""
        self._emit(SendPDU(self._release_rq()))

    def ar_2(self) -> None:
        """Issue A-RELEASE indication."""
        self._emit(Indicate(self._release_rq()))

    def ar_3(self) -> None:
        """Issue A-RELEASE confirmation and close the transport connection."""
        self._emit(Indicate(self._release_rp()), CloseTransport())

    def ar_4(self) -> None:
        """Send the A-RELEASE-RP PDU and start ARTIM (the requestor closes, PS3.8 9.1.5)."""
        self._emit(SendPDU(self._release_rp()), StartARTIM())

    def ar_5(self) -> None:
        """Stop ARTIM: the peer closed the connection as expected."""
        self._emit(StopARTIM())

    def ar_6(self) -> None:
        """Issue P-DATA indication while awaiting the A-RELEASE-RP."""
        self._emit(Indicate(self._required_primitive("the P-DATA-TF PDU")))

    def ar_7(self) -> None:
        """Send a P-DATA-TF PDU while the local user still answers a release request."""
        self._emit(SendPDU(self._required_primitive("the P-DATA-TF PDU")))

    def ar_8(self) -> None:
        """Issue A-RELEASE indication (release collision): Sta9 for the requestor, else Sta10."""
        self._emit(Indicate(self._release_rq()))
        self._next_state = States.STA_9 if self.is_requestor else States.STA_10

    def ar_9(self) -> None:
        """Send the A-RELEASE-RP PDU (collision, requestor side)."""
        self._emit(SendPDU(self._release_rp()))

    def ar_10(self) -> None:
        """Issue A-RELEASE confirmation (collision, acceptor side)."""
        self._emit(Indicate(self._release_rp()))

    # --- association abort (PS3.8 Table 9-9) ------------------------------------------

    def aa_1(self) -> None:
        """Send an A-ABORT PDU and start (or restart) ARTIM.

        Asked by the local user (Evt15): the A-ABORT PDU given, or service-user
        source, reason 0.  In Sta2 on a PDU other than A-ASSOCIATE-RQ: service
        provider source, "unexpected PDU" (or the decoder's reason for Evt19).
        """
        if self.event == Events.EVT_15:
            if self.primitive is None:
                pdu = _make_abort_pdu(ABORT_SOURCE_SERVICE_USER, ABORT_REASON_NOT_SPECIFIED)
            elif _is_abort_pdu(self.primitive):
                pdu = self.primitive
            else:
                raise NetDICOMError("AA-1: EVT_15 takes an AAbortPDU or None, "
                                    f"not {type(self.primitive).__name__}")
        else:
            pdu = _make_abort_pdu(ABORT_SOURCE_SERVICE_PROVIDER,
                                  self._provider_abort_reason(ABORT_REASON_UNEXPECTED_PDU))
        self._emit(SendPDU(pdu), StartARTIM())

    def aa_2(self) -> None:
        """Stop ARTIM if running and close the transport connection."""
        self._emit(StopARTIM(), CloseTransport())

    def aa_3(self) -> None:
        """Indicate A-ABORT (peer's user aborted) or A-P-ABORT (peer's provider), then close."""
        pdu = self._required_primitive("the A-ABORT PDU")
        source = getattr(pdu, "source", ABORT_SOURCE_SERVICE_PROVIDER)
        if source == ABORT_SOURCE_SERVICE_USER:
            self._emit(Indicate(pdu))
        else:
            self._emit(Indicate(APAbortIndication(source, getattr(pdu, "reason_diag", 0))))
        self._emit(CloseTransport())

    def aa_4(self) -> None:
        """Issue A-P-ABORT indication: the connection was lost (or never opened)."""
        self._emit(Indicate(APAbortIndication(ABORT_SOURCE_SERVICE_PROVIDER,
                                              ABORT_REASON_NOT_SPECIFIED)))

    def aa_5(self) -> None:
        """Stop ARTIM: the peer closed before sending an A-ASSOCIATE-RQ."""
        self._emit(StopARTIM())

    def aa_6(self) -> None:
        """Ignore the PDU: the association no longer exists."""

    def aa_7(self) -> None:
        """Send an A-ABORT PDU (service provider) without restarting ARTIM."""
        self._emit(SendPDU(self._provider_abort_pdu(ABORT_REASON_UNEXPECTED_PDU)))

    def aa_8(self) -> None:
        """Send an A-ABORT PDU (service provider), indicate A-P-ABORT, start ARTIM.

        Reason: the decoder's for an invalid PDU (Evt19), "unexpected PDU" for a
        well-formed PDU out of place, otherwise "not specified" (PS3.8 Table 9-26).
        """
        pdu = self._provider_abort_pdu(ABORT_REASON_NOT_SPECIFIED)
        self._emit(SendPDU(pdu),
                   Indicate(APAbortIndication(getattr(pdu, "source", ABORT_SOURCE_SERVICE_PROVIDER),
                                              getattr(pdu, "reason_diag",
                                                      ABORT_REASON_NOT_SPECIFIED))),
                   StartARTIM())


_ACTION_METHODS = {name: name.lower().replace("-", "_") for name in ACTION_NEXT_STATE}


try:  # the DIMSE reassembler lives in its own module; the reference exposes it here
    from .dimsedecoder import DIMSEDecoder  # noqa: F401
except ImportError:  # pragma: no cover - until dimsedecoder.py exists
    pass
