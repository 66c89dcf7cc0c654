"""What a peer announces or proposes cannot make ``dicomdesk serve`` misbehave (issue 11).

* a tiny Maximum Length Received (7 bytes) gets PDUs of up to 4096 bytes (DCMTK's floor), not
  one-byte PDVs (item 7, docs/conformance.md);
* an A-ASSOCIATE-RQ with no presentation context, more than 128, or duplicate context IDs is
  rejected (PS3.8 9.3.2, 9.3.2.2) instead of being answered with an empty or ambiguous AC.
"""

from __future__ import annotations


import pytest

from dicomdesk.net import pdu, uids

from serving import (
    CT_IMAGE_STORAGE,
    ServeProcess,
    associate_rq,
    command_bytes,
    connect,
    echo_ok,
    echo_rq,
    p_data,
    read_pdu,
)

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServeProcess(tmp_path_factory.mktemp("limits") / "storage") as proc:
        yield proc


def _rj_fields(answer: bytes) -> tuple[int, int, int]:
    assert answer[:1] == b"\x03", f"expected A-ASSOCIATE-RJ, got {answer[:10]!r}"
    rj = pdu.AAssociateRjPDU.decode(answer[:10])
    return rj.result, rj.source, rj.reason_diag


def test_a_peer_announcing_a_seven_byte_maximum_pdu_gets_one_pdu_per_echo_response(server):
    with connect(server.port) as sock:
        sock.sendall(associate_rq(max_pdu=7))
        assert read_pdu(sock)[:1] == b"\x02"
        sock.sendall(p_data(1, command_bytes(echo_rq()), command=True, last=True))
        pdus = []
        while True:
            raw = read_pdu(sock)
            assert raw[:1] == b"\x04", raw[:10]
            pdus.append(raw)
            items = pdu.PDataTfPDU.decode(raw).data_value_items
            if items[-1].is_command and items[-1].is_last:
                break
            assert len(pdus) < 100
        assert len(pdus) == 1, f"{len(pdus)} PDUs for one C-ECHO response"
        assert len(pdus[0]) <= 4096  # MIN_SEND_PDU_LENGTH, as DCMTK
        sock.sendall(pdu.AReleaseRqPDU().encode())
        assert read_pdu(sock)[:1] == b"\x06"
    echo_ok(server.port)


def _rq_with_contexts(contexts) -> bytes:
    return associate_rq(contexts=contexts)


@pytest.mark.parametrize("contexts", [
    pytest.param((), id="no-context"),
    pytest.param(tuple((i, uids.VERIFICATION_SOP_CLASS) for i in range(1, 256, 2))
                 + ((1, CT_IMAGE_STORAGE),), id="129-contexts"),
    pytest.param(((1, uids.VERIFICATION_SOP_CLASS), (1, CT_IMAGE_STORAGE)), id="duplicate-id"),
])
def test_a_request_without_valid_presentation_contexts_is_rejected(server, contexts):
    with connect(server.port) as sock:
        sock.sendall(_rq_with_contexts(contexts))
        answer = read_pdu(sock)
    assert _rj_fields(answer) == (1, 2, 1)  # rejected-permanent, ACSE, no reason given
    echo_ok(server.port)


def test_one_hundred_twenty_eight_distinct_contexts_are_still_accepted(server):
    contexts = tuple((i, uids.VERIFICATION_SOP_CLASS) for i in range(1, 256, 2))
    with connect(server.port) as sock:
        sock.sendall(_rq_with_contexts(contexts))
        answer = read_pdu(sock)
        assert answer[:1] == b"\x02"
        ac = pdu.AAssociateAcPDU.decode(answer)
        ids = [i.context_id for i in ac.variable_items if getattr(i, "item_type", None) == 0x21]
        assert ids == [c[0] for c in contexts]
        sock.sendall(pdu.AReleaseRqPDU().encode())
        assert read_pdu(sock)[:1] == b"\x06"
