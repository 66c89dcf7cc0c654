"""commandset: byte-for-byte agreement with pydicom's Implicit VR Little Endian writer."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.tag import Tag

from dicomdesk.net.commandset import (
    COMMAND_VRS,
    command_dataset,
    decode_command,
    decode_fields,
    encode_command,
    encode_fields,
    normalise_value,
)
from dicomdesk.net.exceptions import DIMSEProcessingError


def pydicom_encoding(ds: Dataset) -> bytes:
    """pydicom's own encoding of a command set, Command Group Length included."""
    body = Dataset()
    for elem in ds:
        if elem.tag != 0:
            body.add(elem)

    def write(dataset):
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = True
        write_dataset(fp, dataset)
        return fp.getvalue()

    body.CommandGroupLength = len(write(body))
    return write(body)


def pydicom_decoding(data: bytes) -> Dataset:
    ds = read_dataset(io.BytesIO(data), True, True)
    for elem in ds:  # force conversion of the raw elements
        pass
    return ds


def _ds(**keywords) -> Dataset:
    ds = Dataset()
    for keyword, value in keywords.items():
        setattr(ds, keyword, value)
    return ds


COMMAND_SETS = {
    'c-echo-rq': _ds(AffectedSOPClassUID='1.2.840.10008.1.1', CommandField=0x0030,
                     MessageID=1, CommandDataSetType=0x0101),
    'c-echo-rsp': _ds(AffectedSOPClassUID='1.2.840.10008.1.1', CommandField=0x8030,
                      MessageIDBeingRespondedTo=1, CommandDataSetType=0x0101, Status=0),
    'c-store-rq-odd-uid': _ds(AffectedSOPClassUID='1.2.840.10008.5.1.4.1.1.2',
                              CommandField=1, MessageID=65535, Priority=2,
                              CommandDataSetType=1, AffectedSOPInstanceUID='1.2.3.45',
                              MoveOriginatorApplicationEntityTitle='MOVER',
                              MoveOriginatorMessageID=7),
    'c-store-rsp-error': _ds(AffectedSOPClassUID='1.2.840.10008.5.1.4.1.1.2',
                             CommandField=0x8001, MessageIDBeingRespondedTo=3,
                             CommandDataSetType=0x0101, Status=0xA700,
                             AffectedSOPInstanceUID='1.2.3', ErrorComment='Out of disk',
                             OffendingElement=[0x00100010, 0x00100020]),
    'c-find-rq': _ds(AffectedSOPClassUID='1.2.840.10008.5.1.4.1.2.2.1', CommandField=0x20,
                     MessageID=5, Priority=0, CommandDataSetType=0xFEFE),
    'c-get-rsp': _ds(AffectedSOPClassUID='1.2.840.10008.5.1.4.1.2.2.3', CommandField=0x8010,
                     MessageIDBeingRespondedTo=5, CommandDataSetType=0x0101, Status=0xFF00,
                     NumberOfRemainingSuboperations=10, NumberOfCompletedSuboperations=1,
                     NumberOfFailedSuboperations=0, NumberOfWarningSuboperations=0),
    'c-move-rq-ae': _ds(AffectedSOPClassUID='1.2.840.10008.5.1.4.1.2.2.2', CommandField=0x21,
                        MessageID=9, Priority=1, CommandDataSetType=1,
                        MoveDestination='DEST_AE_16_CHARS'),
    'c-cancel-rq': _ds(CommandField=0x0FFF, MessageIDBeingRespondedTo=9,
                       CommandDataSetType=0x0101),
    'n-get-rq': _ds(RequestedSOPClassUID='1.2.840.10008.1.20.1', CommandField=0x0110,
                    MessageID=2, CommandDataSetType=0x0101,
                    RequestedSOPInstanceUID='1.2.840.10008.1.20.1.1',
                    AttributeIdentifierList=[0x00080016, 0x00080018, 0x7FE00010]),
    'n-action-rq': _ds(RequestedSOPClassUID='1.2.840.10008.1.20.1', CommandField=0x0130,
                       MessageID=3, CommandDataSetType=1, ActionTypeID=1,
                       RequestedSOPInstanceUID='1.2.840.10008.1.20.1.1'),
    'n-event-report-rq': _ds(AffectedSOPClassUID='1.2.840.10008.1.20.1', CommandField=0x0100,
                             MessageID=4, CommandDataSetType=1, EventTypeID=2,
                             AffectedSOPInstanceUID='1.2.840.10008.1.20.1.1'),
    'n-set-rsp-single-at': _ds(AffectedSOPClassUID='1.2.3', CommandField=0x8120,
                               MessageIDBeingRespondedTo=1, CommandDataSetType=0x0101,
                               Status=0x0106, OffendingElement=0x00100010, ErrorID=12,
                               ErrorComment='odd'),
    'empty-values': _ds(CommandField=0x8001, MessageIDBeingRespondedTo=None,
                        AffectedSOPInstanceUID='', ErrorComment='', MoveDestination=''),
}


@pytest.mark.parametrize('name', sorted(COMMAND_SETS))
def test_encoding_equals_pydicoms_byte_for_byte(name):
    ds = COMMAND_SETS[name]
    assert encode_command(ds) == pydicom_encoding(ds)


@pytest.mark.parametrize('name', sorted(COMMAND_SETS))
def test_decoding_of_pydicoms_encoding_equals_the_dataset_pydicom_reads(name):
    data = pydicom_encoding(COMMAND_SETS[name])
    decoded = decode_command(data)
    assert decoded == pydicom_decoding(data)
    for elem in COMMAND_SETS[name]:
        assert decoded[elem.tag].value == elem.value


def test_group_length_counts_every_element_after_it():
    data = encode_command(COMMAND_SETS['c-echo-rq'])
    group, element, length, value = struct.unpack_from('<HHII', data)
    assert (group, element, length) == (0, 0, 4)
    assert value == len(data) - 12


def test_stale_group_length_in_the_dataset_is_recomputed_and_dataset_unchanged():
    ds = _ds(CommandGroupLength=999, CommandField=0x30, MessageID=1)
    data = encode_command(ds)
    assert decode_command(data).CommandGroupLength == len(data) - 12
    assert ds.CommandGroupLength == 999


def test_non_command_element_is_refused_on_encode():
    ds = _ds(CommandField=0x30, PatientName='X')
    with pytest.raises(ValueError):
        encode_command(ds)


@pytest.mark.parametrize('data, why', [
    (b'', 'no group length'),
    (b'\x00\x00\x00\x00\x04\x00\x00\x00', 'truncated value'),
    (b'\x00\x00\x00\x00\x04\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x01\x02\x00\x00\x00\x30\x00',
     'group length disagrees'),
    (b'\x00\x00\x00\x00\x04\x00\x00\x00\x0a\x00\x00\x00\x08\x00\x00\x01\x02\x00\x00\x00\x30\x00',
     'wrong group'),
    (b'\x00\x00\x00\x00\x04\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x30',
     'US of odd length'),
    (b'\x00\x00\x00\x00\x04\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x01\xff\xff\xff\xff',
     'undefined length'),
    (b'\x00\x00\x00\x01\x02\x00\x00\x00\x30\x00', 'missing group length'),
    (b'\x00\x00\x00\x00\x04\x00\x00\x00\x14\x00\x00\x00'
     b'\x00\x00\x10\x01\x02\x00\x00\x00\x01\x00\x00\x00\x00\x01\x02\x00\x00\x00\x30\x00',
     'out of order'),
])
def test_malformed_command_sets_raise_dimse_processing_error(data, why):
    with pytest.raises(DIMSEProcessingError):
        decode_command(data)


uid_text = st.from_regex(r'[1-9][0-9]{0,5}(\.(0|[1-9][0-9]{0,5})){0,8}', fullmatch=True)
ae_text = st.from_regex(r'[A-Z0-9_]{1,16}', fullmatch=True)
lo_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                blacklist_characters='\\'), max_size=64).map(str.strip)
us = st.integers(0, 0xFFFF)
tags = st.integers(0, 0xFFFFFFFF).map(Tag)


@st.composite
def command_sets(draw) -> Dataset:
    ds = Dataset()
    ds.CommandField = draw(us)
    optional = {
        'AffectedSOPClassUID': uid_text, 'RequestedSOPClassUID': uid_text,
        'MessageID': us, 'MessageIDBeingRespondedTo': us, 'MoveDestination': ae_text,
        'Priority': us, 'CommandDataSetType': us, 'Status': us,
        'OffendingElement': st.lists(tags, min_size=1, max_size=4), 'ErrorComment': lo_text,
        'ErrorID': us, 'AffectedSOPInstanceUID': uid_text, 'RequestedSOPInstanceUID': uid_text,
        'EventTypeID': us, 'AttributeIdentifierList': st.lists(tags, min_size=1, max_size=6),
        'ActionTypeID': us, 'NumberOfRemainingSuboperations': us,
        'MoveOriginatorApplicationEntityTitle': ae_text, 'MoveOriginatorMessageID': us,
    }
    for keyword, strategy in optional.items():
        if draw(st.booleans()):
            setattr(ds, keyword, draw(strategy))
    return ds


@settings(derandomize=True, max_examples=150, deadline=None)
@given(command_sets())
def test_random_command_sets_encode_like_pydicom_and_round_trip(ds):
    data = encode_command(ds)
    assert data == pydicom_encoding(ds)
    decoded = decode_command(data)
    assert decoded == pydicom_decoding(data)
    for elem in ds:
        assert decoded[elem.tag].value == elem.value


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoding_any_bytes_returns_a_dataset_or_raises_dimse_processing_error(data):
    try:
        result = decode_command(data)
    except DIMSEProcessingError:
        return
    assert isinstance(result, Dataset)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(command_sets(), st.data())
def test_decoding_mutated_command_sets_never_raises_anything_else(ds, data):
    raw = bytearray(encode_command(ds))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        result = decode_command(bytes(raw))
    except DIMSEProcessingError:
        return
    assert isinstance(result, Dataset)


# --- the pydicom-free internal form: {element number: value} -------------------------------

def as_fields(ds: Dataset) -> dict[int, object]:
    """A Dataset's command set in the internal form, values as plain Python values."""
    fields = {}
    for elem in ds:
        value = elem.value
        if isinstance(value, (list, tuple)) or type(value).__name__ == 'MultiValue':
            value = list(value)
        fields[elem.tag & 0xFFFF] = value
    return fields


def test_command_vr_table_equals_pydicoms_dictionary_for_group_0000():
    from_pydicom = {tag & 0xFFFF: entry[0] for tag, entry in DicomDictionary.items() if tag >> 16 == 0}
    assert COMMAND_VRS == from_pydicom


@pytest.mark.parametrize('name', sorted(COMMAND_SETS))
def test_fields_encoding_equals_pydicoms_byte_for_byte(name):
    ds = COMMAND_SETS[name]
    assert encode_fields(as_fields(ds)) == pydicom_encoding(ds)


def test_fields_are_encoded_in_ascending_element_order_whatever_the_dict_order():
    fields = as_fields(COMMAND_SETS['c-store-rq-odd-uid'])
    reversed_fields = dict(reversed(list(fields.items())))
    assert encode_fields(reversed_fields) == encode_fields(fields)


def test_fields_encoding_ignores_a_stale_group_length_and_leaves_fields_unchanged():
    fields = {0x0000: 999, 0x0100: 0x30, 0x0110: 1}
    data = encode_fields(fields)
    assert decode_fields(data)[0x0000] == len(data) - 12
    assert fields[0x0000] == 999


@pytest.mark.parametrize('name', sorted(COMMAND_SETS))
def test_decoded_fields_hold_the_values_pydicom_reads(name):
    data = pydicom_encoding(COMMAND_SETS[name])
    fields = decode_fields(data)
    expected = pydicom_decoding(data)
    assert list(fields) == [elem.tag & 0xFFFF for elem in expected]  # ascending, complete
    for elem in expected:
        assert fields[elem.tag & 0xFFFF] == elem.value


@pytest.mark.parametrize('name', sorted(COMMAND_SETS))
def test_command_dataset_of_decoded_fields_equals_pydicoms_decoding(name):
    data = pydicom_encoding(COMMAND_SETS[name])
    ds = command_dataset(decode_fields(data))
    assert ds == pydicom_decoding(data)
    assert [elem.VR for elem in ds] == [elem.VR for elem in pydicom_decoding(data)]


def test_at_values_are_plain_ints_in_fields_and_pydicom_tags_in_the_dataset():
    ds = COMMAND_SETS['c-store-rsp-error']
    fields = decode_fields(encode_command(ds))
    assert fields[0x0901] == [0x00100010, 0x00100020]
    assert all(type(tag) is int for tag in fields[0x0901])
    assert list(command_dataset(fields).OffendingElement) == [Tag(0x00100010), Tag(0x00100020)]


@pytest.mark.parametrize('given, stored', [
    ((0x0010, 0x0010), 0x00100010),          # a (group, element) pair is one tag, as in pydicom
    (0x00100020, 0x00100020),
    ([0x00100010, (0x0008, 0x0018)], [0x00100010, 0x00080018]),
    ('PatientName', 0x00100010),             # a keyword: pydicom resolves it
])
def test_at_values_set_in_any_pydicom_form_are_normalised_to_tag_ints(given, stored):
    assert normalise_value(0x0901, given) == stored
    ds = Dataset()
    ds.add_new(0x00000901, 'AT', given)
    assert encode_fields({0x0901: normalise_value(0x0901, given)}) == encode_command(ds)


def test_values_of_other_vrs_are_kept_as_given():
    uid = '1.2.3'
    assert normalise_value(0x0002, uid) is uid
    assert normalise_value(0x0110, 7) == 7


@settings(derandomize=True, max_examples=150, deadline=None)
@given(command_sets())
def test_random_command_sets_encode_identically_from_fields_and_decode_to_the_same_values(ds):
    data = encode_fields(as_fields(ds))
    assert data == encode_command(ds) == pydicom_encoding(ds)
    fields = decode_fields(data)
    assert command_dataset(fields) == decode_command(data) == pydicom_decoding(data)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_decode_fields_and_decode_command_agree_on_any_bytes(data):
    try:
        fields = decode_fields(data)
    except DIMSEProcessingError:
        with pytest.raises(DIMSEProcessingError):
            decode_command(data)
        return
    assert command_dataset(fields) == decode_command(data)


@pytest.mark.parametrize('element, vr, given', [
    (0x0110, 'US', [5]), (0x0600, 'AE', ['DEST']), (0x1005, 'AT', [0x00080018]),
    (0x1005, 'AT', [(0x0008, 0x0018), 0x00080020]), (0x0110, 'US', 5), (0x0902, 'LO', 'x'),
])
def test_normalised_values_are_what_pydicom_reads_back(element, vr, given):
    ds = Dataset()
    ds.add_new(element, vr, given)
    assert normalise_value(element, given) == ds[element].value


def test_a_remembered_decoding_is_a_fresh_dict_every_time():
    raw = encode_fields({0x0002: "1.2.840.10008.5.1.4.1.2.2.1", 0x0100: 0x8020, 0x0120: 7,
                         0x0800: 0x0001, 0x0900: 0xFF00})
    first = decode_fields(raw)
    first[0x0900] = 0
    again = decode_fields(raw)
    assert again[0x0900] == 0xFF00 and again is not first
    assert again == decode_fields(bytes(raw))


def test_remembered_encodings_follow_every_change_of_the_fields():
    fields = {0x0002: "1.2.840.10008.1.1", 0x0100: 0x8030, 0x0120: 1, 0x0800: 0x0101,
              0x0900: 0x0000}
    one = encode_fields(fields)
    assert encode_fields(dict(fields)) == one
    fields[0x0120] = 2
    two = encode_fields(fields)
    assert two != one and decode_fields(two)[0x0120] == 2
    fields[0x1005] = [0x00100010, 0x00100020]  # a list value: encoded, not remembered
    assert decode_fields(encode_fields(fields))[0x1005] == [0x00100010, 0x00100020]
