"""The DICOM Upper Layer state machine (PS3.8 9.2): a pure engine over Table 9-10.

PS3.8 Table 9-10 is held cell by cell in ``state_table.TRANSITION_TABLE``: 13 states
(Tables 9-1 .. 9-5) by 19 events, each cell naming the action of Tables 9-6 .. 9-9
and the next state that action's definition gives.  ``StateMachine.action`` looks
a cell up, runs the action and returns *effects*: what its driver
(``upperlayer.UpperLayerConnection``, whose socket loop is ``dulprovider``) must send,
indicate to the service user, open, close, or do with the ARTIM timer (PS3.8 9.1.5).  The engine itself owns no socket, thread,
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

import logging
from typing import Any, Callable, Optional, Union

from .dimsedecoder import DIMSEDecoder  # noqa: F401 - the reference documents fsm.DIMSEDecoder
from .exceptions import (
    ABORT_REASON_NOT_SPECIFIED,
    ABORT_REASON_UNEXPECTED_PDU,
    ABORT_SOURCE_SERVICE_PROVIDER,
    ABORT_SOURCE_SERVICE_USER,
    NetDICOMError,
)
from .pdu import AAbortPDU, AAssociateRjPDU
from .records import FrozenRecord
from .state_table import (  # noqa: F401 - States, Events, TRANSITION_TABLE: the reference's names
    ACTION_NEXT_STATE,
    EVENT_TEXT,
    LOCAL_EVENTS,
    PDU_EVENTS,
    STATE_TEXT,
    TRANSITION_TABLE,
    Events,
    States,
)

logger = logging.getLogger(__name__)


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
    return AAssociateRjPDU(1, 2, 2)


def _is_abort_pdu(obj: Any) -> bool:
    return getattr(obj, "pdu_type", None) == 0x07


def _make_abort_pdu(source: int, reason: int):
    return AAbortPDU(source, reason)


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
        text = (f"{event.name} ({EVENT_TEXT[event]}) has no action in "
                f"{state.name} ({STATE_TEXT[state]}) (PS3.8 Table 9-10)")
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
