"""Tests of the PS3.8 9.2 upper layer state machine (dicomdesk.net.fsm).

``EXPECTED_TABLE_9_10`` is typed from PS3.8 Table 9-10 as the standard prints it,
one row per event, one column per state; each cell is ``action>next state`` where
the next state comes from the action's definition (PS3.8 Tables 9-6 .. 9-9), and
``a/b`` lists the states an action chooses between (AE-6, AR-8). ``-`` is a blank
cell. The engine's table is checked against it cell by cell, and every non-blank
cell is also executed.
"""

from __future__ import annotations

import ast
import pathlib
from dataclasses import dataclass

import pytest

from dicomdesk.net import fsm
from dicomdesk.net.exceptions import NetDICOMError, PDUProcessingError
from dicomdesk.net.fsm import (
    APAbortIndication,
    CloseTransport,
    Events,
    Indicate,
    OpenTransport,
    SendPDU,
    StartARTIM,
    StateMachine,
    States,
    StopARTIM,
)
from dicomdesk.net.pdu import AAbortPDU, AReleaseRpPDU, AReleaseRqPDU
from dicomdesk.net.state_table import TRANSITION_TABLE, event_for_pdu

EXPECTED_TABLE_9_10 = """
       Sta1   Sta2      Sta3     Sta4   Sta5     Sta6     Sta7      Sta8     Sta9     Sta10     Sta11    Sta12    Sta13
Evt1   AE-1>4 -         -        -      -        -        -         -        -        -         -        -        -
Evt2   -      -         -        AE-2>5 -        -        -         -        -        -         -        -        -
Evt3   -      AA-1>13   AA-8>13  -      AE-3>6   AA-8>13  AA-8>13   AA-8>13  AA-8>13  AA-8>13   AA-8>13  AA-8>13  AA-6>13
Evt4   -      AA-1>13   AA-8>13  -      AE-4>1   AA-8>13  AA-8>13   AA-8>13  AA-8>13  AA-8>13   AA-8>13  AA-8>13  AA-6>13
Evt5   AE-5>2 -         -        -      -        -        -         -        -        -         -        -        -
Evt6   -      AE-6>3/13 AA-8>13  -      AA-8>13  AA-8>13  AA-8>13   AA-8>13  AA-8>13  AA-8>13   AA-8>13  AA-8>13  AA-7>13
Evt7   -      -         AE-7>6   -      -        -        -         -        -        -         -        -        -
Evt8   -      -         AE-8>13  -      -        -        -         -        -        -         -        -        -
Evt9   -      -         -        -      -        DT-1>6   -         AR-7>8   -        -         -        -        -
Evt10  -      AA-1>13   AA-8>13  -      AA-8>13  DT-2>6   AR-6>7    AA-8>13  AA-8>13  AA-8>13   AA-8>13  AA-8>13  AA-6>13
Evt11  -      -         -        -      -        AR-1>7   -         -        -        -         -        -        -
Evt12  -      AA-1>13   AA-8>13  -      AA-8>13  AR-2>8   AR-8>9/10 AA-8>13  AA-8>13  AA-8>13   AA-8>13  AA-8>13  AA-6>13
Evt13  -      AA-1>13   AA-8>13  -      AA-8>13  AA-8>13  AR-3>1    AA-8>13  AA-8>13  AR-10>12  AR-3>1   AA-8>13  AA-6>13
Evt14  -      -         -        -      -        -        -         AR-4>13  AR-9>11  -         -        AR-4>13  -
Evt15  -      -         AA-1>13  AA-2>1 AA-1>13  AA-1>13  AA-1>13   AA-1>13  AA-1>13  AA-1>13   AA-1>13  AA-1>13  -
Evt16  -      AA-2>1    AA-3>1   -      AA-3>1   AA-3>1   AA-3>1    AA-3>1   AA-3>1   AA-3>1    AA-3>1   AA-3>1   AA-2>1
Evt17  -      AA-5>1    AA-4>1   AA-4>1 AA-4>1   AA-4>1   AA-4>1    AA-4>1   AA-4>1   AA-4>1    AA-4>1   AA-4>1   AR-5>1
Evt18  -      AA-2>1    -        -      -        -        -         -        -        -         -        -        AA-2>1
Evt19  -      AA-1>13   AA-8>13  -      AA-8>13  AA-8>13  AA-8>13   AA-8>13  AA-8>13  AA-8>13   AA-8>13  AA-8>13  AA-7>13
"""


def _parse_expected() -> dict[tuple[States, Events], tuple[str | None, frozenset[States]]]:
    lines = [line.split() for line in EXPECTED_TABLE_9_10.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header == [f"Sta{n}" for n in range(1, 14)]
    assert [row[0] for row in rows] == [f"Evt{n}" for n in range(1, 20)]
    cells = {}
    for row in rows:
        assert len(row) == 14, row[0]
        event = Events[f"EVT_{row[0][3:]}"]
        for column, cell in zip(header, row[1:]):
            state = States[f"STA_{column[3:]}"]
            if cell == "-":
                cells[(state, event)] = (None, frozenset())
            else:
                action, nexts = cell.split(">")
                cells[(state, event)] = (action, frozenset(States[f"STA_{n}"] for n in nexts.split("/")))
    return cells


EXPECTED = _parse_expected()
ALL_CELLS = sorted(EXPECTED)
ACTION_CELLS = [cell for cell in ALL_CELLS if EXPECTED[cell][0] is not None]
BLANK_CELLS = [cell for cell in ALL_CELLS if EXPECTED[cell][0] is None]


def _cell_id(cell) -> str:
    state, event = cell
    return f"{state.name}-{event.name}"


@dataclass(frozen=True)
class StubPDU:
    """Stands in for a PDU whose class is not under test here: only pdu_type matters."""

    pdu_type: int
    label: str = ""
    protocol_version: int = 1


RQ = StubPDU(1, "A-ASSOCIATE-RQ")
AC = StubPDU(2, "A-ASSOCIATE-AC")
RJ = StubPDU(3, "A-ASSOCIATE-RJ")
PDATA = StubPDU(4, "P-DATA-TF")


def _primitive_for(event: Events):
    """A plausible primitive for each event, as the driver would pass it."""
    return {
        Events.EVT_1: RQ, Events.EVT_2: RQ, Events.EVT_3: AC, Events.EVT_4: RJ,
        Events.EVT_6: RQ, Events.EVT_7: AC, Events.EVT_8: RJ, Events.EVT_9: PDATA,
        Events.EVT_10: PDATA, Events.EVT_11: AReleaseRqPDU(), Events.EVT_12: AReleaseRqPDU(),
        Events.EVT_13: AReleaseRpPDU(), Events.EVT_14: AReleaseRpPDU(),
        Events.EVT_16: AAbortPDU(0, 0), Events.EVT_19: PDUProcessingError("bad", reason=1),
    }.get(event)


def _machine_in(state: States, is_requestor: bool = True) -> StateMachine:
    machine = StateMachine()
    machine.current_state = state
    machine.is_requestor = is_requestor
    return machine


# --- the table itself ---------------------------------------------------------------

def test_enums_have_reference_values():
    assert [s.value for s in States] == list(range(13))
    assert [e.value for e in Events] == list(range(19))
    assert States.STA_13 == 12 and Events.EVT_19 == 18


def test_transition_table_holds_all_247_cells_explicitly():
    assert len(TRANSITION_TABLE) == 13 * 19 == 247
    assert set(TRANSITION_TABLE) == set(EXPECTED)


@pytest.mark.parametrize("cell", ALL_CELLS, ids=_cell_id)
def test_cell_matches_ps38_table_9_10(cell):
    expected_action, expected_states = EXPECTED[cell]
    action, next_state = TRANSITION_TABLE[cell]
    assert action == expected_action
    if expected_action is None:
        assert next_state is None
    elif len(expected_states) > 1:
        assert next_state is None  # the action decides
    else:
        assert {next_state} == expected_states


@pytest.mark.parametrize("cell", ACTION_CELLS, ids=_cell_id)
def test_executing_cell_runs_its_action_and_reaches_the_standard_next_state(cell):
    state, event = cell
    machine = _machine_in(state)
    primitive = _primitive_for(event)
    effects = machine.action(event, primitive)
    assert machine.current_state in EXPECTED[cell][1]
    assert machine.primitive is primitive
    assert all(isinstance(e, (SendPDU, Indicate, OpenTransport, CloseTransport,
                              StartARTIM, StopARTIM)) for e in effects)


# --- blank cells --------------------------------------------------------------------

LOCAL_BLANK_CELLS = [c for c in BLANK_CELLS if c[1] in fsm.LOCAL_EVENTS]


@pytest.mark.parametrize("cell", LOCAL_BLANK_CELLS, ids=_cell_id)
def test_local_primitive_in_blank_cell_raises_and_keeps_state(cell):
    state, event = cell
    machine = _machine_in(state)
    with pytest.raises(NetDICOMError) as info:
        machine.action(event, _primitive_for(event))
    assert state.name in str(info.value) and event.name in str(info.value)
    assert machine.current_state == state


@pytest.mark.parametrize("state", [s for s in States if (s, Events.EVT_18) in BLANK_CELLS])
def test_stale_artim_expiry_is_ignored(state):
    machine = _machine_in(state)
    assert machine.action(Events.EVT_18) == []
    assert machine.current_state == state


def test_transport_closed_when_idle_is_ignored():
    machine = StateMachine()
    assert machine.action(Events.EVT_17) == []
    assert machine.current_state == States.STA_1


@pytest.mark.parametrize("event", sorted(fsm.PDU_EVENTS))
def test_pdu_left_over_after_close_is_ignored_in_sta1(event):
    machine = StateMachine()
    assert machine.action(event, _primitive_for(event)) == []
    assert machine.current_state == States.STA_1


@pytest.mark.parametrize("event", sorted(fsm.PDU_EVENTS))
def test_pdu_before_transport_is_open_raises(event):
    machine = _machine_in(States.STA_4)
    with pytest.raises(NetDICOMError, match="STA_4"):
        machine.action(event, _primitive_for(event))
    assert machine.current_state == States.STA_4


@pytest.mark.parametrize("state", [s for s in States if s != States.STA_4])
def test_transport_confirmation_outside_sta4_raises(state):
    with pytest.raises(NetDICOMError):
        _machine_in(state).action(Events.EVT_2)


@pytest.mark.parametrize("state", [s for s in States if s != States.STA_1])
def test_transport_indication_outside_sta1_raises(state):
    with pytest.raises(NetDICOMError):
        _machine_in(state).action(Events.EVT_5)


def test_every_blank_cell_is_covered_by_one_policy():
    ignored = raised = 0
    for state, event in BLANK_CELLS:
        machine = _machine_in(state)
        try:
            assert machine.action(event, _primitive_for(event)) == []
            ignored += 1
        except NetDICOMError:
            raised += 1
        assert machine.current_state == state
    assert ignored + raised == len(BLANK_CELLS) == 247 - len(ACTION_CELLS)


# --- event_for_pdu ------------------------------------------------------------------

@pytest.mark.parametrize("pdu_type, event", [
    (1, Events.EVT_6), (2, Events.EVT_3), (3, Events.EVT_4), (4, Events.EVT_10),
    (5, Events.EVT_12), (6, Events.EVT_13), (7, Events.EVT_16),
])
def test_event_for_pdu_maps_each_pdu_type(pdu_type, event):
    assert event_for_pdu(StubPDU(pdu_type)) == event


def test_event_for_pdu_on_real_release_and_abort_pdus():
    assert event_for_pdu(AReleaseRqPDU()) == Events.EVT_12
    assert event_for_pdu(AReleaseRpPDU()) == Events.EVT_13
    assert event_for_pdu(AAbortPDU(2, 0)) == Events.EVT_16


@pytest.mark.parametrize("thing", [StubPDU(8), StubPDU(0), None, b"\x01",
                                   PDUProcessingError("x", reason=1)])
def test_event_for_unknown_or_invalid_pdu_is_evt19(thing):
    assert event_for_pdu(thing) == Events.EVT_19


# --- association establishment --------------------------------------------------------

def test_requestor_happy_path_from_request_to_release():
    m = StateMachine()
    m.is_requestor = True
    assert m.action(Events.EVT_1, RQ) == [OpenTransport()]
    assert m.current_state == States.STA_4 and m.requested_pdu is RQ
    assert m.action(Events.EVT_2) == [SendPDU(RQ)]
    assert m.current_state == States.STA_5
    assert m.action(Events.EVT_3, AC) == [Indicate(AC)]
    assert m.current_state == States.STA_6
    assert m.action(Events.EVT_9, PDATA) == [SendPDU(PDATA)]
    assert m.action(Events.EVT_10, PDATA) == [Indicate(PDATA)]
    assert m.current_state == States.STA_6
    assert m.action(Events.EVT_11) == [SendPDU(AReleaseRqPDU())]
    assert m.current_state == States.STA_7
    assert m.action(Events.EVT_10, PDATA) == [Indicate(PDATA)]  # AR-6: data still arrives
    assert m.current_state == States.STA_7
    rp = AReleaseRpPDU()
    assert m.action(Events.EVT_13, rp) == [Indicate(rp), CloseTransport()]
    assert m.current_state == States.STA_1


def test_acceptor_happy_path_from_connection_to_close():
    m = StateMachine()
    assert m.action(Events.EVT_5) == [StartARTIM()]
    assert m.current_state == States.STA_2
    assert m.action(Events.EVT_6, RQ) == [StopARTIM(), Indicate(RQ)]
    assert m.current_state == States.STA_3
    assert m.action(Events.EVT_7, AC) == [SendPDU(AC)]
    assert m.current_state == States.STA_6
    assert m.action(Events.EVT_10, PDATA) == [Indicate(PDATA)]
    rq = AReleaseRqPDU()
    assert m.action(Events.EVT_12, rq) == [Indicate(rq)]
    assert m.current_state == States.STA_8
    assert m.action(Events.EVT_9, PDATA) == [SendPDU(PDATA)]  # AR-7: last responses
    assert m.current_state == States.STA_8
    rp = AReleaseRpPDU()
    assert m.action(Events.EVT_14, rp) == [SendPDU(rp), StartARTIM()]
    assert m.current_state == States.STA_13
    assert m.action(Events.EVT_17) == [StopARTIM()]
    assert m.current_state == States.STA_1


def test_ae2_sends_the_pdu_given_with_transport_confirmation():
    m = StateMachine()
    m.action(Events.EVT_1)
    other = StubPDU(1, "other RQ")
    assert m.action(Events.EVT_2, other) == [SendPDU(other)]


def test_ae2_without_any_request_pdu_raises_and_stays_in_sta4():
    m = StateMachine()
    m.action(Events.EVT_1)
    with pytest.raises(NetDICOMError):
        m.action(Events.EVT_2)
    assert m.current_state == States.STA_4


def test_requestor_indicates_rejection_and_closes():
    m = _machine_in(States.STA_5)
    assert m.action(Events.EVT_4, RJ) == [Indicate(RJ), CloseTransport()]
    assert m.current_state == States.STA_1


def test_ae6_rejects_an_unacceptable_request_and_starts_artim():
    m = _machine_in(States.STA_2)
    m.acceptability_check = lambda pdu: RJ
    assert m.action(Events.EVT_6, RQ) == [StopARTIM(), SendPDU(RJ), StartARTIM()]
    assert m.current_state == States.STA_13


def test_ae6_hook_receives_the_request():
    seen = []
    m = _machine_in(States.STA_2)
    m.acceptability_check = lambda pdu: seen.append(pdu)
    m.action(Events.EVT_6, RQ)
    assert seen == [RQ] and m.current_state == States.STA_3


def test_protocol_version_check_rejects_a_request_without_version_bit_0():
    assert fsm.reject_unsupported_protocol_version(RQ) is None
    rj = fsm.reject_unsupported_protocol_version(StubPDU(1, protocol_version=2))
    assert (rj.pdu_type, rj.result, rj.source, rj.reason_diag) == (3, 1, 2, 2)


def test_local_user_rejection_sends_rj_then_artim_expiry_closes():
    m = _machine_in(States.STA_3)
    assert m.action(Events.EVT_8, RJ) == [SendPDU(RJ), StartARTIM()]
    assert m.current_state == States.STA_13
    assert m.action(Events.EVT_18) == [StopARTIM(), CloseTransport()]
    assert m.current_state == States.STA_1


def test_artim_expiry_in_sta2_closes_the_connection():
    m = StateMachine()
    m.action(Events.EVT_5)
    assert m.action(Events.EVT_18) == [StopARTIM(), CloseTransport()]
    assert m.current_state == States.STA_1


def test_peer_closing_before_request_stops_artim():
    m = _machine_in(States.STA_2)
    assert m.action(Events.EVT_17) == [StopARTIM()]
    assert m.current_state == States.STA_1


# --- release collision (PS3.8 9.2.2 AR-8 .. AR-10) -------------------------------------

def test_release_collision_requestor_side_alone():
    m = _machine_in(States.STA_7, is_requestor=True)
    rq, rp = AReleaseRqPDU(), AReleaseRpPDU()
    assert m.action(Events.EVT_12, rq) == [Indicate(rq)]
    assert m.current_state == States.STA_9
    assert m.action(Events.EVT_14, rp) == [SendPDU(rp)]
    assert m.current_state == States.STA_11
    assert m.action(Events.EVT_13, rp) == [Indicate(rp), CloseTransport()]
    assert m.current_state == States.STA_1


def test_release_collision_acceptor_side_alone():
    m = _machine_in(States.STA_7, is_requestor=False)
    rq, rp = AReleaseRqPDU(), AReleaseRpPDU()
    assert m.action(Events.EVT_12, rq) == [Indicate(rq)]
    assert m.current_state == States.STA_10
    assert m.action(Events.EVT_13, rp) == [Indicate(rp)]
    assert m.current_state == States.STA_12
    assert m.action(Events.EVT_14, rp) == [SendPDU(rp), StartARTIM()]
    assert m.current_state == States.STA_13
    assert m.action(Events.EVT_17) == [StopARTIM()]
    assert m.current_state == States.STA_1


class Wire:
    """Two engines joined in memory: what one sends, the other receives."""

    def __init__(self):
        self.requestor = StateMachine()
        self.requestor.is_requestor = True
        self.acceptor = StateMachine()
        self.indicated = {"requestor": [], "acceptor": []}
        self.closed = set()

    def _name(self, machine):
        return "requestor" if machine is self.requestor else "acceptor"

    def _peer(self, machine):
        return self.acceptor if machine is self.requestor else self.requestor

    def run(self, machine, effects):
        """Carry out effects; returns the PDUs put on the wire, in order."""
        sent = []
        for effect in effects:
            if isinstance(effect, SendPDU):
                sent.append(effect.pdu)
            elif isinstance(effect, Indicate):
                self.indicated[self._name(machine)].append(effect.primitive)
            elif isinstance(effect, CloseTransport):
                self.closed.add(self._name(machine))
        return sent

    def deliver(self, machine, pdus):
        """Deliver PDUs sent by ``machine`` to its peer; returns what the peer sends."""
        peer = self._peer(machine)
        answers = []
        for pdu in pdus:
            answers += self.run(peer, peer.action(event_for_pdu(pdu), pdu))
        return answers


def test_two_engines_associate_and_release_in_memory():
    w = Wire()
    req, acc = w.requestor, w.acceptor
    w.run(req, req.action(Events.EVT_1, RQ))
    w.run(acc, acc.action(Events.EVT_5))
    sent = w.run(req, req.action(Events.EVT_2))
    assert w.deliver(req, sent) == []
    assert w.indicated["acceptor"] == [RQ] and acc.current_state == States.STA_3
    sent = w.run(acc, acc.action(Events.EVT_7, AC))
    w.deliver(acc, sent)
    assert req.current_state == acc.current_state == States.STA_6
    w.deliver(req, w.run(req, req.action(Events.EVT_11)))
    assert acc.current_state == States.STA_8
    w.deliver(acc, w.run(acc, acc.action(Events.EVT_14)))
    assert req.current_state == States.STA_1 and "requestor" in w.closed
    assert acc.current_state == States.STA_13
    w.run(acc, acc.action(Events.EVT_17))
    assert acc.current_state == States.STA_1


def test_two_engines_resolve_a_release_collision():
    w = Wire()
    req, acc = w.requestor, w.acceptor
    req.current_state = acc.current_state = States.STA_6
    from_req = w.run(req, req.action(Events.EVT_11))
    from_acc = w.run(acc, acc.action(Events.EVT_11))
    assert req.current_state == acc.current_state == States.STA_7
    # Both A-RELEASE-RQ PDUs cross on the wire.
    w.deliver(req, from_req)
    w.deliver(acc, from_acc)
    assert req.current_state == States.STA_9
    assert acc.current_state == States.STA_10
    # PS3.8 9.2.2: the requestor's user answers first.
    from_req = w.run(req, req.action(Events.EVT_14))
    assert req.current_state == States.STA_11
    w.deliver(req, from_req)
    assert acc.current_state == States.STA_12
    from_acc = w.run(acc, acc.action(Events.EVT_14))
    assert acc.current_state == States.STA_13
    w.deliver(acc, from_acc)
    assert req.current_state == States.STA_1 and "requestor" in w.closed
    assert w.run(acc, acc.action(Events.EVT_17)) == []
    assert acc.current_state == States.STA_1
    assert [type(p) for p in w.indicated["requestor"]] == [AReleaseRqPDU, AReleaseRpPDU]
    assert [type(p) for p in w.indicated["acceptor"]] == [AReleaseRqPDU, AReleaseRpPDU]


# --- abort ----------------------------------------------------------------------------

def test_local_abort_without_pdu_sends_service_user_abort_and_starts_artim():
    m = _machine_in(States.STA_6)
    assert m.action(Events.EVT_15) == [SendPDU(AAbortPDU(0, 0)), StartARTIM()]
    assert m.current_state == States.STA_13
    assert m.action(Events.EVT_17) == [StopARTIM()]
    assert m.current_state == States.STA_1


def test_local_abort_sends_the_given_abort_pdu():
    m = _machine_in(States.STA_5)
    pdu = AAbortPDU(0, 0)
    effects = m.action(Events.EVT_15, pdu)
    assert effects[0].pdu is pdu and effects[1] == StartARTIM()


def test_local_abort_with_something_else_than_an_abort_pdu_raises():
    m = _machine_in(States.STA_6)
    with pytest.raises(NetDICOMError):
        m.action(Events.EVT_15, PDATA)
    assert m.current_state == States.STA_6


def test_local_abort_while_connecting_closes_the_transport():
    m = _machine_in(States.STA_4)
    assert m.action(Events.EVT_15) == [StopARTIM(), CloseTransport()]
    assert m.current_state == States.STA_1


def test_abort_from_peer_user_is_indicated_as_a_abort():
    m = _machine_in(States.STA_6)
    pdu = AAbortPDU(0, 0)
    assert m.action(Events.EVT_16, pdu) == [Indicate(pdu), CloseTransport()]
    assert m.current_state == States.STA_1


def test_abort_from_peer_provider_is_indicated_as_a_p_abort():
    m = _machine_in(States.STA_7)
    assert m.action(Events.EVT_16, AAbortPDU(2, 6)) == [
        Indicate(APAbortIndication(2, 6)), CloseTransport()]
    assert m.current_state == States.STA_1


def test_lost_connection_is_indicated_as_a_p_abort():
    m = _machine_in(States.STA_6)
    assert m.action(Events.EVT_17) == [Indicate(APAbortIndication(2, 0))]
    assert m.current_state == States.STA_1


def test_invalid_pdu_in_association_aborts_with_the_decoders_reason():
    m = _machine_in(States.STA_6)
    error = PDUProcessingError("unknown PDU type", reason=1)
    assert m.action(Events.EVT_19, error) == [
        SendPDU(AAbortPDU(2, 1)), Indicate(APAbortIndication(2, 1)), StartARTIM()]
    assert m.current_state == States.STA_13


def test_invalid_event_without_reason_aborts_with_reason_not_specified():
    m = _machine_in(States.STA_6)
    effects = m.action(Events.EVT_19)
    assert effects[0] == SendPDU(AAbortPDU(2, 0))
    assert effects[1] == Indicate(APAbortIndication(2, 0))


def test_unexpected_pdu_in_association_aborts_with_unexpected_pdu():
    m = _machine_in(States.STA_6)
    assert m.action(Events.EVT_3, AC) == [
        SendPDU(AAbortPDU(2, 2)), Indicate(APAbortIndication(2, 2)), StartARTIM()]
    assert m.current_state == States.STA_13


def test_unexpected_pdu_before_request_aborts_as_provider_unexpected_pdu():
    m = _machine_in(States.STA_2)
    assert m.action(Events.EVT_10, PDATA) == [SendPDU(AAbortPDU(2, 2)), StartARTIM()]
    assert m.current_state == States.STA_13


def test_invalid_pdu_before_request_aborts_with_the_decoders_reason():
    m = _machine_in(States.STA_2)
    error = PDUProcessingError("bad", reason=4)
    assert m.action(Events.EVT_19, error) == [SendPDU(AAbortPDU(2, 4)), StartARTIM()]


def test_abort_pdu_before_request_just_closes():
    m = _machine_in(States.STA_2)
    assert m.action(Events.EVT_16, AAbortPDU(0, 0)) == [StopARTIM(), CloseTransport()]
    assert m.current_state == States.STA_1


def test_pdus_after_the_association_ended_are_ignored():
    m = _machine_in(States.STA_13)
    for event, pdu in [(Events.EVT_3, AC), (Events.EVT_4, RJ), (Events.EVT_10, PDATA),
                       (Events.EVT_12, AReleaseRqPDU()), (Events.EVT_13, AReleaseRpPDU())]:
        assert m.action(event, pdu) == []
        assert m.current_state == States.STA_13


def test_request_after_the_association_ended_is_answered_with_abort():
    m = _machine_in(States.STA_13)
    assert m.action(Events.EVT_6, RQ) == [SendPDU(AAbortPDU(2, 2))]
    assert m.current_state == States.STA_13


def test_abort_pdu_after_the_association_ended_closes():
    m = _machine_in(States.STA_13)
    assert m.action(Events.EVT_16, AAbortPDU(2, 0)) == [StopARTIM(), CloseTransport()]
    assert m.current_state == States.STA_1


# --- engine details -------------------------------------------------------------------

def test_action_accepts_plain_integers_and_records_the_primitive():
    m = StateMachine()
    m.action(0, RQ)
    assert m.current_state == States.STA_4 and m.primitive is RQ and m.event == Events.EVT_1


def test_each_action_has_a_method():
    for name in fsm.ACTION_NEXT_STATE:
        assert callable(getattr(StateMachine, name.lower().replace("-", "_")))


def test_fsm_module_does_no_io():
    tree = ast.parse(pathlib.Path(fsm.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "ssl", "select", "threading", "queue", "time"}
