"""PS3.8 Table 9-10, the upper layer state transition table, as data (PS3.8 9.2).

The 13 states (Tables 9-1 .. 9-5), the 19 events, the next state each action's definition
gives (Tables 9-6 .. 9-9) and every one of the 13 x 19 cells, typed in the standard's layout
so it can be read against the printed table (tests/net/test_fsm.py types it once more, from
the standard, and compares). ``fsm.StateMachine`` is the engine that applies it; this module
only holds what the standard says, plus which event a received PDU raises.
"""

from __future__ import annotations

import enum
from typing import Any, Optional

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


#: Short names for error messages (PS3.8 Tables 9-1 .. 9-5 and 9-10).
STATE_TEXT = {
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
EVENT_TEXT = {
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
