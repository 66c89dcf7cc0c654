"""dimsemessages: message classes, fragmentation and encoding into P-DATA-TF PDUs."""

from __future__ import annotations

import io

import pytest
from pydicom.dataset import Dataset

from dicomdesk.net import dimsemessages as dm
from dicomdesk.net import fragmentation as frag
from dicomdesk.net.commandset import decode_command, decode_fields
from dicomdesk.net.exceptions import DIMSEProcessingError
from dicomdesk.net.pdu import PDataTfPDU, PresentationDataValueItem
from dicomdesk.net.statuses import Status

EXPECTED_COMMAND_FIELDS = {
    'CEchoRQMessage': 0x0030, 'CEchoRSPMessage': 0x8030, 'CStoreRQMessage': 0x0001,
    'CStoreRSPMessage': 0x8001, 'CFindRQMessage': 0x0020, 'CFindRSPMessage': 0x8020,
    'CGetRQMessage': 0x0010, 'CGetRSPMessage': 0x8010, 'CMoveRQMessage': 0x0021,
    'CMoveRSPMessage': 0x8021, 'CCancelRQMessage': 0x0FFF,
    'NEventReportRQMessage': 0x0100, 'NEventReportRSPMessage': 0x8100,
    'NGetRQMessage': 0x0110, 'NGetRSPMessage': 0x8110, 'NSetRQMessage': 0x0120,
    'NSetRSPMessage': 0x8120, 'NActionRQMessage': 0x0130, 'NActionRSPMessage': 0x8130,
    'NCreateRQMessage': 0x0140, 'NCreateRSPMessage': 0x8140, 'NDeleteRQMessage': 0x0150,
    'NDeleteRSPMessage': 0x8150,
}


def test_every_message_class_has_the_ps3_7_command_field_and_is_registered():
    for name, field in EXPECTED_COMMAND_FIELDS.items():
        cls = getattr(dm, name)
        assert cls.command_field == field
        assert dm.MESSAGE_TYPES[field] is cls
    assert len(dm.MESSAGE_TYPES) == len(EXPECTED_COMMAND_FIELDS)


def test_new_message_command_set_holds_command_field_and_no_data_set():
    msg = dm.CStoreRQMessage()
    assert msg.command_set.CommandField == 0x0001
    assert msg.command_set.CommandDataSetType == 0x0101
    assert msg.priority == dm.PRIORITY_MEDIUM
    assert msg.data_set is None


def test_properties_read_and_write_their_command_elements():
    msg = dm.CStoreRQMessage()
    msg.message_id = 7
    msg.sop_class_uid = '1.2.840.10008.5.1.4.1.1.2'
    msg.affected_sop_instance_uid = '1.2.3.4'
    msg.move_originator_aet = 'MOVER'
    msg.move_originator_message_id = 3
    ds = msg.command_set
    assert (ds.MessageID, ds.AffectedSOPClassUID, ds.AffectedSOPInstanceUID) == (
        7, '1.2.840.10008.5.1.4.1.1.2', '1.2.3.4')
    assert ds.MoveOriginatorApplicationEntityTitle == 'MOVER'
    assert ds.MoveOriginatorMessageID == 3
    msg.move_originator_aet = None
    # a command field of the reference's ``command_fields`` stays in the command set, empty,
    # reads '' as in the reference, and is not sent
    assert ds['MoveOriginatorApplicationEntityTitle'].is_empty
    assert msg.move_originator_aet == ''
    assert 'MoveOriginatorApplicationEntityTitle' not in decode_command(msg.set_length())


def test_requested_sop_class_messages_use_requested_sop_class_uid():
    for cls in (dm.NGetRQMessage, dm.NSetRQMessage, dm.NActionRQMessage, dm.NDeleteRQMessage):
        msg = cls()
        msg.sop_class_uid = '1.2.840.10008.1.20.1'
        assert msg.command_set.RequestedSOPClassUID == '1.2.840.10008.1.20.1'
        assert 'AffectedSOPClassUID' not in msg.command_set
    msg = dm.NEventReportRQMessage()
    msg.sop_class_uid = '1.2.840.10008.1.20.1'
    assert msg.command_set.AffectedSOPClassUID == '1.2.840.10008.1.20.1'


def test_status_property_knows_the_command_it_answers():
    store = dm.CStoreRSPMessage()
    store.status = 0xB000
    move = dm.CMoveRSPMessage()
    move.status = 0xB000
    assert isinstance(store.status, Status)
    assert store.status.description == 'Coercion of Data Elements'
    assert move.status.description.startswith('Sub-operations Complete')
    assert dm.CFindRSPMessage().status == ''  # never set: '' as in the reference


def test_response_error_fields_and_sub_operation_counters():
    rsp = dm.CGetRSPMessage()
    rsp.num_of_remaining_sub_ops = 4
    rsp.num_of_completed_sub_ops = 3
    rsp.num_of_failed_sub_ops = 2
    rsp.num_of_warning_sub_ops = 1
    rsp.error_comment = 'trouble'
    rsp.offending_element = [0x00100010]
    ds = rsp.command_set
    assert (ds.NumberOfRemainingSuboperations, ds.NumberOfCompletedSuboperations,
            ds.NumberOfFailedSuboperations, ds.NumberOfWarningSuboperations) == (4, 3, 2, 1)
    assert ds.ErrorComment == 'trouble'


def test_c_cancel_identifies_the_request_it_cancels():
    msg = dm.CCancelRQMessage()
    msg.message_id_being_responded_to = 12
    assert msg.command_set.MessageIDBeingRespondedTo == 12


def test_chunks_are_views_of_the_given_size_and_flag_the_last():
    data = bytes(range(10))
    got = [(bytes(c), last) for c, last in dm.chunks(data, 4)]
    assert got == [(bytes(range(4)), False), (bytes(range(4, 8)), False), (bytes([8, 9]), True)]
    assert [(bytes(c), last) for c, last in dm.chunks(b'', 4)] == [(b'', True)]
    assert all(isinstance(c, memoryview) for c, _ in dm.chunks(data, 4))


@pytest.mark.parametrize('size', [0, 1, 4089, 4090, 4091, 10_000])
def test_fragment_and_fragment_file_split_alike_within_the_limit(size):
    data = bytes(i % 251 for i in range(size))
    from_bytes = [(bytes(f), c) for f, c in dm.fragment(data, 4096, 0, 2)]
    from_file = [(bytes(f), c) for f, c in dm.fragment_file(io.BytesIO(data), 4096, 0, 2)]
    assert from_bytes == from_file
    assert b''.join(f for f, _ in from_bytes) == data
    assert all(len(f) <= 4096 - 6 for f, _ in from_bytes)
    assert [c for _, c in from_bytes] == [0] * (len(from_bytes) - 1) + [2]


class CountingReader(io.RawIOBase):
    """A raw file that records the size of every read and returns short reads."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)
        self.requests: list[int] = []

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.requests.append(len(buffer))
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[:len(chunk)] = chunk
        return len(chunk)


def test_fragment_file_reads_in_bounded_pieces_and_handles_short_reads():
    data = bytes(i % 253 for i in range(50_000))
    reader = CountingReader(data)
    out = b''.join(bytes(f) for f, _ in dm.fragment_file(reader, 16_384, 0, 2))
    assert out == data
    assert max(reader.requests) <= 16_384 - 6


def test_fragment_file_starts_at_the_current_position():
    fp = io.BytesIO(b'PREAMBLE' + b'x' * 100)
    fp.seek(8)
    assert b''.join(bytes(f) for f, _ in dm.fragment_file(fp, 64, 0, 2)) == b'x' * 100


def test_zero_max_pdu_length_means_one_mib_fragments():
    data = b'a' * (frag.UNLIMITED_FRAGMENT_SIZE + 10)
    sizes = [len(f) for f, _ in dm.fragment(data, 0, 0, 2)]
    assert sizes == [frag.UNLIMITED_FRAGMENT_SIZE, 10]


def test_a_tiny_peer_maximum_is_raised_to_the_floor():
    sizes = [len(f) for f, _ in dm.fragment(bytes(10_000), 7, 0, 2)]
    assert sizes == [frag.MIN_SEND_PDU_LENGTH - frag.PDV_OVERHEAD] * 2 + [10_000 - 2 * (frag.MIN_SEND_PDU_LENGTH - 6)]


def _pdus(msg, max_pdu=4096, pc_id=3):
    return list(msg.encode(pc_id, max_pdu))


def test_encode_sends_command_then_data_one_pdv_per_pdu_within_the_limit():
    msg = dm.CStoreRQMessage()
    msg.message_id = 1
    msg.sop_class_uid = '1.2.840.10008.5.1.4.1.1.7'
    msg.affected_sop_instance_uid = '1.2.3'
    msg.data_set = bytes(20_000)
    pdus = _pdus(msg, max_pdu=5000)
    headers = []
    for pdu in pdus:
        assert isinstance(pdu, PDataTfPDU)
        assert len(pdu.data_value_items) == 1
        item = pdu.data_value_items[0]
        assert item.context_id == 3
        assert len(pdu.encode()) - 6 <= 5000  # the variable field Maximum Length bounds
        headers.append(item.data_value[0])
    assert headers[0] == frag.LAST_COMMAND_FRAGMENT
    assert headers[1:] == [0] * (len(headers) - 2) + [frag.LAST_DATA_FRAGMENT]
    data = b''.join(bytes(p.data_value_items[0].data_value[1:]) for p in pdus[1:])
    assert data == bytes(20_000)
    command = decode_command(bytes(pdus[0].data_value_items[0].data_value[1:]))
    assert command.CommandDataSetType != 0x0101


def test_a_response_that_fits_one_pdu_goes_as_two_pdvs_and_one_byte_more_as_two_pdus():
    """PS3.8 9.3.5.1: a P-DATA-TF may carry several PDVs; the variable field (PDV items of
    4 + 2 + fragment bytes) is what the peer's Maximum Length bounds."""
    def response(size):
        msg = dm.CFindRSPMessage()
        msg.message_id_being_responded_to = 3
        msg.affected_sop_class_uid = '1.2.840.10008.5.1.4.1.2.2.1'
        msg.status = 0xFF00
        msg.data_set = bytes(size)
        return msg

    command = len(response(0).set_length())
    fits = 4096 - 2 * frag.PDV_OVERHEAD - command
    (one,) = _pdus(response(fits), max_pdu=4096)
    assert [item.data_value[0] for item in one.data_value_items] == [
        frag.LAST_COMMAND_FRAGMENT, frag.LAST_DATA_FRAGMENT]
    assert len(one.encode()) - 6 == 4096
    assert decode_fields(bytes(one.data_value_items[0].data_value[1:]))[0x0800] != 0x0101
    assert bytes(one.data_value_items[1].data_value[1:]) == bytes(fits)
    split = _pdus(response(fits + 1), max_pdu=4096)
    assert [len(p.data_value_items) for p in split] == [1, 1]
    assert [p.data_value_items[0].data_value[0] for p in split] == [
        frag.LAST_COMMAND_FRAGMENT, frag.LAST_DATA_FRAGMENT]
    assert all(len(p.encode()) - 6 <= 4096 for p in split)


def test_a_tiny_limit_does_not_cut_the_command_set_into_bytes():
    msg = dm.CEchoRQMessage()
    msg.message_id = 1
    msg.sop_class_uid = '1.2.840.10008.1.1'
    pdus = _pdus(msg, max_pdu=20)  # below MIN_SEND_PDU_LENGTH: the floor applies
    values = [p.data_value_items[0].data_value for p in pdus]
    assert [v[0] for v in values] == [3]
    command = decode_command(bytes(values[0][1:]))
    assert command.CommandDataSetType == 0x0101 and command.MessageID == 1


def test_encode_sets_group_length_and_data_set_type():
    msg = dm.CFindRSPMessage()
    msg.message_id_being_responded_to = 1
    msg.status = 0xFF00
    msg.data_set = b'\x08\x00\x52\x00\x06\x00\x00\x00STUDY '
    list(msg.encode(1, 0))
    assert msg.command_set.CommandDataSetType == dm.DATA_SET_PRESENT
    assert msg.command_set.CommandGroupLength > 0
    msg.data_set = None
    list(msg.encode(1, 0))
    assert msg.command_set.CommandDataSetType == 0x0101


def test_encode_refuses_an_unencoded_dataset():
    msg = dm.CFindRQMessage()
    msg.data_set = Dataset()
    with pytest.raises(TypeError):
        list(msg.encode(1, 4096))


def test_encode_streams_a_file_data_set():
    data = bytes(i % 7 for i in range(30_000))
    msg = dm.CStoreRQMessage()
    msg.data_set = io.BytesIO(data)
    pdus = _pdus(msg, max_pdu=4096)
    assert b''.join(bytes(p.data_value_items[0].data_value[1:]) for p in pdus[1:]) == data
    assert all(len(p.encode()) - 6 <= 4096 for p in pdus)


def test_message_from_command_picks_the_class_by_command_field():
    ds = dm.CMoveRQMessage().command_set
    msg = dm.message_from_command(ds)
    assert isinstance(msg, dm.CMoveRQMessage) and msg.command_set is ds
    bad = Dataset()
    bad.CommandField = 0x4242
    with pytest.raises(DIMSEProcessingError):
        dm.message_from_command(bad)
    with pytest.raises(DIMSEProcessingError):
        dm.message_from_command(Dataset())


def test_value_or_none():
    assert dm.value_or_none(None) is None
    assert dm.value_or_none(dm.CEchoRQMessage().command_set['CommandField']) == 0x30


# --- the command set kept as fields, the pydicom Dataset built on demand ------------------

def _command_bytes(msg: dm.DIMSEMessage, pc_id: int = 1) -> bytes:
    pdus = list(msg.encode(pc_id, 0))
    return bytes(pdus[0].data_value_items[0].data_value[1:])


def _filled(cls: type[dm.DIMSEMessage]) -> dm.DIMSEMessage:
    """A message of ``cls`` with every property it has set to a plausible value."""
    msg = cls()
    values = {
        'message_id': 11, 'message_id_being_responded_to': 12, 'sop_class_uid': '1.2.840.10008.1.1',
        'affected_sop_instance_uid': '1.2.3.4.5', 'requested_sop_instance_uid': '1.2.3.4',
        'priority': dm.PRIORITY_HIGH, 'status': 0xB000, 'move_destination': 'DEST',
        'move_originator_aet': 'MOVER', 'move_originator_message_id': 3,
        'num_of_remaining_sub_ops': 4, 'num_of_completed_sub_ops': 5,
        'num_of_failed_sub_ops': 6, 'num_of_warning_sub_ops': 7, 'event_type_id': 1,
        'action_type_id': 2, 'error_comment': 'odd comment', 'error_id': 9,
        'offending_element': [0x00100010, 0x00100020], 'attribute_identifier_list': [0x00080018],
    }
    for name, value in values.items():
        if isinstance(getattr(cls, name, None), property):
            setattr(msg, name, value)
    return msg


@pytest.mark.parametrize('cls', list(dm.MESSAGE_TYPES.values()), ids=lambda c: c.__name__)
def test_encoding_is_identical_whether_or_not_command_set_was_read(cls):
    untouched, touched = _filled(cls), _filled(cls)
    ds = touched.command_set  # builds the Dataset; from now on it is the command set
    assert _command_bytes(untouched) == _command_bytes(touched)
    assert decode_command(_command_bytes(untouched)) == ds


@pytest.mark.parametrize('cls', list(dm.MESSAGE_TYPES.values()), ids=lambda c: c.__name__)
def test_properties_read_the_same_from_fields_and_from_the_dataset(cls):
    msg = _filled(cls)
    names = [n for n in dir(cls) if isinstance(getattr(cls, n), property) and n != 'command_set']
    before = {n: getattr(msg, n) for n in names}
    msg.command_set  # noqa: B018 - switch to the Dataset
    assert {n: getattr(msg, n) for n in names} == before


def test_setting_properties_after_reading_command_set_changes_that_dataset_and_the_encoding():
    msg = dm.CStoreRSPMessage()
    msg.status = 0
    ds = msg.command_set
    msg.status = 0xA700
    msg.error_comment = 'Out of resources'
    msg.message_id_being_responded_to = 5
    assert msg.command_set is ds
    assert (ds.Status, ds.ErrorComment, ds.MessageIDBeingRespondedTo) == (0xA700, 'Out of resources', 5)
    msg.error_comment = None
    assert 'ErrorComment' not in ds
    decoded = decode_command(_command_bytes(msg))
    assert decoded.Status == 0xA700 and 'ErrorComment' not in decoded


def test_changes_made_to_command_set_directly_are_read_by_properties_and_sent():
    msg = dm.CStoreRSPMessage()
    msg.status = 0xB000
    msg.command_set.ErrorComment = 'elements discarded'
    msg.command_set.MessageIDBeingRespondedTo = 8
    assert msg.error_comment == 'elements discarded'
    assert msg.message_id_being_responded_to == 8
    decoded = decode_command(_command_bytes(msg))
    assert decoded.ErrorComment == 'elements discarded' and decoded.Status == 0xB000


def test_assigning_a_command_set_replaces_the_fields():
    msg = dm.CEchoRQMessage()
    msg.message_id = 1
    other = dm.CEchoRQMessage()
    other.message_id = 99
    msg.command_set = other.command_set
    assert msg.message_id == 99
    assert decode_command(_command_bytes(msg)).MessageID == 99


def test_received_message_reads_its_fields_and_builds_the_dataset_on_demand():
    sent = _filled(dm.CGetRSPMessage)
    data = _command_bytes(sent)
    got = dm.message_from_fields(decode_fields(data))
    assert isinstance(got, dm.CGetRSPMessage)
    assert got.status == 0xB000 and got.status.is_warning
    assert got.num_of_completed_sub_ops == 5 and got.offending_element == [0x00100010, 0x00100020]
    assert got.command_set == decode_command(data)
    got.num_of_remaining_sub_ops = 0  # the Dataset now holds the command set
    assert got.command_set.NumberOfRemainingSuboperations == 0


def test_message_from_fields_refuses_an_unknown_or_missing_command_field():
    with pytest.raises(DIMSEProcessingError):
        dm.message_from_fields({0x0000: 0, 0x0100: 0x4242})
    with pytest.raises(DIMSEProcessingError):
        dm.message_from_fields({0x0000: 0})


def test_an_at_property_set_as_a_group_element_pair_is_one_tag_before_and_after_the_dataset():
    msg = dm.NSetRSPMessage()
    msg.offending_element = (0x0010, 0x0010)
    assert msg.offending_element == 0x00100010
    from_fields = _command_bytes(msg)
    msg.command_set  # noqa: B018
    msg.offending_element = (0x0010, 0x0010)
    assert _command_bytes(msg) == from_fields
    assert decode_command(from_fields).OffendingElement == 0x00100010


def test_is_dataset_recognises_pydicom_datasets_only():
    from dicomdesk.net.dataset_encoding import is_dataset

    assert is_dataset(Dataset())
    assert not is_dataset(b'')
    assert not is_dataset(None)
    assert not is_dataset(io.BytesIO())


def test_streamed_files_reuse_fragment_buffers_once_their_values_are_sent(monkeypatch) -> None:
    """A file streamed after another reads into the buffers the first one used (no
    allocation per fragment), and every fragment still carries its own bytes.

    The pool of spent buffers is process-wide: it starts empty here, or the buffers an earlier
    test left in it (any test streaming with the same PDU size) would all be handed out in
    turn and counted as "new" (the test failed when run after the one below)."""
    import io

    from dicomdesk.net.fragmentation import _file_values

    monkeypatch.setattr(frag, "_SPENT", {})
    max_pdu = 4096 + 12
    first, second = bytes(range(256)) * 40, bytes(reversed(range(256))) * 40
    buffers = set()
    for content in (first, second):
        got = b""
        for value in _file_values(io.BytesIO(content), max_pdu, 0, 2):
            got += bytes(value[1:])
            buffers.add(id(value.obj))
            del value  # sent: nobody keeps the view
        assert got == content
    assert len(buffers) <= 3


def test_a_fragment_someone_keeps_is_never_overwritten() -> None:
    import io

    from dicomdesk.net.fragmentation import _file_values

    content = bytes(range(256)) * 100
    kept = [v for v in _file_values(io.BytesIO(content), 4096 + 12, 0, 2)]
    assert b"".join(bytes(v[1:]) for v in kept) == content


def test_a_file_data_set_goes_as_file_regions_that_encode_to_the_same_pdus(tmp_path) -> None:
    """The storage SCU's data set (a file) becomes ``FileRegion`` values — the DUL sends
    them with ``os.sendfile`` — and the PDUs are byte for byte those of the data in memory."""
    from dicomdesk.net.dimsemessages import CStoreRQMessage
    from dicomdesk.net.fragmentation import FileRegion
    from dicomdesk.net.sopclass.storage_send import _DataSetReader

    data = bytes(range(256)) * 97 + b"\x01"  # odd length, several fragments
    path = tmp_path / "f.bin"
    path.write_bytes(b"HEADER" * 10 + data)
    progress = []

    def message(data_set):
        rq = CStoreRQMessage()
        rq.message_id = 7
        rq.affected_sop_class_uid = "1.2.840.10008.5.1.4.1.1.2"
        rq.affected_sop_instance_uid = "1.2.3.4"
        rq.data_set = data_set
        return rq

    with open(path, "rb") as fp:
        fp.seek(60)
        reader = _DataSetReader(fp, len(data), False, progress.append)
        regions = list(message(reader).encode(1, 4096 + 6))
        assert all(isinstance(p.data_value_items[0].data_value, FileRegion) for p in regions[1:])
        encoded = [p.encode() for p in regions]
    assert encoded == [p.encode() for p in message(data).encode(1, 4096 + 6)]
    assert sum(progress) == len(data)


def _store_rq(data_set):
    rq = dm.CStoreRQMessage()
    rq.message_id = 7
    rq.affected_sop_class_uid = "1.2.840.10008.5.1.4.1.1.2"
    rq.affected_sop_instance_uid = "1.2.3.4"
    rq.data_set = data_set
    return rq


@pytest.mark.parametrize("max_pdu, batch", [(4096 + 6, 1 << 20), (4096 + 6, 10000), (16384, 1 << 20),
                                            (1 << 20, 1 << 20)])
def test_a_file_data_set_goes_as_runs_of_the_same_pdus(tmp_path, max_pdu, batch) -> None:
    """``encode_batches`` hands a file's data set on as ``PDataFileRun``s (one per batch, not
    one object per PDU); their wire bytes are exactly ``encode``'s PDUs, in the same order,
    and the last PDU alone carries the last-fragment flag."""
    from dicomdesk.net.pdu import PDataFileRun
    from dicomdesk.net.sopclass.storage_send import _DataSetReader

    data = bytes(range(256)) * 97 + b"\x01"  # odd length, several fragments
    path = tmp_path / "f.bin"
    path.write_bytes(b"HEADER" * 10 + data)
    message = _store_rq
    progress: list[int] = []
    with open(path, "rb") as fp:
        fp.seek(60)
        reader = _DataSetReader(fp, len(data), False, progress.append)
        batches = list(message(reader).encode_batches(1, max_pdu, batch))
        runs = [item for b in batches for item in b if isinstance(item, PDataFileRun)]
        assert all(sum(isinstance(item, PDataFileRun) for item in b) == 1 for b in batches)
        wire = b"".join(bytes(item) if isinstance(item, PDataFileRun) else item.encode()
                        for b in batches for item in b)
    # the one-PDV-per-PDU form (``encode`` puts a command and a small in-memory data set that
    # fit one PDU together into one; a file's data set always follows its command's PDUs)
    expected = b"".join(
        PDataTfPDU([PresentationDataValueItem(1, bytes((code,)) + chunk)]).encode()
        for payload, more, last in ((message(data).set_length(), frag.COMMAND_FRAGMENT, frag.LAST_COMMAND_FRAGMENT),
                                    (data, frag.DATA_FRAGMENT, frag.LAST_DATA_FRAGMENT))
        for chunk, code in dm.fragment(payload, max_pdu, more, last))
    assert wire == expected
    per_batch = max(1, batch // (max_pdu - 6)) * (max_pdu - 6)
    assert len(runs) == len(batches) == -(-len(data) // per_batch)
    assert sum(progress) == len(data)
    # without runs (a trace shows each PDU): the same bytes, one PDataTfPDU per fragment
    with open(path, "rb") as fp:
        fp.seek(60)
        reader = _DataSetReader(fp, len(data), False, None)
        plain = [p for b in message(reader).encode_batches(1, max_pdu, batch, runs=False) for p in b]
        assert all(isinstance(p, PDataTfPDU) for p in plain)
        assert b"".join(p.encode() for p in plain) == wire


def test_an_empty_file_data_set_is_one_last_fragment(tmp_path) -> None:
    from dicomdesk.net.pdu import PDataFileRun
    from dicomdesk.net.sopclass.storage_send import _DataSetReader

    path = tmp_path / "f.bin"
    path.write_bytes(b"HEADER")
    with open(path, "rb") as fp:
        fp.seek(6)
        rq = _store_rq(_DataSetReader(fp, 0, False, None))
        (batch,) = list(rq.encode_batches(1, 16384, 1 << 20))
        run = batch[-1]
        assert isinstance(run, PDataFileRun) and run.count == 1
        assert bytes(run) == PDataTfPDU([PresentationDataValueItem(1, b"\x02")]).encode()
