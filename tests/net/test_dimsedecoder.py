"""dimsedecoder: reassembly of DIMSE messages from P-DATA-TF PDUs (PS3.8 Annex E)."""

from __future__ import annotations

import io
import zlib
from collections import namedtuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dicomdesk.net import dimsemessages as dm
from dicomdesk.net import uids
from dicomdesk.net.dimsedecoder import DIMSEDecoder
from dicomdesk.net.exceptions import DIMSEProcessingError
from dicomdesk.net.pdu import PDataTfPDU, PresentationDataValueItem

PContextDef = namedtuple('PContextDef', 'id sop_class supported_ts')

CT = uids.CT_IMAGE_STORAGE
CONTEXTS = {
    1: PContextDef(1, uids.VERIFICATION_SOP_CLASS, uids.IMPLICIT_VR_LITTLE_ENDIAN),
    3: PContextDef(3, CT, uids.EXPLICIT_VR_LITTLE_ENDIAN),
    5: PContextDef(5, uids.STUDY_ROOT_FIND_SOP_CLASS, uids.IMPLICIT_VR_LITTLE_ENDIAN),
    7: PContextDef(7, uids.STUDY_ROOT_FIND_SOP_CLASS, uids.EXPLICIT_VR_BIG_ENDIAN),
    9: PContextDef(9, uids.STUDY_ROOT_FIND_SOP_CLASS, uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN),
    11: PContextDef(11, uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS,
                    uids.EXPLICIT_VR_LITTLE_ENDIAN),
}


def encode_ds(ds: Dataset, transfer_syntax: str) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = transfer_syntax == uids.IMPLICIT_VR_LITTLE_ENDIAN
    fp.is_little_endian = transfer_syntax != uids.EXPLICIT_VR_BIG_ENDIAN
    write_dataset(fp, ds)
    raw = fp.getvalue()
    if transfer_syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        raw = compressor.compress(raw) + compressor.flush()
    return raw


def identifier() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = 'STUDY'
    ds.PatientName = 'Doe^Jane'
    ds.StudyInstanceUID = '1.2.3.4.5'
    ds.ModalitiesInStudy = ['CT', 'MR']
    return ds


def decoder(store_in_file=(), get_file_cb=None) -> DIMSEDecoder:
    return DIMSEDecoder(CONTEXTS, set(store_in_file), get_file_cb)


def feed(dec: DIMSEDecoder, pdus, wire=True):
    """Feed PDUs (through their wire encoding when ``wire``); return the completed messages."""
    out = []
    for pdu in pdus:
        if wire:
            pdu = PDataTfPDU.decode(pdu.encode())
        out.extend(dec.process(pdu))
    return out


def pdv(pc_id, header, payload=b''):
    return PresentationDataValueItem(pc_id, bytes([header]) + payload)


def message(cls, **props):
    msg = cls()
    for name, value in props.items():
        setattr(msg, name, value)
    return msg


ALL_MESSAGES = [
    (1, message(dm.CEchoRQMessage, message_id=1, sop_class_uid=uids.VERIFICATION_SOP_CLASS)),
    (1, message(dm.CEchoRSPMessage, message_id_being_responded_to=1, status=0,
                sop_class_uid=uids.VERIFICATION_SOP_CLASS)),
    (3, message(dm.CStoreRQMessage, message_id=2, sop_class_uid=CT, priority=1,
                affected_sop_instance_uid='1.2.3.4.5.6.7', move_originator_aet='MOVER',
                move_originator_message_id=9)),
    (3, message(dm.CStoreRSPMessage, message_id_being_responded_to=2, status=0xA700,
                affected_sop_instance_uid='1.2.3', error_comment='full', sop_class_uid=CT)),
    (5, message(dm.CFindRQMessage, message_id=3, sop_class_uid=CONTEXTS[5].sop_class)),
    (5, message(dm.CFindRSPMessage, message_id_being_responded_to=3, status=0xFF00)),
    (5, message(dm.CGetRQMessage, message_id=4)),
    (5, message(dm.CGetRSPMessage, message_id_being_responded_to=4, status=0xFF00,
                num_of_remaining_sub_ops=3, num_of_completed_sub_ops=1,
                num_of_failed_sub_ops=0, num_of_warning_sub_ops=0)),
    (5, message(dm.CMoveRQMessage, message_id=5, move_destination='DEST')),
    (5, message(dm.CMoveRSPMessage, message_id_being_responded_to=5, status=0xB000,
                num_of_failed_sub_ops=2)),
    (5, message(dm.CCancelRQMessage, message_id_being_responded_to=5)),
    (11, message(dm.NEventReportRQMessage, message_id=6, event_type_id=1,
                 affected_sop_instance_uid='1.2.840.10008.1.20.1.1')),
    (11, message(dm.NEventReportRSPMessage, message_id_being_responded_to=6, status=0,
                 event_type_id=1)),
    (11, message(dm.NGetRQMessage, message_id=7, requested_sop_instance_uid='1.2.9',
                 attribute_identifier_list=[0x00080016, 0x00100010])),
    (11, message(dm.NGetRSPMessage, message_id_being_responded_to=7, status=0x0107,
                 affected_sop_instance_uid='1.2.9')),
    (11, message(dm.NSetRQMessage, message_id=8, requested_sop_instance_uid='1.2.9')),
    (11, message(dm.NSetRSPMessage, message_id_being_responded_to=8, status=0)),
    (11, message(dm.NActionRQMessage, message_id=9, action_type_id=1,
                 requested_sop_instance_uid='1.2.840.10008.1.20.1.1')),
    (11, message(dm.NActionRSPMessage, message_id_being_responded_to=9, status=0,
                 action_type_id=1)),
    (11, message(dm.NCreateRQMessage, message_id=10, affected_sop_instance_uid='1.2.10')),
    (11, message(dm.NCreateRSPMessage, message_id_being_responded_to=10, status=0x0111)),
    (11, message(dm.NDeleteRQMessage, message_id=11, requested_sop_instance_uid='1.2.11')),
    (11, message(dm.NDeleteRSPMessage, message_id_being_responded_to=11, status=0x0112)),
]


@pytest.mark.parametrize('max_pdu', [0, 16, 4096])
@pytest.mark.parametrize('index', range(len(ALL_MESSAGES)),
                         ids=[type(m).__name__ for _, m in ALL_MESSAGES])
def test_every_message_class_round_trips_through_p_data_tf_pdus(index, max_pdu):
    pc_id, msg = ALL_MESSAGES[index]
    dec = decoder()
    pdus = list(msg.encode(pc_id, max_pdu))
    done = feed(dec, pdus)
    assert len(done) == 1
    got, got_pc = done[0]
    assert got_pc == pc_id
    assert type(got) is type(msg)
    # what was sent: the fields set, not the empty ones a fresh message lists (not sent)
    sent = Dataset()
    for elem in msg.command_set:
        if not elem.is_empty:
            sent.add(elem)
    assert got.command_set == sent
    assert got.data_set is None
    assert not dec.receiving


@pytest.mark.parametrize('pc_id', [5, 7, 9])
@pytest.mark.parametrize('max_pdu', [0, 64, 4096])
def test_data_set_is_decoded_in_the_contexts_transfer_syntax(pc_id, max_pdu):
    msg = message(dm.CFindRQMessage, message_id=1)
    msg.data_set = encode_ds(identifier(), CONTEXTS[pc_id].supported_ts)
    ((got, got_pc),) = feed(decoder(), msg.encode(pc_id, max_pdu))
    assert got_pc == pc_id
    assert isinstance(got.data_set, Dataset)
    assert got.data_set == identifier()
    assert got.data_set_error is None


def test_big_data_set_reassembled_from_4096_byte_pdus():
    ds = identifier()
    ds.PixelData = bytes(i % 256 for i in range(100_000))
    ds['PixelData'].VR = 'OB'
    msg = message(dm.CStoreRQMessage, message_id=1, sop_class_uid=CT,
                  affected_sop_instance_uid='1.2.3')
    msg.data_set = encode_ds(ds, CONTEXTS[3].supported_ts)
    pdus = list(msg.encode(3, 4096))
    assert len(pdus) > 20
    dec = decoder()
    results = [dec.process(PDataTfPDU.decode(p.encode())) for p in pdus]
    assert all(r == [] for r in results[:-1]) and dec.receiving is False
    ((got, _),) = results[-1]
    assert got.data_set.PixelData == ds.PixelData


def _values(msg, pc_id, max_pdu=0):
    return [item for p in msg.encode(pc_id, max_pdu) for item in p.data_value_items]


def test_command_and_data_in_one_pdu():
    msg = message(dm.CFindRSPMessage, message_id_being_responded_to=1, status=0xFF00)
    msg.data_set = encode_ds(identifier(), uids.IMPLICIT_VR_LITTLE_ENDIAN)
    ((got, pc_id),) = decoder().process(PDataTfPDU(_values(msg, 5)))
    assert pc_id == 5 and got.data_set == identifier()
    assert got.status.is_pending


def test_two_messages_in_one_pdu_are_both_returned_in_order():
    first = message(dm.CEchoRQMessage, message_id=1)
    second = message(dm.CFindRQMessage, message_id=2)
    second.data_set = encode_ds(identifier(), uids.IMPLICIT_VR_LITTLE_ENDIAN)
    pdu = PDataTfPDU(_values(first, 1) + _values(second, 5))
    done = feed(decoder(), [pdu])
    assert [(type(m), pc) for m, pc in done] == [(dm.CEchoRQMessage, 1), (dm.CFindRQMessage, 5)]
    assert done[1][0].message_id == 2


def test_store_in_file_writes_fragments_to_the_callbacks_file():
    payload = bytes(i % 199 for i in range(50_000))
    calls = []
    sink = io.BytesIO()
    sink.write(b'HEADER')

    def get_file(context, command_set):
        calls.append((context, command_set.AffectedSOPInstanceUID))
        return sink, 6

    msg = message(dm.CStoreRQMessage, message_id=1, sop_class_uid=CT,
                  affected_sop_instance_uid='1.2.3')
    msg.data_set = payload
    dec = decoder(store_in_file={CT}, get_file_cb=get_file)
    ((got, _),) = feed(dec, msg.encode(3, 4096))
    assert calls == [(CONTEXTS[3], '1.2.3')]
    assert got.data_set is sink and sink.tell() == 6
    assert sink.read() == payload
    assert got.data_set_error is None


def test_store_in_file_is_not_used_for_other_sop_classes():
    def get_file(context, command_set):
        raise AssertionError('not for this class')

    msg = message(dm.CFindRQMessage, message_id=1)
    msg.data_set = encode_ds(identifier(), uids.IMPLICIT_VR_LITTLE_ENDIAN)
    ((got, _),) = feed(decoder(store_in_file={CT}, get_file_cb=get_file), msg.encode(5, 0))
    assert got.data_set == identifier()


class FullDisk(io.BytesIO):
    def write(self, data):
        raise OSError(28, 'No space left on device')


def test_write_failure_is_reported_on_the_message_not_raised():
    msg = message(dm.CStoreRQMessage, message_id=1, affected_sop_instance_uid='1.2.3')
    msg.data_set = bytes(10_000)
    sink = FullDisk()
    dec = decoder(store_in_file={CT}, get_file_cb=lambda c, cs: (sink, 0))
    ((got, _),) = feed(dec, msg.encode(3, 4096))
    assert 'No space left' in got.data_set_error
    assert not dec.receiving


def test_failure_to_open_the_file_is_reported_on_the_message():
    def get_file(context, command_set):
        raise PermissionError(13, 'Permission denied')

    msg = message(dm.CStoreRQMessage, message_id=1, affected_sop_instance_uid='1.2.3')
    msg.data_set = bytes(100)
    dec = decoder(store_in_file={CT}, get_file_cb=get_file)
    ((got, _),) = feed(dec, msg.encode(3, 4096))
    assert got.data_set is None and 'Permission denied' in got.data_set_error


@pytest.mark.parametrize('raw', [
    b'\x08\x00\x20\x00DA\x10\x00',  # explicit VR element whose value is missing
    b'\x08\x00\x20\x00DA\x02\x00ab\x01\x02',  # trailing bytes after the last element
    b'\xff\xfe\xfd',  # no element at all
    b'\x08\x00\x20\x00ZZ\x02\x00ab',  # unknown VR
], ids=['truncated', 'trailing', 'garbage', 'unknown-vr'])
def test_undecodable_data_set_is_kept_raw_with_the_reason(raw):
    msg = message(dm.CStoreRQMessage, message_id=1, affected_sop_instance_uid='1.2.3')
    msg.data_set = raw
    ((got, _),) = feed(decoder(), msg.encode(3, 0))
    assert got.data_set == raw
    assert got.data_set_error


def test_corrupt_deflated_data_set_is_kept_raw_with_the_reason():
    msg = message(dm.CFindRQMessage, message_id=1)
    msg.data_set = b'\xff\xfe not deflate'
    ((got, _),) = feed(decoder(), msg.encode(9, 0))
    assert got.data_set == b'\xff\xfe not deflate' and got.data_set_error


def _command(cls=dm.CEchoRQMessage, with_data=False, **props):
    msg = message(cls, **props)
    if with_data:
        msg.data_set = b''
    return bytes(msg.set_length())


@pytest.mark.parametrize('pdvs, why', [
    ([pdv(2, 3, _command())], 'context not accepted'),
    ([pdv(1, 2, b'\x00' * 8)], 'data before command'),
    ([pdv(1, 1, _command()[:10]), pdv(1, 0, b'xx')], 'data while the command is incomplete'),
    ([pdv(5, 3, _command(dm.CFindRQMessage, True)), pdv(5, 3, _command())],
     'second command while the data set is expected'),
    ([pdv(1, 1, _command()[:10]), pdv(5, 3, _command()[10:])], 'mixed contexts in a command'),
    ([pdv(5, 3, _command(dm.CFindRQMessage, True)), pdv(1, 2, b'')], 'mixed contexts in data'),
    ([pdv(1, 3, _command()), pdv(1, 2, b'')], 'data when the command says none'),
    ([pdv(1, 3, b'\x00\x00\x00\x00\x04\x00\x00\x00\x0a\x00\x00\x00'
      b'\x00\x00\x00\x01\x02\x00\x00\x00\x42\x42')], 'unknown command field'),
    ([pdv(1, 3, b'\x00\x00\x00\x00\x04\x00\x00')], 'undecodable command'),
    ([PresentationDataValueItem(1, b'')], 'no message control header'),
])
def test_protocol_violations_raise_dimse_processing_error(pdvs, why):
    dec = decoder()
    with pytest.raises(DIMSEProcessingError):
        for item in pdvs:
            dec.process(PDataTfPDU([item]))


def test_decoder_is_ready_for_the_next_message_after_one_completes():
    dec = decoder()
    for message_id in (1, 2, 3):
        ((got, _),) = feed(dec, message(dm.CEchoRQMessage, message_id=message_id).encode(1, 0))
        assert got.message_id == message_id
    assert not dec.receiving and not dec.command_set_received and dec.msg is None


def test_partial_message_state_is_visible():
    dec = decoder()
    msg = message(dm.CFindRQMessage, message_id=1)
    msg.data_set = encode_ds(identifier(), uids.IMPLICIT_VR_LITTLE_ENDIAN)
    values = _values(msg, 5)
    assert dec.process(PDataTfPDU(values[:1])) == []
    assert dec.receiving and dec.command_set_received and dec.pc_id == 5
    assert isinstance(dec.msg, dm.CFindRQMessage) and not dec.data_set_received


pdv_items = st.builds(
    PresentationDataValueItem,
    st.sampled_from([1, 2, 5, 9]),
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([bytes([3]) + _command(), bytes([1]) + _command()[:9],
                         bytes([3]) + _command(dm.CFindRQMessage, True), b'\x02', b'\x00abc',
                         bytes([2]) + b'x\x9c\x03\x00']),
    ),
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.lists(st.lists(pdv_items, min_size=1, max_size=4), max_size=6))
def test_any_pdv_sequence_yields_messages_or_raises_dimse_processing_error(pdus):
    dec = decoder()
    try:
        for items in pdus:
            for msg, pc_id in dec.process(PDataTfPDU(items)):
                assert isinstance(msg, dm.DIMSEMessage) and pc_id in CONTEXTS
    except DIMSEProcessingError:
        pass


def test_command_set_that_never_ends_is_refused_once_it_passes_64_kib():
    from dicomdesk.net import pdu as pdu_module
    from dicomdesk.net.dimsedecoder import MAX_COMMAND_SET_LENGTH, DIMSEDecoder
    from dicomdesk.net.exceptions import DIMSEProcessingError

    ctx = namedtuple("Ctx", "id sop_class supported_ts")(1, "1.2.840.10008.1.1", "1.2.840.10008.1.2")
    decoder = DIMSEDecoder({1: ctx}, set(), None)
    chunk = b"\x01" + b"\x00" * 16384  # command fragment, not last
    with pytest.raises(DIMSEProcessingError):
        for _ in range(MAX_COMMAND_SET_LENGTH // 16384 + 2):
            decoder.process(pdu_module.PDataTfPDU([pdu_module.PresentationDataValueItem(1, chunk)]))
