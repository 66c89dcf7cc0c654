"""The test peers harness itself: each peer starts, answers C-ECHO from DCMTK, and stops."""

from __future__ import annotations

import socket

import pytest
from peers import (
    VERIFICATION_SOP_CLASS,
    ReactorCheckpoint,
    free_port,
    run_dcmtk,
    wait_for_port,
    write_dcmqrscp_config,
    write_worklist_file,
)

pytestmark = pytest.mark.interop


def echoscu(port: int, called_aet: str) -> None:
    result = run_dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", called_aet, "127.0.0.1", str(port), timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_free_port_can_be_bound_and_wait_for_port_sees_a_listener():
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        wait_for_port(port, timeout=2)


def test_wait_for_port_times_out_when_nothing_listens():
    with pytest.raises(TimeoutError):
        wait_for_port(free_port(), timeout=0.3)


def test_storescp_answers_echoscu_and_stops(dcmtk_storescp):
    echoscu(dcmtk_storescp.port, "STORESCP")
    assert dcmtk_storescp.running()
    dcmtk_storescp.stop()
    assert not dcmtk_storescp.running()
    with pytest.raises(TimeoutError):
        wait_for_port(dcmtk_storescp.port, timeout=0.3)


def test_storescp_stores_what_storescu_sends(dcmtk_storescp, pydicom_test_files):
    ct = next(p for p in pydicom_test_files if p.name == "CT_small.dcm")
    result = run_dcmtk("storescu", "-aec", "STORESCP", "127.0.0.1", str(dcmtk_storescp.port), ct)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(dcmtk_storescp.output_dir.iterdir())) == 1


def test_dcmqrscp_answers_echoscu_with_the_written_config(dcmtk_dcmqrscp):
    qr = dcmtk_dcmqrscp(aet="QRSCP", peers={"DEST": ("127.0.0.1", 11112)})
    config = qr.config_path.read_text()
    assert "peer1 = (DEST, 127.0.0.1, 11112)" in config
    assert f"NetworkTCPPort  = {qr.port}" in config
    echoscu(qr.port, "QRSCP")


def test_write_dcmqrscp_config_creates_the_storage_area(tmp_path):
    config = write_dcmqrscp_config(tmp_path, "QR", 4242, {})
    assert (tmp_path / "storage").is_dir()
    assert f"QR  {tmp_path / 'storage'}  RW" in config.read_text()


def test_wlmscpfs_answers_echoscu_with_an_empty_worklist(dcmtk_wlmscpfs):
    assert list(dcmtk_wlmscpfs.worklist_dir.glob("*.wl")) == []
    echoscu(dcmtk_wlmscpfs.port, "WLMSCP")


def test_pynetdicom_scp_answers_echoscu_and_calls_the_handler(pynetdicom_scp):
    from pynetdicom import evt

    calling = []

    def on_echo(event):
        calling.append(event.assoc.requestor.ae_title)
        return 0x0000

    scp = pynetdicom_scp(handlers=[(evt.EVT_C_ECHO, on_echo)], ae_title="PYSCP")
    echoscu(scp.port, "PYSCP")
    assert calling == ["ECHOSCU"]


def test_pydicom_test_files_include_sub_folders(pydicom_test_files):
    assert len(pydicom_test_files) > 100
    assert all(p.is_file() for p in pydicom_test_files)
    assert any("dicomdirtests" in p.parts for p in pydicom_test_files)


def test_a_missing_dcmtk_tool_fails_loudly_instead_of_skipping():
    with pytest.raises(pytest.fail.Exception, match="DCMTK nosuchscu not found: run ./scripts/test"):
        run_dcmtk("nosuchscu")


def test_wlmscpfs_returns_a_worklist_item_written_by_the_helper(dcmtk_wlmscpfs):
    from pydicom.dataset import Dataset

    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = "CT1"
    step.ScheduledProcedureStepStartDate = "20240101"
    step.ScheduledProcedureStepStartTime = "0800"
    step.ScheduledProcedureStepID = "SPS1"
    step.ScheduledProcedureStepDescription = "CT head"
    step.ScheduledPerformingPhysicianName = ""
    item = Dataset()
    item.RequestedProcedureID = "RP1"
    item.RequestedProcedureDescription = "CT head"
    item.StudyInstanceUID = "1.2.3.4"
    item.PatientName = "DOE^JOHN"
    item.PatientID = "P1"
    item.AccessionNumber = "A1"
    item.ScheduledProcedureStepSequence = [step]
    write_worklist_file(dcmtk_wlmscpfs.worklist_dir, item)
    result = run_dcmtk(
        "findscu", "-v", "-W", "-aec", "WLMSCP", "-k", "PatientName", "-k", "PatientID",
        "-k", "ScheduledProcedureStepSequence[0].Modality=CT",
        "127.0.0.1", str(dcmtk_wlmscpfs.port), timeout=30,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "DOE^JOHN" in output


def test_a_pynetdicom_requestor_gets_every_answer_of_a_peer_that_answers_at_once(dcmtk_storescp):
    """C-ECHOs sent back to back by pynetdicom to storescp (answers in well under a ms): its
    reactor must not take a response its send_c_echo() waits for (peers.ReactorCheckpoint;
    without it 1 in ~250 went to the reactor under CPU load, then a 30 s DIMSE timeout)."""
    from pynetdicom import AE

    ae = AE(ae_title="ECHOLOOP")
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    assoc = ae.associate("127.0.0.1", dcmtk_storescp.port, ae_title="STORESCP")
    assert assoc.is_established
    assert isinstance(assoc._reactor_checkpoint, ReactorCheckpoint)
    statuses = []
    try:
        for msg_id in range(1, 501):
            status = assoc.send_c_echo(msg_id=msg_id)
            statuses.append(status.get("Status"))
            if not assoc.is_established:
                break
    finally:
        assoc.release()
    assert statuses == [0] * 500
