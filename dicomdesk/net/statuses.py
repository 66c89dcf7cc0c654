"""DIMSE response status codes (PS3.7 Annex C; service-specific codes in PS3.4).

A status is a value, never an exception: ``Status`` is an ``int`` that also knows
its type (Success, Warning, Pending, Cancel, Failure) and a description.  The
meaning of some codes depends on the service (0xA700 is "Out of Resources" for
C-STORE and C-FIND, 0xB000 is "Coercion of Data Elements" for C-STORE but
"Sub-operations Complete - One or more Failures or Warnings" for C-GET/C-MOVE,
0x0112 is "SOP Class Not Supported" for the C- services of the reference table
but "No Such SOP Instance" for the N- services), so a ``Status`` may carry the
DIMSE command it answers.

The known codes live in one registry that ``add_status`` extends, as the
pynetdicom2 reference (chapter 12) asks; ``register_statuses`` fills it with the
codes of the reference table and PS3.7 Annex C.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

logger = logging.getLogger(__name__)

SUCCESS_TYPE = 'Success'
WARNING_TYPE = 'Warning'
PENDING_TYPE = 'Pending'
CANCEL_TYPE = 'Cancel'
FAILURE_TYPE = 'Failure'
STATUS_TYPES = (SUCCESS_TYPE, WARNING_TYPE, PENDING_TYPE, CANCEL_TYPE, FAILURE_TYPE)

# Command Field values of the request primitives (PS3.7 Table E.1-1) by name; a
# response's command field is the request's with bit 15 set.
COMMAND_NAMES = {
    0x0001: 'C-STORE',
    0x0010: 'C-GET',
    0x0020: 'C-FIND',
    0x0021: 'C-MOVE',
    0x0030: 'C-ECHO',
    0x0FFF: 'C-CANCEL',
    0x0100: 'N-EVENT-REPORT',
    0x0110: 'N-GET',
    0x0120: 'N-SET',
    0x0130: 'N-ACTION',
    0x0140: 'N-CREATE',
    0x0150: 'N-DELETE',
}

UNKNOWN_DESCRIPTION = 'Unknown status'


class _Entry(NamedTuple):
    start: int
    end: int
    code_type: str
    description: str


# The library's registry of known statuses: command name (or None for the
# general codes of PS3.7 Annex C) -> exact codes and ranges.  It is the
# reference's "global library dictionary" that add_status extends.
_EXACT: dict[str | None, dict[int, _Entry]] = {}
_RANGES: dict[str | None, list[_Entry]] = {}


def _command_name(command: int | str | None) -> str | None:
    """Normalise a command given as a Command Field value or a name ('C-STORE')."""
    if command is None:
        return None
    if isinstance(command, str):
        name = command.strip().upper()
        if name.endswith('-RQ') or name.endswith('-RSP'):
            name = name.rsplit('-', 1)[0]
        return name
    return COMMAND_NAMES.get(int(command) & 0x7FFF, f'0x{int(command) & 0x7FFF:04X}')


def add_status(code: int, code_type: str, description: str, end: int | None = None,
               command: int | str | None = None) -> None:
    """Add a known status code (or the range ``code``..``end``) to the registry.

    Lets an application name the codes of a service this module does not know
    (PS3.4 defines service-specific codes in each annex).
    """
    if code_type not in STATUS_TYPES:
        raise ValueError(f'status type must be one of {STATUS_TYPES}, not {code_type!r}')
    if not 0 <= code <= 0xFFFF or (end is not None and not code <= end <= 0xFFFF):
        raise ValueError(f'invalid status code range 0x{code:04X}..{end!r}')
    name = _command_name(command)
    if end is None or end == code:
        _EXACT.setdefault(name, {})[code] = _Entry(code, code, code_type, description)
    else:
        ranges = _RANGES.setdefault(name, [])
        ranges[:] = [r for r in ranges if (r.start, r.end) != (code, end)]
        ranges.append(_Entry(code, end, code_type, description))


def _lookup(code: int, command: str | None) -> _Entry | None:
    """Find the most specific entry: the command's exact code, its range, then the general ones."""
    for name in ((command, None) if command is not None else (None,)):
        entry = _EXACT.get(name, {}).get(code)
        if entry is not None:
            return entry
        for entry in _RANGES.get(name, ()):
            if entry.start <= code <= entry.end:
                return entry
    return None


class Status(int):
    """A DIMSE status code with its type and description (PS3.7 Annex C).

    It compares and hashes as the plain code, so ``rsp.status == SUCCESS`` works
    whatever command a status was built for.  Codes the library does not know are
    failures with an unspecified description (PS3.7 C.1: any code not defined is
    treated as a failure by a conformant application).
    """

    command: str | None
    status_type: str
    description: str

    def __new__(cls, value: int, command: int | str | None = None) -> 'Status':
        self = super().__new__(cls, value)
        self.command = _command_name(command)
        entry = _lookup(int(self), self.command)
        if entry is None:
            self.status_type, self.description = FAILURE_TYPE, UNKNOWN_DESCRIPTION
        else:
            self.status_type, self.description = entry.code_type, entry.description
        return self

    def __reduce__(self):
        return (Status, (int(self), self.command))

    @property
    def is_success(self) -> bool:
        return self.status_type == SUCCESS_TYPE

    @property
    def is_warning(self) -> bool:
        return self.status_type == WARNING_TYPE

    @property
    def is_failure(self) -> bool:
        return self.status_type == FAILURE_TYPE

    @property
    def is_pending(self) -> bool:
        return self.status_type == PENDING_TYPE

    @property
    def is_cancel(self) -> bool:
        return self.status_type == CANCEL_TYPE

    def __str__(self) -> str:
        return f'0x{int(self):04X} {self.description} ({self.status_type})'

    def __repr__(self) -> str:
        if self.command is None:
            return f'Status(0x{int(self):04X})'
        return f'Status(0x{int(self):04X}, {self.command!r})'



s = Status
"""Short alias of :class:`Status` (reference: ``statuses.s``)."""

status = Status


# The C-services whose retrieval statuses share one shape (PS3.4 C.4.2.1.5, C.4.3.1.4).
_RETRIEVE = ('C-GET', 'C-MOVE')

# PS3.7 Annex C general statuses: (code, end, type, description).
_GENERAL = (
    (0x0000, None, SUCCESS_TYPE, 'Success'),
    (0x0001, None, WARNING_TYPE, 'Requested optional Attributes are not supported'),
    (0x0105, None, FAILURE_TYPE, 'No Such Attribute'),
    (0x0106, None, FAILURE_TYPE, 'Invalid Attribute Value'),
    (0x0107, None, WARNING_TYPE, 'Attribute List Error'),
    (0x0110, None, FAILURE_TYPE, 'Processing Failure'),
    (0x0111, None, FAILURE_TYPE, 'Duplicate SOP Instance'),
    (0x0112, None, FAILURE_TYPE, 'No Such SOP Instance'),
    (0x0113, None, FAILURE_TYPE, 'No Such Event Type'),
    (0x0114, None, FAILURE_TYPE, 'No Such Argument'),
    (0x0115, None, FAILURE_TYPE, 'Invalid Argument Value'),
    (0x0116, None, WARNING_TYPE, 'Attribute Value Out Of Range'),
    (0x0117, None, FAILURE_TYPE, 'Invalid Object Instance'),
    (0x0118, None, FAILURE_TYPE, 'No Such SOP Class'),
    (0x0119, None, FAILURE_TYPE, 'Class-Instance Conflict'),
    (0x0120, None, FAILURE_TYPE, 'Missing Attribute'),
    (0x0121, None, FAILURE_TYPE, 'Missing Attribute Value'),
    (0x0122, None, FAILURE_TYPE, 'Refused: SOP Class Not Supported'),
    (0x0123, None, FAILURE_TYPE, 'No Such Action'),
    (0x0124, None, FAILURE_TYPE, 'Refused: Not Authorized'),
    (0x0210, None, FAILURE_TYPE, 'Duplicate Invocation'),
    (0x0211, None, FAILURE_TYPE, 'Unrecognized Operation'),
    (0x0212, None, FAILURE_TYPE, 'Mistyped Argument'),
    (0x0213, None, FAILURE_TYPE, 'Resource Limitation'),
    (0xA700, 0xA7FF, FAILURE_TYPE, 'Refused: Out of Resources'),
    (0xA900, 0xA9FF, FAILURE_TYPE, 'Error: Data Set does not match SOP Class'),
    (0xB000, 0xB0FF, WARNING_TYPE, 'Warning'),
    (0xC000, 0xCFFF, FAILURE_TYPE, 'Error: Cannot understand'),
    (0xFE00, None, CANCEL_TYPE, 'Cancel'),
    (0xFF00, None, PENDING_TYPE, 'Pending'),
    (0xFF01, None, PENDING_TYPE, 'Pending: Warning'),
)

# Service-specific statuses of the reference table (PS3.4 B.2.3, C.4.1.1.4,
# C.4.2.1.5, C.4.3.1.4): (command, code, end, type, description).
_SPECIFIC = (
    ('C-STORE', 0x0000, None, SUCCESS_TYPE, 'Success'),
    ('C-STORE', 0xA700, 0xA7FF, FAILURE_TYPE, 'Refused: Out of Resources'),
    ('C-STORE', 0xA900, 0xA9FF, FAILURE_TYPE, 'Error: Data Set does not match SOP Class'),
    ('C-STORE', 0xC000, 0xCFFF, FAILURE_TYPE, 'Error: Cannot understand'),
    ('C-STORE', 0x0112, None, FAILURE_TYPE, 'Failed: SOP Class Not Supported'),
    ('C-STORE', 0xB000, None, WARNING_TYPE, 'Coercion of Data Elements'),
    ('C-STORE', 0xB007, None, WARNING_TYPE, 'Data Set does not match SOP Class'),
    ('C-STORE', 0xB006, None, WARNING_TYPE, 'Elements Discarded'),
    ('C-FIND', 0x0000, None, SUCCESS_TYPE,
     'Matching is complete - No final Identifier is supplied.'),
    ('C-FIND', 0xA700, 0xA7FF, FAILURE_TYPE, 'Refused: Out of Resources'),
    ('C-FIND', 0xA900, 0xA9FF, FAILURE_TYPE, 'Error: Data Set does not match SOP Class'),
    ('C-FIND', 0xC000, 0xCFFF, FAILURE_TYPE, 'Failed: Unable to process'),
    ('C-FIND', 0x0112, None, FAILURE_TYPE, 'Failed: SOP Class Not Supported'),
    ('C-FIND', 0xFE00, None, CANCEL_TYPE, 'Matching terminated due to Cancel request'),
    ('C-FIND', 0xFF00, None, PENDING_TYPE,
     'Matches are continuing - Current Match is supplied and any Optional Keys were '
     'supported in the same manner as Required Keys.'),
    ('C-FIND', 0xFF01, None, PENDING_TYPE,
     'Matches are continuing - Warning that one or more Optional Keys were not supported '
     'for existence and/or matching for this Identifier.'),
    ('C-MOVE', 0xA801, None, FAILURE_TYPE, 'Refused: Move Destination unknown'),
) + tuple(
    (command, code, end, code_type, description)
    for command in _RETRIEVE
    for code, end, code_type, description in (
        (0x0000, None, SUCCESS_TYPE, 'Sub-operations Complete - No Failures or Warnings'),
        (0xA700, 0xA7FF, FAILURE_TYPE, 'Refused: Out of Resources'),
        (0xA701, None, FAILURE_TYPE,
         'Refused: Out of Resources - Unable to calculate number of matches'),
        (0xA702, None, FAILURE_TYPE,
         'Refused: Out of Resources - Unable to perform sub-operations'),
        (0xA900, 0xA9FF, FAILURE_TYPE, 'Error: Data Set does not match SOP Class'),
        (0xC000, 0xCFFF, FAILURE_TYPE, 'Failed: Unable to process'),
        (0xAA00, None, FAILURE_TYPE,
         'Failed: None of the frames requested were found in the SOP Instance'),
        (0xAA01, None, FAILURE_TYPE, 'Failed: Unable to create new object for this SOP class'),
        (0xAA02, None, FAILURE_TYPE, 'Failed: Unable to extract frames'),
        (0xAA03, None, FAILURE_TYPE,
         'Failed: Time-based request received for a non-time-based original SOP Instance.'),
        (0xAA04, None, FAILURE_TYPE, 'Failed: Invalid Request'),
        (0x0112, None, FAILURE_TYPE, 'Failed: SOP Class Not Supported'),
        (0xFE00, None, CANCEL_TYPE, 'Sub-operations terminated due to Cancel Indication'),
        (0xB000, None, WARNING_TYPE,
         'Sub-operations Complete - One or more Failures or Warnings'),
        (0xFF00, None, PENDING_TYPE, 'Sub-operations are continuing'),
    )
)


def register_statuses() -> None:
    """Register the statuses of PS3.7 Annex C and of the reference's table.

    Idempotent: registering again restores the library's descriptions.
    """
    for code, end, code_type, description in _GENERAL:
        add_status(code, code_type, description, end=end)
    for command, code, end, code_type, description in _SPECIFIC:
        add_status(code, code_type, description, end=end, command=command)


register_statuses()

SUCCESS = Status(0x0000)
"""(0x0000) Success"""

CANCEL = Status(0xFE00)
"""(0xFE00) Cancel"""

PENDING = Status(0xFF00)
"""(0xFF00) Pending"""

PENDING_WARNING = Status(0xFF01)
"""(0xFF01) Pending with a warning"""

PROCESSING_FAILURE = Status(0x0110)
"""(0x0110) Processing Failure"""

NO_SUCH_ATTRIBUTE = Status(0x0105)
INVALID_ATTRIBUTE_VALUE = Status(0x0106)
ATTRIBUTE_LIST_ERROR = Status(0x0107)
DUPLICATE_SOP_INSTANCE = Status(0x0111)
NO_SUCH_SOP_INSTANCE = Status(0x0112)
NO_SUCH_EVENT_TYPE = Status(0x0113)
NO_SUCH_ARGUMENT = Status(0x0114)
INVALID_ARGUMENT_VALUE = Status(0x0115)
ATTRIBUTE_VALUE_OUT_OF_RANGE = Status(0x0116)
INVALID_OBJECT_INSTANCE = Status(0x0117)
NO_SUCH_SOP_CLASS = Status(0x0118)
CLASS_INSTANCE_CONFLICT = Status(0x0119)
MISSING_ATTRIBUTE = Status(0x0120)
MISSING_ATTRIBUTE_VALUE = Status(0x0121)
SOP_CLASS_NOT_SUPPORTED = Status(0x0122)
NO_SUCH_ACTION = Status(0x0123)
NOT_AUTHORIZED = Status(0x0124)
DUPLICATE_INVOCATION = Status(0x0210)
UNRECOGNIZED_OPERATION = Status(0x0211)
MISTYPED_ARGUMENT = Status(0x0212)
RESOURCE_LIMITATION = Status(0x0213)

C_STORE_CANNON_UNDERSTAND = Status(0xC000, 'C-STORE')
"""(0xC000) Error: Cannot understand (C-STORE); the reference's spelling."""

C_STORE_CANNOT_UNDERSTAND = C_STORE_CANNON_UNDERSTAND

C_STORE_OUT_OF_RESOURCES = Status(0xA700, 'C-STORE')
"""(0xA700) Refused: Out of Resources (C-STORE)"""

C_STORE_DATA_SET_DOES_NOT_MATCH_SOP_CLASS = Status(0xA900, 'C-STORE')
"""(0xA900) Error: Data Set does not match SOP Class (C-STORE)"""

C_STORE_SOP_CLASS_NOT_SUPPORTED = Status(0x0122, 'C-STORE')
"""(0x0122) Refused: SOP Class Not Supported (C-STORE, PS3.4 B.2.3)"""

C_STORE_COERCION_OF_DATA_ELEMENTS = Status(0xB000, 'C-STORE')
"""(0xB000) Coercion of Data Elements (C-STORE)"""

C_STORE_DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING = Status(0xB007, 'C-STORE')
"""(0xB007) Data Set does not match SOP Class (C-STORE warning)"""

C_STORE_ELEMENTS_DISCARDED = Status(0xB006, 'C-STORE')
"""(0xB006) Elements Discarded (C-STORE)"""

C_FIND_PENDING = Status(0xFF00, 'C-FIND')
"""(0xFF00) Matches are continuing (C-FIND)"""

C_FIND_PENDING_WARNING = Status(0xFF01, 'C-FIND')
"""(0xFF01) Matches are continuing - optional keys not supported (C-FIND)"""

C_FIND_UNABLE_TO_PROCESS = Status(0xC000, 'C-FIND')
"""(0xC000) Failed: Unable to process (C-FIND)"""

C_FIND_OUT_OF_RESOURCES = Status(0xA700, 'C-FIND')
"""(0xA700) Refused: Out of Resources (C-FIND)"""

C_FIND_CANCEL = Status(0xFE00, 'C-FIND')
"""(0xFE00) Matching terminated due to Cancel request (C-FIND)"""

C_FIND_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = Status(0xA900, 'C-FIND')
"""(0xA900) Identifier does not match SOP Class (C-FIND, PS3.4 C.4.1.1.4)"""

C_FIND_MATCHES_LIMITED = Status(0xB000, 'C-FIND')
"""(0xB000) Warning (PS3.7 C.1.3 Bxxx range; PS3.4 C.4.1 defines no C-FIND warning): what a
dicomdesk SCP answers when its ``max_find_matches`` cut the matches short, saying so in the
Error Comment."""

C_GET_PENDING = Status(0xFF00, 'C-GET')
"""(0xFF00) Sub-operations are continuing (C-GET)"""

C_GET_WARNING = Status(0xB000, 'C-GET')
"""(0xB000) Sub-operations Complete - One or more Failures or Warnings (C-GET)"""

C_GET_UNABLE_TO_PROCESS = Status(0xC000, 'C-GET')
"""(0xC000) Failed: Unable to process (C-GET)"""

C_GET_OUT_OF_RESOURCES_MATCHES = Status(0xA701, 'C-GET')
C_GET_OUT_OF_RESOURCES_SUB_OPERATIONS = Status(0xA702, 'C-GET')
C_GET_CANCEL = Status(0xFE00, 'C-GET')

C_MOVE_PENDING = Status(0xFF00, 'C-MOVE')
"""(0xFF00) Sub-operations are continuing (C-MOVE)"""

C_MOVE_WARNING = Status(0xB000, 'C-MOVE')
"""(0xB000) Sub-operations Complete - One or more Failures or Warnings (C-MOVE)"""

C_MOVE_UNABLE_TO_PROCESS = Status(0xC000, 'C-MOVE')
"""(0xC000) Failed: Unable to process (C-MOVE)"""

C_MOVE_DESTINATION_UNKNOWN = Status(0xA801, 'C-MOVE')
"""(0xA801) Refused: Move Destination unknown"""

C_MOVE_OUT_OF_RESOURCES_MATCHES = Status(0xA701, 'C-MOVE')
C_MOVE_OUT_OF_RESOURCES_SUB_OPERATIONS = Status(0xA702, 'C-MOVE')
C_MOVE_CANCEL = Status(0xFE00, 'C-MOVE')
