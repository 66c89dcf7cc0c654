"""A peer cannot write into the server's log (issue 11, item 10).

AE titles, UIDs and comments a peer sends are escaped wherever they are logged (``net.printable``):
a calling AE title ``X\\n12:00:00 OK`` stays on its own line, terminal escapes and NUL never reach
the log raw — in the ordinary log and in the ``-vv`` protocol trace.
"""

from __future__ import annotations

import pytest

from dicomdesk.net import pdu, uids

from serving import (
    CT_IMAGE_STORAGE,
    RawAssociation,
    ServeProcess,
    associate_rq,
    connect,
    encode_dataset,
    make_dataset,
    read_pdu,
    store_rq,
    wait_until,
)

pytestmark = pytest.mark.interop

FORGED = "X\n12:00:00 OK"
ESCAPES = "A\x1b[2J\x00\x07B"


def test_peer_strings_are_escaped_in_the_log_and_the_trace(tmp_path):
    # "-v" once more makes -vv: the protocol trace is written too.
    with ServeProcess(tmp_path / "storage", "-v", "--strict-aet") as proc:
        with connect(proc.port) as sock:  # rejected (called AE unknown): logged with both titles
            sock.sendall(associate_rq(called=ESCAPES, calling=FORGED))
            assert read_pdu(sock)[:1] == b"\x03"
        raw = RawAssociation(proc.port, ((1, uids.VERIFICATION_SOP_CLASS), (3, CT_IMAGE_STORAGE)),
                             calling=FORGED)
        assert raw.accepted
        bad_uid = "1.2.3\n12:00:01 OK"
        raw.send_command(3, store_rq(bad_uid))
        raw.send_data(3, encode_dataset(make_dataset("1.2.3.4")), last=True)
        assert int(raw.receive_message().Status) != 0  # refused: the UIDs differ
        assert raw.release()[:1] == b"\x06"
        assert wait_until(lambda: "released" in proc.log(), 10)
    log = proc.log()
    assert "X\\x0a12:00:00 OK" in log, log[-3000:]
    assert "1.2.3\\x0a12:00:01 OK" in log, log[-3000:]
    assert "A\\x1b[2J\\x00\\x07B" in log, log[-3000:]
    lines = log.splitlines()
    assert not [line for line in lines if line.startswith(("12:00:00 OK", "12:00:01 OK"))], log[-3000:]
    assert "\x1b" not in log and "\x00" not in log and "\x07" not in log
    assert any("A-ASSOCIATE request: X\\x0a12:00:00 OK" in line for line in lines), log[-3000:]
