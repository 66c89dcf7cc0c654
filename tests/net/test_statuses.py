"""statuses: PS3.7 Annex C codes and the reference's service-specific meanings."""

from __future__ import annotations

import pickle

import pytest

from dicomdesk.net import statuses
from dicomdesk.net.statuses import Status


def test_status_str_reads_code_description_and_type():
    assert str(statuses.C_STORE_OUT_OF_RESOURCES) == '0xA700 Refused: Out of Resources (Failure)'
    assert str(statuses.SUCCESS) == '0x0000 Success (Success)'


def test_status_is_an_int_equal_to_its_code_whatever_the_command():
    assert statuses.C_STORE_OUT_OF_RESOURCES == 0xA700 == statuses.C_FIND_OUT_OF_RESOURCES
    assert isinstance(statuses.SUCCESS, int)
    assert {Status(0xFF00, 'C-FIND'): 1}[0xFF00] == 1


@pytest.mark.parametrize('code, command, kind, description', [
    (0xA700, 'C-STORE', 'Failure', 'Refused: Out of Resources'),
    (0xA7FE, 'C-STORE', 'Failure', 'Refused: Out of Resources'),
    (0xA9AB, 'C-STORE', 'Failure', 'Error: Data Set does not match SOP Class'),
    (0xC123, 'C-STORE', 'Failure', 'Error: Cannot understand'),
    (0xB000, 'C-STORE', 'Warning', 'Coercion of Data Elements'),
    (0xB006, 'C-STORE', 'Warning', 'Elements Discarded'),
    (0xB007, 'C-STORE', 'Warning', 'Data Set does not match SOP Class'),
    (0xC000, 'C-FIND', 'Failure', 'Failed: Unable to process'),
    (0xFE00, 'C-FIND', 'Cancel', 'Matching terminated due to Cancel request'),
    (0xFF01, 'C-FIND', 'Pending', 'Matches are continuing - Warning that one or more Optional '
     'Keys were not supported for existence and/or matching for this Identifier.'),
    (0xB000, 'C-GET', 'Warning', 'Sub-operations Complete - One or more Failures or Warnings'),
    (0xB000, 'C-MOVE', 'Warning', 'Sub-operations Complete - One or more Failures or Warnings'),
    (0xA702, 'C-MOVE', 'Failure', 'Refused: Out of Resources - Unable to perform sub-operations'),
    (0xA801, 'C-MOVE', 'Failure', 'Refused: Move Destination unknown'),
    (0xAA04, 'C-GET', 'Failure', 'Failed: Invalid Request'),
    (0xFF00, 'C-GET', 'Pending', 'Sub-operations are continuing'),
    (0x0112, 'C-STORE', 'Failure', 'Failed: SOP Class Not Supported'),
    (0x0112, 'N-GET', 'Failure', 'No Such SOP Instance'),
    (0x0112, None, 'Failure', 'No Such SOP Instance'),
    (0x0122, 'C-ECHO', 'Failure', 'Refused: SOP Class Not Supported'),
    (0x0210, None, 'Failure', 'Duplicate Invocation'),
    (0x0211, None, 'Failure', 'Unrecognized Operation'),
    (0x0212, None, 'Failure', 'Mistyped Argument'),
    (0x0124, 'N-ACTION', 'Failure', 'Refused: Not Authorized'),
    (0x0107, 'N-SET', 'Warning', 'Attribute List Error'),
    (0xFE00, None, 'Cancel', 'Cancel'),
    (0xFF00, None, 'Pending', 'Pending'),
    (0xB0AA, None, 'Warning', 'Warning'),
    (0xCFFF, None, 'Failure', 'Error: Cannot understand'),
])
def test_known_codes_have_the_type_and_description_of_their_service(code, command, kind,
                                                                     description):
    status = Status(code, command)
    assert status.status_type == kind
    assert status.description == description


def test_command_may_be_given_as_request_or_response_command_field():
    assert Status(0xB000, 0x0001).description == 'Coercion of Data Elements'
    assert Status(0xB000, 0x8021).description.startswith('Sub-operations Complete')
    assert Status(0xB000, 'C-MOVE-RSP').command == 'C-MOVE'


def test_unknown_code_is_a_failure_with_unspecified_description():
    status = Status(0x7777)
    assert status.is_failure and not status.is_success
    assert status.description == statuses.UNKNOWN_DESCRIPTION
    assert str(status) == '0x7777 Unknown status (Failure)'


def test_type_predicates_follow_the_status_type():
    assert statuses.SUCCESS.is_success
    assert statuses.C_FIND_PENDING.is_pending and statuses.C_FIND_PENDING_WARNING.is_pending
    assert statuses.C_GET_WARNING.is_warning
    assert statuses.C_MOVE_DESTINATION_UNKNOWN.is_failure
    assert Status(0xFE00).is_cancel


def test_reference_constants_have_the_reference_values():
    expected = {
        'SUCCESS': 0x0000, 'PROCESSING_FAILURE': 0x0110, 'C_STORE_CANNON_UNDERSTAND': 0xC000,
        'C_STORE_CANNOT_UNDERSTAND': 0xC000, 'C_STORE_OUT_OF_RESOURCES': 0xA700,
        'C_STORE_ELEMENTS_DISCARDED': 0xB006, 'C_FIND_PENDING': 0xFF00,
        'C_FIND_PENDING_WARNING': 0xFF01, 'C_FIND_UNABLE_TO_PROCESS': 0xC000,
        'C_FIND_OUT_OF_RESOURCES': 0xA700, 'C_GET_PENDING': 0xFF00, 'C_GET_WARNING': 0xB000,
        'C_GET_UNABLE_TO_PROCESS': 0xC000, 'C_MOVE_PENDING': 0xFF00, 'C_MOVE_WARNING': 0xB000,
        'C_MOVE_UNABLE_TO_PROCESS': 0xC000, 'C_MOVE_DESTINATION_UNKNOWN': 0xA801,
        'SOP_CLASS_NOT_SUPPORTED': 0x0122, 'DUPLICATE_INVOCATION': 0x0210,
        'MISTYPED_ARGUMENT': 0x0212, 'UNRECOGNIZED_OPERATION': 0x0211, 'NOT_AUTHORIZED': 0x0124,
        'NO_SUCH_SOP_INSTANCE': 0x0112, 'CANCEL': 0xFE00,
    }
    for name, code in expected.items():
        value = getattr(statuses, name)
        assert isinstance(value, Status) and value == code, name
    assert statuses.s is Status


def test_add_status_registers_a_command_specific_code_and_register_restores():
    statuses.add_status(0xA7AB, 'Failure', 'Special', command='C-STORE')
    try:
        assert Status(0xA7AB, 'C-STORE').description == 'Special'
        assert Status(0xA7AB, 'C-FIND').description == 'Refused: Out of Resources'
    finally:
        del statuses._EXACT['C-STORE'][0xA7AB]
    statuses.add_status(0xD000, 'Warning', 'Private range', end=0xD0FF)
    try:
        assert Status(0xD042).is_warning
    finally:
        statuses._RANGES[None] = [r for r in statuses._RANGES[None] if r.start != 0xD000]
    statuses.register_statuses()
    assert Status(0xD042).is_failure


def test_add_status_rejects_unknown_types_and_bad_ranges():
    with pytest.raises(ValueError):
        statuses.add_status(0x1234, 'Maybe', 'x')
    with pytest.raises(ValueError):
        statuses.add_status(0x1234, 'Failure', 'x', end=0x1000)


def test_status_survives_pickling_with_its_command():
    status = pickle.loads(pickle.dumps(statuses.C_MOVE_WARNING))
    assert status == 0xB000 and status.command == 'C-MOVE' and status.is_warning
    assert repr(status) == "Status(0xB000, 'C-MOVE')"
