"""DICOM TLS (PS3.15 B.1) against DCMTK and ourselves, and the sentences for a mismatch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from peers import DcmtkProcess, free_port, run_dcmtk

from dicomdesk.config import TLSSettings
from dicomdesk.net import tls
from dicomdesk.net.applicationentity import AE
from dicomdesk.net.sopclass import verification_scp
from dicomdesk.operations import Peer, echo

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tls_server(pki):
    context = tls.server_context(pki / "server.pem", pki / "server.key", pki / "ca.pem")
    with AE("SECURE", 0, ssl_context=context).add_scp(verification_scp) as ae:
        yield ae


def test_echo_over_mutually_authenticated_tls(pki, tls_server):
    peer = Peer("127.0.0.1", tls_server.port, "SECURE",
                tls=TLSSettings(cert=pki / "client.pem", key=pki / "client.key", ca=pki / "ca.pem"))
    result = echo(peer)
    assert result.ok, result.error


def test_client_without_a_certificate_is_refused_by_a_server_that_requires_one(pki, tls_server):
    result = echo(Peer("127.0.0.1", tls_server.port, "SECURE", timeout=5, tls=TLSSettings(ca=pki / "ca.pem")))
    assert not result.ok
    assert "TLS" in result.error or "closed the connection" in result.error


def test_server_certificate_from_an_unknown_ca_is_refused_with_a_sentence(pki, tls_server):
    peer = Peer("127.0.0.1", tls_server.port, "SECURE",
                tls=TLSSettings(cert=pki / "client.pem", key=pki / "client.key", ca=pki / "rogue.pem"))
    result = echo(peer)
    assert not result.ok
    assert "certificate was not accepted" in result.error


def test_plain_client_meeting_a_tls_server_fails_fast_with_a_sentence(tls_server):
    result = echo(Peer("127.0.0.1", tls_server.port, "SECURE", timeout=5))
    assert not result.ok
    assert "does the peer expect TLS?" in result.error
    assert result.rtt_ms < 5000


def test_tls_client_meeting_a_plain_server_fails_fast_with_a_sentence(pki):
    with AE("PLAIN", 0).add_scp(verification_scp) as plain:
        result = echo(Peer("127.0.0.1", plain.port, "PLAIN", timeout=5, tls=TLSSettings(ca=pki / "ca.pem")))
    assert not result.ok
    assert "does not seem to speak TLS" in result.error


def test_cli_echo_with_tls_to_dcmtk_storescp(pki, tmp_path):
    with DcmtkProcess("storescp", "+tls", str(pki / "server.key"), str(pki / "server.pem"),
                      "+cf", str(pki / "ca.pem"), "-od", str(tmp_path), log_dir=tmp_path) as scp:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        result = subprocess.run(
            [sys.executable, "-m", "dicomdesk", "echo", "127.0.0.1", str(scp.port), "--tls-ca",
             str(pki / "ca.pem"), "--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")],
            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OFFIS_DCMTK" in result.stdout


def test_dcmtk_echoscu_with_tls_against_our_server(pki, tls_server):
    result = run_dcmtk("echoscu", "-v", "+tls", str(pki / "client.key"), str(pki / "client.pem"),
                       "+cf", str(pki / "ca.pem"), "-aec", "SECURE", "127.0.0.1", str(tls_server.port))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


def test_a_port_nobody_listens_on_still_says_connection_refused(pki):
    result = echo(Peer("127.0.0.1", free_port(), tls=TLSSettings(ca=pki / "ca.pem")))
    assert "connection refused" in result.error
