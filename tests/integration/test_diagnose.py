"""The association doctor against real peers, as a function and as ``dicomdesk diagnose``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from peers import free_port

from dicomdesk.net import uids
from dicomdesk.operations.common import Peer
from dicomdesk.operations.doctor import STANDARD_IMAGE_CLASSES, diagnose, uid_name

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
CT_SMALL = get_testdata_file("CT_small.dcm")
MR_SMALL = get_testdata_file("MR_small.dcm")
JPEG2000_SC = get_testdata_file("JPEG2000.dcm")


def dicomdesk(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "dicomdesk", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_storescp_accepts_every_storage_context_of_the_standard_set(dcmtk_storescp):
    result = diagnose(Peer("127.0.0.1", dcmtk_storescp.port, "STORESCP", timeout=10))
    assert result.ok and result.error is None
    storage = [c for c in result.negotiations[0].contexts if c.sop_class in STANDARD_IMAGE_CLASSES]
    assert storage and all(c.usable for c in storage)
    lines = result.lines
    assert any(line.startswith("CT Image Storage: accepted with Explicit VR Little Endian") for line in lines)
    assert "Peer maximum PDU length: 16384 bytes" in lines
    assert any("OFFIS_DCMTK" in line for line in lines)


def test_ct_implicit_only_peer_names_each_refusal(pynetdicom_scp):
    scp = pynetdicom_scp([(uids.CT_IMAGE_STORAGE, [uids.IMPLICIT_VR_LITTLE_ENDIAN]),
                          (uids.SC_IMAGE_STORAGE, [uids.EXPLICIT_VR_LITTLE_ENDIAN])])
    result = diagnose(Peer("127.0.0.1", scp.port, scp.aet, timeout=10),
                      files=[CT_SMALL, MR_SMALL, JPEG2000_SC])
    assert result.ok
    lines = result.lines
    assert "CT Image Storage: accepted with Implicit VR Little Endian" in lines
    assert ("CT Image Storage: refused: transfer syntax not supported "
            "(proposed Explicit VR Little Endian, Explicit VR Big Endian)") in lines
    assert "MR Image Storage: refused: abstract syntax not supported" in lines
    assert (f"Secondary Capture Image Storage: refused: transfer syntax not supported (proposed "
            f"{uid_name(uids.JPEG_2000_IMAGE_COMPRESSION)}, Implicit VR Little Endian, "
            "Explicit VR Big Endian)") in lines
    assert lines[-1] == ("Files: 3 selected; 0 as they are, 1 after conversion to an accepted "
                         "uncompressed transfer syntax, 2 cannot be sent (class or transfer syntax refused)")


def test_closed_port_is_a_sentence():
    result = diagnose(Peer("127.0.0.1", free_port(), "NOBODY", timeout=5))
    assert not result.ok
    assert "connection refused" in result.error
    assert result.error in result.lines


def test_rejecting_peer_is_explained_from_result_source_and_reason(pynetdicom_scp):
    scp = pynetdicom_scp(require_called_aet=True)
    result = diagnose(Peer("127.0.0.1", scp.port, "WRONG-AET", timeout=10))
    assert not result.ok
    assert "called AE title not recognised" in result.error.replace("recognized", "recognised")
    text = result.report()
    assert "A-ASSOCIATE-RJ result 1, source 1, reason 7" in text
    assert "What to do: the peer is not called 'WRONG-AET'" in text


def test_cli_prints_the_report_and_exits_0_when_accepted(dcmtk_storescp):
    run = dicomdesk("diagnose", "127.0.0.1", str(dcmtk_storescp.port), "--aec", "STORESCP", str(CT_SMALL))
    assert run.returncode == 0, run.stderr
    assert "CT Image Storage: accepted with Explicit VR Little Endian" in run.stdout


def test_cli_exits_1_when_the_association_fails():
    run = dicomdesk("diagnose", "127.0.0.1", str(free_port()), "--timeout", "5")
    assert run.returncode == 1
    assert "connection refused" in run.stdout
