"""Property tests beyond tests/net: whole DIMSE messages cut into P-DATA fragments at any
boundary and damaged at any byte, every user-information sub-item fed any body, and the memory
one decoding costs. Each decoder returns a value or raises PDUProcessingError /
DIMSEProcessingError (PS3.8 9.3.1, Annex E; PS3.7 6.3.1) — nothing else, never hangs."""

from __future__ import annotations

import io
import tracemalloc
from collections import namedtuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from dicomdesk.net import dimsemessages as dm
from dicomdesk.net import uids, userdataitems
from dicomdesk.net.commandset import decode_command
from dicomdesk.net.dataset_encoding import encode_data_set
from dicomdesk.net.dimsedecoder import DIMSEDecoder
from dicomdesk.net.exceptions import DIMSEProcessingError, PDUProcessingError
from dicomdesk.net.pdu import PDataTfPDU, PresentationDataValueItem, UserInformationItem

FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

Ctx = namedtuple("Ctx", "id sop_class supported_ts")
CT = "1.2.840.10008.5.1.4.1.1.2"
CONTEXTS = {1: Ctx(1, uids.VERIFICATION_SOP_CLASS, uids.IMPLICIT_VR_LITTLE_ENDIAN),
            3: Ctx(3, CT, uids.EXPLICIT_VR_LITTLE_ENDIAN),
            5: Ctx(5, uids.STUDY_ROOT_FIND_SOP_CLASS, uids.IMPLICIT_VR_LITTLE_ENDIAN),
            7: Ctx(7, uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS, uids.EXPLICIT_VR_LITTLE_ENDIAN)}


def _identifier() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Doe^Jane"
    ds.StudyInstanceUID = "1.2.3.4.5"
    return ds


def _messages() -> list[tuple[int, bytes, bytes | None]]:
    """(pc_id, command bytes, data set bytes) of a few real requests."""
    echo = dm.CEchoRQMessage()
    echo.message_id = 1
    echo.affected_sop_class_uid = uids.VERIFICATION_SOP_CLASS
    store = dm.CStoreRQMessage()
    store.message_id = 2
    store.affected_sop_class_uid = CT
    store.affected_sop_instance_uid = "1.2.3.4.5.6"
    store.priority = 0
    ds = _identifier()
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.add_new(0x7FE00010, "OB", bytes(range(256)) * 8)
    store.data_set = encode_data_set(ds, uids.EXPLICIT_VR_LITTLE_ENDIAN)
    find = dm.CFindRQMessage()
    find.message_id = 3
    find.affected_sop_class_uid = uids.STUDY_ROOT_FIND_SOP_CLASS
    find.priority = 0
    find.data_set = encode_data_set(_identifier(), uids.IMPLICIT_VR_LITTLE_ENDIAN)
    action = dm.NActionRQMessage()
    action.message_id = 4
    action.requested_sop_class_uid = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS
    action.requested_sop_instance_uid = "1.2.840.10008.1.20.1.1"
    action.action_type_id = 1
    action.data_set = b"\x08\x00\x55\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    result = []
    for pc_id, msg in ((1, echo), (3, store), (5, find), (7, action)):
        data = msg.data_set
        result.append((pc_id, msg.set_length(), data))
    return result


MESSAGES = _messages()


def _fragments(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts} - {0, len(raw)})
    pieces, start = [], 0
    for point in points:
        pieces.append(raw[start:point])
        start = point
    pieces.append(raw[start:])
    return [p for p in pieces if p] or [raw]


def _pdvs(pc_id: int, raw: bytes, cuts: list[int], command: bool) -> list[PresentationDataValueItem]:
    pieces = _fragments(raw, cuts)
    return [PresentationDataValueItem(pc_id, bytes(((1 if command else 0) | (2 if i == len(pieces) - 1 else 0),))
                                      + piece) for i, piece in enumerate(pieces)]


class _Files:
    """get_file_cb of a store_in_file decoder: in-memory files, kept to be checked."""

    def __init__(self):
        self.opened: list[io.BytesIO] = []

    def __call__(self, context, command_set):
        fp = io.BytesIO()
        self.opened.append(fp)
        return fp, 0


def _run(decoder: DIMSEDecoder, pdus: list[list[PresentationDataValueItem]]) -> list:
    out = []
    try:
        for items in pdus:
            out.extend(decoder.process(PDataTfPDU(items)))
    except DIMSEProcessingError as exc:
        assert exc.source == 2
    return out


@FUZZ
@given(st.sampled_from(range(len(MESSAGES))), st.lists(st.integers(0, 5000), max_size=12),
       st.lists(st.integers(0, 5000), max_size=12), st.integers(1, 4))
def test_a_message_cut_at_any_fragment_boundaries_is_reassembled_exactly(index, cmd_cuts, data_cuts, per_pdu):
    pc_id, command, data = MESSAGES[index]
    items = _pdvs(pc_id, command, cmd_cuts, True)
    if data is not None:
        items += _pdvs(pc_id, data, data_cuts, False)
    pdus = [items[i:i + per_pdu] for i in range(0, len(items), per_pdu)]
    files = _Files()
    done = _run(DIMSEDecoder(CONTEXTS, {CT}, files), pdus)
    assert len(done) == 1
    msg, got_pc = done[0]
    assert got_pc == pc_id
    assert msg.command_set == decode_command(command)
    if pc_id == 3:  # store_in_file: the fragments went to the file, byte for byte
        assert files.opened[0].getvalue() == data and msg.data_set is files.opened[0]
    assert msg.data_set_error is None or pc_id == 7  # the N-ACTION data set here is deliberately odd


@FUZZ
@given(st.sampled_from(range(len(MESSAGES))), st.lists(st.integers(0, 5000), max_size=8),
       st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_a_message_damaged_at_any_byte_decodes_or_raises_dimse_processing_error(index, cuts, where, value,
                                                                                 in_command):
    pc_id, command, data = MESSAGES[index]
    if in_command or data is None:
        command = bytearray(command)
        command[where % len(command)] = value
        command = bytes(command)
    else:
        data = bytearray(data)
        data[where % len(data)] = value
        data = bytes(data)
    items = _pdvs(pc_id, command, cuts, True) + (_pdvs(pc_id, data, cuts, False) if data else [])
    for msg, got_pc in _run(DIMSEDecoder(CONTEXTS, {CT}, _Files()), [items]):
        assert isinstance(msg, dm.DIMSEMessage) and got_pc in CONTEXTS


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([1, 3, 5, 7]), st.integers(0, 3), st.binary(max_size=300)),
                max_size=40))
def test_decoding_costs_memory_proportional_to_the_bytes_fed(pdvs):
    fed = sum(len(b) + 1 for _, _, b in pdvs)
    decoder = DIMSEDecoder(CONTEXTS, {CT}, _Files())
    tracemalloc.start()
    try:
        for pc_id, header, body in pdvs:
            try:
                decoder.process(PDataTfPDU([PresentationDataValueItem(pc_id, bytes((header,)) + body)]))
            except DIMSEProcessingError:
                decoder = DIMSEDecoder(CONTEXTS, {CT}, _Files())  # the association would be aborted
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * fed + 2 * 1024 * 1024


SUB_ITEM_CLASSES = sorted(userdataitems.SUB_ITEM_TYPES.items())


@FUZZ
@given(st.sampled_from(SUB_ITEM_CLASSES), st.binary(max_size=200), st.integers(-3, 3))
def test_each_sub_item_with_any_body_and_a_wrong_length_decodes_or_refuses(entry, body, skew):
    item_type, cls = entry
    length = max(0, len(body) + skew)
    raw = bytes((item_type, 0)) + min(length, 0xFFFF).to_bytes(2, "big") + body
    try:
        item = cls.decode(io.BytesIO(raw))
    except PDUProcessingError as exc:
        assert exc.source == 2 and exc.reason in (1, 4, 5, 6)
    else:
        assert item.item_type == item_type


@FUZZ
@given(st.lists(st.sampled_from(SUB_ITEM_CLASSES), max_size=8), st.data())
def test_user_information_of_any_sub_item_mix_decodes_or_refuses(classes, data):
    body = b""
    for item_type, _ in classes:
        value = data.draw(st.binary(max_size=60))
        body += bytes((item_type, 0)) + len(value).to_bytes(2, "big") + value
    raw = b"\x50\x00" + len(body).to_bytes(2, "big") + body
    try:
        item = UserInformationItem.decode(io.BytesIO(raw))
    except PDUProcessingError as exc:
        assert exc.source == 2
    else:
        assert len(item.user_data) == len(classes)
