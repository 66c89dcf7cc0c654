"""Malformed DIMSE command sets against ``dicomdesk serve`` (a real process, raw sockets).

A C-STORE that carries no data set is not acknowledged as kept (PS3.4 B.2.3: a C-STORE-RQ
always has one), and a command set the services cannot use ends its association with an
A-ABORT that the server also reports as the association's end, like any other abort.
"""

from __future__ import annotations

import pytest

from dicomdesk.net import uids
from dicomdesk.net.commandset import encode_fields

from serving import (
    CT_IMAGE_STORAGE,
    RawAssociation,
    ServeProcess,
    archive_state,
    echo_ok,
    encode_dataset,
    make_dataset,
    p_data,
    read_all,
    wait_until,
)

pytestmark = pytest.mark.interop

CONTEXTS = ((1, uids.VERIFICATION_SOP_CLASS), (3, CT_IMAGE_STORAGE))
C_STORE_RQ, NO_DATA_SET, DATA_SET = 0x0001, 0x0101, 0x0000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("dimse-abuse")
    with ServeProcess(root / "storage") as proc:
        yield proc


@pytest.fixture
def hostile(server):
    yield server
    assert server.alive(), server.log()[-3000:]
    echo_ok(server.port)
    assert not archive_state(server.storage)[2], "a temp file was left in .incoming"


def test_c_store_without_a_data_set_is_not_acknowledged(hostile):
    raw = RawAssociation(hostile.port, CONTEXTS)
    raw.sock.sendall(p_data(3, encode_fields({
        0x0002: CT_IMAGE_STORAGE, 0x0100: C_STORE_RQ, 0x0110: 1, 0x0700: 0,
        0x0800: NO_DATA_SET, 0x1000: "1.2.826.0.1.3680043.8.498.90"}), command=True, last=True))
    rsp = raw.receive_message()
    raw.release()
    status = int(rsp.Status)
    # Success (0000) or a warning (B000, B006, B007) tells the sender the object was kept
    assert status >> 12 in (0xA, 0xC), f"C-STORE without a data set answered 0x{status:04X}"
    assert rsp.get("ErrorComment")
    files, rows, _ = archive_state(hostile.storage)
    assert "1.2.826.0.1.3680043.8.498.90" not in files | rows


@pytest.mark.parametrize("missing", [0x0002, 0x1000])
def test_c_store_command_without_a_required_uid_is_aborted_and_reported_ended(hostile, missing):
    uid = f"1.2.826.0.1.3680043.8.498.91{missing}"
    fields = {0x0002: CT_IMAGE_STORAGE, 0x0100: C_STORE_RQ, 0x0110: 1, 0x0700: 0,
              0x0800: DATA_SET, 0x1000: uid}
    del fields[missing]
    raw = RawAssociation(hostile.port, CONTEXTS, calling=f"NOUID{missing:04X}")
    raw.sock.sendall(p_data(3, encode_fields(fields), command=True, last=True))
    raw.send_data(3, encode_dataset(make_dataset(uid)), last=True)
    answer = read_all(raw.sock)
    raw.close()
    assert answer[:1] == b"\x07", f"expected an A-ABORT, got {answer[:12]!r}"
    # the server says the association ended (its window and log do not keep a phantom)
    assert wait_until(lambda: f"(NOUID{missing:04X} -> DICOMDESK) after" in hostile.log()), \
        hostile.log()[-2000:]
    assert "association thread for" not in hostile.log()
    files, rows, _ = archive_state(hostile.storage)
    assert uid not in files | rows
    echo_ok(hostile.port)


def _c_get_waiting_for_a_sub_operation_response(port: int, study: str, calling: str):
    """A raw C-GET SCU whose C-GET has made the server send a C-STORE-RQ sub-operation: the
    server now waits for its C-STORE-RSP. Returns the socket."""
    from pydicom.dataset import Dataset

    from dicomdesk.net import pdu, userdataitems
    from dicomdesk.net.negotiation import APPLICATION_CONTEXT_NAME, build_user_information

    from serving import EXPLICIT_LE, connect, read_pdu

    items = [pdu.ApplicationContextItem(APPLICATION_CONTEXT_NAME),
             pdu.PresentationContextItemRQ(1, pdu.AbstractSyntaxSubItem(uids.STUDY_ROOT_GET_SOP_CLASS),
                                           [pdu.TransferSyntaxSubItem(EXPLICIT_LE)]),
             pdu.PresentationContextItemRQ(3, pdu.AbstractSyntaxSubItem(CT_IMAGE_STORAGE),
                                           [pdu.TransferSyntaxSubItem(EXPLICIT_LE)]),
             build_user_information(16384, role_selection=[
                 userdataitems.ScpScuRoleSelectionSubItem(CT_IMAGE_STORAGE, 0, 1)])]
    sock = connect(port, timeout=30)
    sock.sendall(pdu.AAssociateRqPDU("DICOMDESK", calling, items).encode())
    assert read_pdu(sock)[:1] == b"\x02"
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    sock.sendall(p_data(1, _get_rq(1), command=True, last=True))
    sock.sendall(p_data(1, encode_dataset(query), command=False, last=True))
    first = read_pdu(sock)  # the C-STORE-RQ's command: the server now waits for our response
    assert first[:1] == b"\x04"
    return sock


def _get_rq(message_id: int) -> bytes:
    return encode_fields({0x0002: uids.STUDY_ROOT_GET_SOP_CLASS, 0x0100: 0x0010,
                          0x0110: message_id, 0x0700: 0, 0x0800: DATA_SET})


def test_requests_flooding_a_c_get_that_waits_for_its_sub_operation_keep_memory_bounded(hostile):
    """No asynchronous operations window is negotiated, yet every message that arrived while
    the server waited for a C-STORE-RSP was held in memory, data set and all: 48 C-GET-RQs
    with 2 MB identifiers took ~100 MB. Past a small bound the association is aborted."""
    from pydicom.dataset import Dataset

    from serving import read_all

    study = "1.2.826.0.1.3680043.8.498.95"
    from serving import store_status

    assert store_status(hostile.port, make_dataset("1.2.826.0.1.3680043.8.498.95.1", study=study)) == 0
    sock = _c_get_waiting_for_a_sub_operation_response(hostile.port, study, "FLOOD")
    before = hostile.status_field("VmRSS")
    big = Dataset()
    big.QueryRetrieveLevel = "STUDY"
    big.StudyInstanceUID = ""
    big.add_new(0x00091010, "OB", b"\x01" * 2_000_000)
    identifier = encode_dataset(big)
    sent = 0
    try:
        for message_id in range(2, 50):
            sock.sendall(p_data(1, _get_rq(message_id), command=True, last=True))
            for start in range(0, len(identifier), 16000):
                sock.sendall(p_data(1, identifier[start:start + 16000], command=False,
                                    last=start + 16000 >= len(identifier)))
            sent += 1
    except OSError:  # aborted under our feet: what the fix does
        pass
    peak = hostile.status_field("VmHWM")
    grown_mb = (max(peak, hostile.status_field("VmRSS")) - before) / 1024
    try:
        read_all(sock)
    except OSError:
        pass
    sock.close()
    assert grown_mb < 64, f"{grown_mb:.0f} MB held for {sent} flooding requests"
    assert wait_until(lambda: "(FLOOD -> DICOMDESK) after" in hostile.log())


def test_peer_aborting_while_a_c_get_waits_for_its_sub_operation_ends_cleanly(hostile):
    from dicomdesk.net import pdu

    study = "1.2.826.0.1.3680043.8.498.96"
    from serving import store_status

    assert store_status(hostile.port, make_dataset("1.2.826.0.1.3680043.8.498.96.1", study=study)) == 0
    sock = _c_get_waiting_for_a_sub_operation_response(hostile.port, study, "ABORTER")
    sock.sendall(pdu.AAbortPDU(0, 0).encode())
    sock.close()
    assert wait_until(lambda: "(ABORTER -> DICOMDESK) after" in hostile.log())
    log = hostile.log()
    ended = log[log.index("(ABORTER -> DICOMDESK) after"):]
    assert "service-user" in ended.splitlines()[1], ended[:400]
    assert "Traceback" not in log[log.index("(ABORTER -> DICOMDESK) contexts"):]
