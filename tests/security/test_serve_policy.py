"""``dicomdesk serve`` with its access policy, DICOM TLS and limits switched on.

Refusals are A-ASSOCIATE-RJ with PS3.8 Table 9-21's fields — (1,1,3) calling AE title not
recognised, (1,1,7) called AE title not recognised, (1,1,1) for a refused user identity
(PS3.7 D.3.3.7) — logged with a sentence; an accepted identity that asked for it gets the
positive response sub-item (0x59) in the A-ASSOCIATE-AC.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dicomdesk.config import ServerSettings, TLSSettings
from dicomdesk.net import pdu, userdataitems
from dicomdesk.operations import Peer, echo, find
from dicomdesk.operations.server import bind_warning
from dicomdesk.security import hash_password

from serving import (
    CT_IMAGE_STORAGE,
    RawAssociation,
    ServeProcess,
    associate_rq,
    connect,
    echo_ok,
    encode_dataset,
    make_dataset,
    p_data,
    read_pdu,
    store_rq,
    wait_until,
)

pytestmark = pytest.mark.interop


def _rj_fields(answer: bytes) -> tuple[int, int, int]:
    assert answer[:1] == b"\x03", f"expected A-ASSOCIATE-RJ, got {answer[:10]!r}"
    rj = pdu.AAssociateRjPDU.decode(answer[:10])
    return rj.result, rj.source, rj.reason_diag


def _answer(port: int, **kwargs) -> bytes:
    with connect(port) as sock:
        sock.sendall(associate_rq(**kwargs))
        return read_pdu(sock)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded")
    users = root / "users.toml"
    users.write_text(f'[users]\nalice = "{hash_password("s3cret")}"\nscanner = ""\n')
    with ServeProcess(root / "storage", "--allow", "CT1", "--allow", "MR1@127.0.0.1",
                      "--allow", "XR1@192.0.2.0/24", "--users", str(users), "--strict-aet") as proc:
        yield proc


def _alice(password: str = "s3cret", positive: int = 1):
    return userdataitems.UserIdentityNegotiationSubItem("alice", password, user_identity_type=2,
                                                        positive_response_req=positive)


def test_allow_listed_calling_ae_with_the_right_password_gets_in(guarded):
    result = echo(Peer("127.0.0.1", guarded.port, "DICOMDESK", calling_aet="CT1", timeout=10,
                       username="alice", password="s3cret"))
    assert result.ok, result.error


def test_accepted_identity_that_asked_gets_the_positive_response_sub_item(guarded):
    answer = _answer(guarded.port, calling="MR1", identity=_alice())
    assert answer[:1] == b"\x02"
    ac = pdu.AAssociateAcPDU.decode(answer)
    info = next(i for i in ac.variable_items if getattr(i, "item_type", None) == 0x50)
    assert any(isinstance(s, userdataitems.UserIdentityNegotiationSubItemAc) for s in info.user_data)


def test_calling_ae_not_on_the_allow_list_is_rejected_1_1_3(guarded):
    assert _rj_fields(_answer(guarded.port, calling="INTRUDER", identity=_alice())) == (1, 1, 3)
    assert wait_until(lambda: "'INTRUDER' from 127.0.0.1" in guarded.log(), 30)
    assert "association rejected" in guarded.log()


def test_allow_listed_title_from_a_wrong_address_is_rejected_1_1_3(guarded):
    assert _rj_fields(_answer(guarded.port, calling="XR1", identity=_alice())) == (1, 1, 3)


def test_wrong_password_is_rejected_1_1_1_and_never_logged(guarded):
    assert _rj_fields(_answer(guarded.port, calling="CT1", identity=_alice("guess"))) == (1, 1, 1)
    result = echo(Peer("127.0.0.1", guarded.port, "DICOMDESK", calling_aet="CT1", timeout=10,
                       username="alice", password="guess"))
    assert not result.ok and "rejected" in result.error
    assert "guess" not in guarded.log()


def test_missing_identity_is_rejected_1_1_1(guarded):
    assert _rj_fields(_answer(guarded.port, calling="CT1")) == (1, 1, 1)


def test_user_without_a_password_is_admitted_by_name(guarded):
    identity = userdataitems.UserIdentityNegotiationSubItem("scanner", "", user_identity_type=1)
    assert _answer(guarded.port, calling="CT1", identity=identity)[:1] == b"\x02"


def test_unknown_called_ae_title_is_rejected_1_1_7_when_strict(guarded):
    assert _rj_fields(_answer(guarded.port, called="ANY-SCP", calling="CT1", identity=_alice())) == (1, 1, 7)


def test_users_file_with_a_clear_password_stops_the_server_from_starting(tmp_path):
    users = tmp_path / "users.toml"
    users.write_text('[users.alice]\npassword = "s3cret"\n')
    server = ServeProcess(tmp_path / "storage", "--users", str(users))
    with pytest.raises(RuntimeError, match="never the password"):
        server.start()


def test_slowloris_after_association_is_dropped_by_the_idle_timeout(tmp_path):
    with ServeProcess(tmp_path / "storage", "--network-timeout", "0.5") as proc:
        echo_ok(proc.port)
        baseline = proc.wait_threads(3)
        raw = RawAssociation(proc.port)
        assert raw.accepted
        message = p_data(1, b"\x00" * 64, command=True, last=True)
        started = time.monotonic()
        sent = 0
        try:
            for byte in message:
                raw.sock.sendall(bytes((byte,)))
                sent += 1
                time.sleep(1.0)  # one byte per second: the attack itself
        except OSError:
            pass
        assert sent <= 3, f"{sent} bytes were accepted at one per second"
        assert time.monotonic() - started < 5
        raw.close()
        assert proc.wait_threads(baseline) <= baseline
        echo_ok(proc.port)


def test_c_find_stops_at_max_matches_with_a_warning_status(tmp_path):
    with ServeProcess(tmp_path / "storage", "--max-matches", "2") as proc:
        for i in range(4):
            raw = RawAssociation(proc.port, ((3, CT_IMAGE_STORAGE),))
            uid = f"1.2.826.0.1.55.{i}"
            raw.send_command(3, store_rq(uid))
            raw.send_data(3, encode_dataset(make_dataset(uid, study=f"1.2.826.0.1.56.{i}")), last=True)
            assert int(raw.receive_message().Status) == 0
            raw.release()
        result = find(Peer("127.0.0.1", proc.port, "DICOMDESK", timeout=10), "STUDY",
                      {"StudyInstanceUID": ""})
    assert len(result.matches) == 2
    assert int(result.status) == 0xB000 and result.status.is_warning


def test_serve_over_tls_admits_a_certified_client_and_tells_a_plain_one(pki, tmp_path):
    with ServeProcess(tmp_path / "storage", "--tls-cert", str(pki / "server.pem"),
                      "--tls-key", str(pki / "server.key"), "--tls-ca", str(pki / "ca.pem")) as proc:
        secure = echo(Peer("127.0.0.1", proc.port, "DICOMDESK", timeout=10,
                           tls=TLSSettings(cert=pki / "client.pem", key=pki / "client.key",
                                           ca=pki / "ca.pem")))
        assert secure.ok, secure.error
        plain = echo(Peer("127.0.0.1", proc.port, "DICOMDESK", timeout=5))
        assert not plain.ok
        assert "TLS" in plain.error
        assert proc.alive()


def test_serve_with_an_unreadable_certificate_says_so_and_exits_2(tmp_path):
    server = ServeProcess(tmp_path / "storage", "--tls-cert", str(tmp_path / "missing.pem"))
    with pytest.raises(RuntimeError, match="cannot use TLS certificate"):
        server.start()
    assert server.proc.returncode == 2


def test_bind_warning_only_beyond_loopback():
    assert bind_warning(ServerSettings(bind="127.0.0.1", storage_dir="/tmp/x")) is None
    assert bind_warning(ServerSettings(bind="::1", storage_dir="/tmp/x")) is None
    wide = bind_warning(ServerSettings(bind="0.0.0.0", storage_dir="/tmp/x"))
    assert "other computers" in wide and "no TLS" in wide and "allow-list" in wide
    guarded = bind_warning(ServerSettings(bind="10.0.0.5", storage_dir="/tmp/x",
                                          allowed_calling_aets=("CT1",), tls_cert=Path("/c.pem")))
    assert "other computers" in guarded and "TLS" not in guarded and "allow-list" not in guarded
