"""``dicomdesk find`` / ``get`` / ``move`` as a user runs them, against real Q/R peers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from peers import LOCALHOST, start_dcmqrscp, run_dcmtk
from test_qr_interop import SERIES, STUDY1, STUDY2, QRTestAE, StoreCollector, make_instances, uid_of

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]


def dicomdesk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "dicomdesk", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    return make_instances(tmp_path_factory.mktemp("cli-data"))


@pytest.fixture(scope="module")
def destination():
    with StoreCollector() as dest:
        yield dest


@pytest.fixture(scope="module")
def server(files, destination):
    ours = {"aet": destination.ae_title, "address": LOCALHOST, "port": destination.port}
    with QRTestAE(files, {"OURDEST": ours}) as ae:
        yield ae


def test_find_prints_a_table_with_the_requested_keys_as_columns(server):
    out = dicomdesk("find", LOCALHOST, str(server.port), "--aec", "QRSCP", "--level", "STUDY",
                    "-k", "PatientName=DOE*", "-k", "0020,000D=", "-k", "StudyDate=")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["PatientName", "StudyInstanceUID", "StudyDate"]
    assert len(lines) == 3 and lines[2].split() == ["DOE^JOHN", STUDY1, "20200315"]


def test_find_json_prints_one_object_per_match(server):
    out = dicomdesk("find", LOCALHOST, str(server.port), "--aec", "QRSCP", "--level", "SERIES",
                    "-k", f"StudyInstanceUID={STUDY1}", "-k", "SeriesInstanceUID=", "--json")
    assert out.returncode == 0, out.stderr
    objects = [json.loads(line) for line in out.stdout.splitlines()]
    assert {o["SeriesInstanceUID"] for o in objects} == set(SERIES[:2])
    assert all(o["QueryRetrieveLevel"] == "SERIES" for o in objects)


def test_find_with_an_unknown_keyword_says_so_without_connecting(server):
    out = dicomdesk("find", LOCALHOST, "1", "--level", "PATIENT", "-k", "PatientNam=X")
    assert out.returncode == 2
    assert "unknown attribute keyword 'PatientNam'" in out.stderr and "Traceback" not in out.stderr


def test_get_writes_the_study_into_out_and_exits_zero(server, files, tmp_path):
    out = dicomdesk("get", LOCALHOST, str(server.port), "--aec", "QRSCP", "--level", "STUDY",
                    "-k", f"StudyInstanceUID={STUDY2}", "--out", str(tmp_path / "got"))
    assert out.returncode == 0, out.stderr
    assert "remaining 0, completed 2" in out.stderr
    assert {str(pydicom.dcmread(p).SOPInstanceUID) for p in (tmp_path / "got").iterdir()} == \
        uid_of(files, STUDY2)


def test_move_with_dcmtk_style_aem_exits_zero_when_all_sub_operations_succeed(server, files, destination):
    before = len(destination.received)
    out = dicomdesk("move", LOCALHOST, str(server.port), "-aec", "QRSCP", "-aem", "OURDEST",
                    "--level", "STUDY", "-k", f"StudyInstanceUID={STUDY1}")
    assert out.returncode == 0, out.stderr
    assert "4 completed, 0 failed" in out.stdout
    assert set(destination.received[before:]) == uid_of(files, STUDY1)


def test_move_to_an_unknown_destination_exits_non_zero(server):
    out = dicomdesk("move", LOCALHOST, str(server.port), "--aec", "QRSCP", "--dest", "NOWHERE",
                    "--level", "STUDY", "-k", f"StudyInstanceUID={STUDY1}")
    assert out.returncode == 1
    assert "0xA801" in out.stdout + out.stderr


def test_find_against_dcmqrscp_from_the_command_line(files, tmp_path):
    proc = start_dcmqrscp(tmp_path / "qr")
    try:
        stored = run_dcmtk("storescu", "-aec", proc.aet, LOCALHOST, str(proc.port), *files)
        assert stored.returncode == 0, stored.stderr
        out = dicomdesk("find", LOCALHOST, str(proc.port), "--aec", proc.aet, "--level", "PATIENT",
                        "-k", "PatientName=SMITH*", "-k", "PatientID=", "--json")
        assert out.returncode == 0, out.stderr
        assert [json.loads(line)["PatientID"] for line in out.stdout.splitlines()] == ["QR002"]
    finally:
        proc.stop()
