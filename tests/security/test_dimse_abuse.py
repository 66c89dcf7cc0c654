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
