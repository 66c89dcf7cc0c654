"""Property tests: every decoder of the upper layer, fed any bytes, returns an object or
raises PDUProcessingError, and nothing else (docs/internals.md, PS3.8 9.3.8)."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomdesk.net import pdu, userdataitems
from dicomdesk.net.exceptions import PDUProcessingError
from dicomdesk.net.pdu import PDUFramer, UserInformationItem, decode_pdu

FUZZ = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
GOLDEN = sorted((Path(__file__).parent.parent / "data" / "pdus").glob("*.bin"))
GOLDEN_BYTES = [path.read_bytes() for path in GOLDEN]

PDU_CLASSES = list(pdu.PDU_TYPES.values())
ITEM_CLASSES = [pdu.ApplicationContextItem, pdu.PresentationContextItemRQ, pdu.PresentationContextItemAC,
                pdu.AbstractSyntaxSubItem, pdu.TransferSyntaxSubItem, pdu.UserInformationItem,
                pdu.PresentationDataValueItem, *userdataitems.SUB_ITEM_TYPES.values(),
                userdataitems.GenericUserDataSubItem]


def decodes_or_refuses(decode, data) -> None:
    try:
        decode(data)
    except PDUProcessingError as error:
        assert error.source == 2
        assert error.reason in (1, 4, 5, 6)


def with_valid_header(pdu_type: int, body: bytes) -> bytes:
    return bytes((pdu_type, 0)) + len(body).to_bytes(4, "big") + body


@FUZZ
@given(st.binary(max_size=600))
def test_decode_pdu_on_any_bytes_returns_or_refuses(data):
    decodes_or_refuses(decode_pdu, data)


@FUZZ
@given(st.sampled_from(PDU_CLASSES), st.binary(max_size=400))
def test_each_pdu_class_on_a_well_framed_random_body_returns_or_refuses(cls, body):
    decodes_or_refuses(cls.decode, with_valid_header(cls.pdu_type, body))


@FUZZ
@given(st.sampled_from(ITEM_CLASSES), st.binary(max_size=300), st.booleans())
def test_each_item_decode_on_any_stream_returns_or_refuses(cls, data, fix_type):
    if fix_type and data and hasattr(cls, "item_type") and isinstance(cls.item_type, int):
        data = bytes((cls.item_type,)) + data[1:]
    decodes_or_refuses(lambda raw: cls.decode(io.BytesIO(raw)), data)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(sorted(userdataitems.SUB_ITEM_TYPES) + [0x5A]),
                          st.binary(max_size=40)), max_size=6), st.binary(max_size=8))
def test_user_information_sub_items_on_random_items_returns_or_refuses(items, tail):
    raw = b"".join(bytes((t, 0)) + len(b).to_bytes(2, "big") + b for t, b in items) + tail
    decodes_or_refuses(lambda data: list(UserInformationItem.sub_items(io.BytesIO(data))), raw)


@FUZZ
@given(st.sampled_from(range(len(GOLDEN_BYTES))), st.integers(min_value=0), st.integers(0, 255))
def test_valid_pdu_with_one_byte_changed_returns_or_refuses(index, position, value):
    raw = bytearray(GOLDEN_BYTES[index])
    raw[position % len(raw)] = value
    decodes_or_refuses(decode_pdu, bytes(raw))


@FUZZ
@given(st.sampled_from(range(len(GOLDEN_BYTES))), st.integers(min_value=0), st.integers(-3, 3))
def test_valid_pdu_truncated_or_extended_returns_or_refuses(index, position, delta):
    raw = GOLDEN_BYTES[index]
    cut = position % (len(raw) + 1)
    decodes_or_refuses(decode_pdu, raw[:cut] + bytes(max(delta, 0)))


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=20), st.sampled_from([0, 16, 16384]))
def test_framer_on_random_chunks_returns_pdus_or_refuses(chunks, max_pdu_length):
    framer = PDUFramer(max_pdu_length)

    def run(_):
        for chunk in chunks:
            framer.feed(chunk)
            while (raw := framer.next_pdu()) is not None:
                decodes_or_refuses(decode_pdu, raw)

    decodes_or_refuses(run, None)


@FUZZ
@given(st.lists(st.integers(1, 97), min_size=1, max_size=60))
def test_framer_reassembles_golden_pdus_for_any_chunking(sizes):
    stream = b"".join(GOLDEN_BYTES)
    framer = PDUFramer(0)
    out = []
    position = 0
    index = 0
    while position < len(stream):
        size = sizes[index % len(sizes)]
        framer.feed(stream[position:position + size])
        position += size
        index += 1
        while (raw := framer.next_pdu()) is not None:
            out.append(raw)
    assert out == GOLDEN_BYTES
