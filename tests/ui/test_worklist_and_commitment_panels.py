"""The Worklist and Commitment panels against real peers: DCMTK wlmscpfs for the worklist; a
``dicomdesk serve`` LocalServer (reporting on a new association) and a pynetdicom commitment SCP
(reporting failures on the same association) for storage commitment."""

from __future__ import annotations

import datetime as dt
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from peers import LOCALHOST, free_port, start_wlmscpfs, write_worklist_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from dicomdesk import config, operations
from dicomdesk.net import uids

REPO = Path(__file__).resolve().parents[2]


def _step(patient: str, patient_id: str, modality: str, station: str, date: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.AccessionNumber = f"ACC{patient_id}"
    ds.ReferringPhysicianName = ""
    ds.RequestedProcedureID = f"RP{patient_id}"
    ds.RequestedProcedureDescription = f"{modality} exam"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.1.{patient_id}"
    ds.RequestedProcedurePriority = ""
    sps = Dataset()
    sps.Modality = modality
    sps.ScheduledStationAETitle = station
    sps.ScheduledProcedureStepStartDate = date
    sps.ScheduledProcedureStepStartTime = "093000"
    sps.ScheduledProcedureStepID = f"SPS{patient_id}"
    sps.ScheduledProcedureStepDescription = f"{modality} step"
    sps.ScheduledPerformingPhysicianName = ""
    sps.ScheduledStationName = station
    sps.ScheduledProcedureStepLocation = ""
    sps.PreMedication = ""
    sps.RequestedContrastAgent = ""
    ds.ScheduledProcedureStepSequence = Sequence([sps])
    return ds


@pytest.fixture
def wlmscpfs(tmp_path: Path):
    today = dt.date.today()
    day = today.strftime("%Y%m%d")
    tomorrow = (today + dt.timedelta(days=1)).strftime("%Y%m%d")
    proc = start_wlmscpfs(tmp_path / "wlm")
    try:
        for n, item in enumerate([_step("Doe^Jane", "1", "CT", "CT01", day),
                                  _step("Roe^Rick", "2", "MR", "MR01", day),
                                  _step("Poe^Pat", "3", "CT", "CT01", tomorrow),
                                  _step("Moe^Max", "4", "CT", "CT01", day)]):
            write_worklist_file(proc.worklist_dir, item, f"item{n}")
        yield proc
    finally:
        proc.stop()


def test_worklist_panel_lists_todays_steps_for_the_station_and_copies_the_command(
        window, qtbot, wlmscpfs):
    window.book.replace_all([config.Node("ris", "WLMSCP", LOCALHOST, wlmscpfs.port)])
    window.show()
    window.show_panel("worklist")
    panel = window.worklist_panel
    assert panel.station_edit.text() == "DICOMDESK"  # our AE title by default
    panel.station_edit.setText("CT01")
    panel.modality_combo.setCurrentText("CT")
    panel.date_combo.setCurrentText("Today")
    with qtbot.waitSignal(panel.search_finished, timeout=20_000) as blocker:
        qtbot.mouseClick(panel.search_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0].error is None
    rows = panel.model.items()
    assert sorted(r.patient for r in rows) == ["Doe Jane", "Moe Max"]
    assert {(r.modality, r.station, r.date, r.time) for r in rows} == {
        ("CT", "CT01", dt.date.today().isoformat(), "09:30")}
    assert panel.model.index(0, 7).data() == "CT step"
    assert panel.outcome.text() == "2 scheduled steps."
    # Copy as command: the same query from the command line, confirmed in the status bar
    text = panel.copy_command()
    assert QGuiApplication.clipboard().text() == text
    assert window.statusBar().currentMessage().startswith("Copied to the clipboard: dicomdesk worklist")
    args = shlex.split(text)
    assert args[:2] == ["dicomdesk", "worklist"]
    run = subprocess.run([sys.executable, "-m", "dicomdesk", *args[1:], "--json"],
                         capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('"00100020"') == 2  # PatientID of both matches


def test_worklist_panel_says_why_when_the_node_does_not_answer(window, qtbot):
    window.book.replace_all([config.Node("gone", "WLMSCP", LOCALHOST, free_port())])
    panel = window.worklist_panel
    with qtbot.waitSignal(panel.search_finished, timeout=20_000):
        panel.search()
    assert panel.outcome.property("kind") == "error"
    assert "refused" in panel.outcome.text().lower()
    assert panel.model.rowCount() == 0


# ------------------------------------------------------------------------------ commitment
@pytest.fixture
def files_to_send(tmp_path: Path) -> Path:
    folder = tmp_path / "send"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        shutil.copy(pydicom.data.get_testdata_file(name), folder / name)
    return folder


def test_send_then_request_commitment_from_dicomdesk_serve_reporting_on_a_new_association(
        window, qtbot, tmp_path, files_to_send):
    listen = free_port()
    settings = config.ServerSettings(aet="PACS", port=0, bind=LOCALHOST,
                                     storage_dir=tmp_path / "pacs", durable=False)
    server = operations.LocalServer(
        settings, nodes=[config.Node("me", "DICOMDESK", LOCALHOST, listen)]).start()
    try:
        window.book.replace_all([config.Node("pacs", "PACS", LOCALHOST, server.port)])
        send = window.send_panel
        with qtbot.waitSignal(send.scan_finished, timeout=20_000):
            send.add_paths([str(files_to_send)])
        assert not send.commit_button.isEnabled()
        with qtbot.waitSignal(send.send_finished, timeout=30_000):
            send.send()
        assert send.commit_button.isEnabled()
        panel = window.commitment_panel
        panel.listen_spin.setValue(listen)
        send.commit_button.click()
        assert window.current_panel_key() == "commitment"
        assert panel.table.rowCount() == 3
        assert panel.node_picker.currentData() == "pacs"
        with qtbot.waitSignal(panel.commit_finished, timeout=60_000) as blocker:
            panel.request_button.click()
        outcome = blocker.args[0]
        assert outcome.result.ok, outcome.result.error
        assert [panel.state_of(r) for r in range(3)] == ["committed"] * 3
        assert panel.outcome.text() == "All 3 object(s) committed."
        expected = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                    for p in files_to_send.iterdir()}
        assert {panel.table.item(r, 1).text() for r in range(3)} == expected
    finally:
        server.stop()


def test_commitment_of_received_objects_shows_each_failure_with_its_reason(
        window, qtbot, pynetdicom_scp):
    from pynetdicom import evt

    ct = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    mr = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))

    def handle_action(event):
        info = Dataset()
        info.TransactionUID = event.action_information.TransactionUID
        ok, failed = [], []
        for ref in event.action_information.ReferencedSOPSequence:
            item = Dataset()
            item.ReferencedSOPClassUID = ref.ReferencedSOPClassUID
            item.ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
            if ref.ReferencedSOPInstanceUID == mr.SOPInstanceUID:
                item.FailureReason = 0x0112
                failed.append(item)
            else:
                ok.append(item)
        info.ReferencedSOPSequence = Sequence(ok)
        info.FailedSOPSequence = Sequence(failed)
        event.assoc.send_n_event_report(info, 2, uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS,
                                        uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE)
        return 0x0000, None

    scp = pynetdicom_scp([uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS],
                         [(evt.EVT_N_ACTION, handle_action)], ae_title="PYSC")
    window.book.replace_all([config.Node("pysc", "PYSC", LOCALHOST, scp.port)])
    # two objects received by the window's local server (DCMTK storescu)
    port = free_port()
    window.server_panel.port_spin.setValue(port)
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status == "listening"):
        window.server_panel.start_server()
    from peers import run_dcmtk

    done = run_dcmtk("storescu", "-aec", "DICOMDESK", LOCALHOST, str(port),
                     pydicom.data.get_testdata_file("CT_small.dcm"),
                     pydicom.data.get_testdata_file("MR_small.dcm"))
    assert done.returncode == 0, done.stderr
    server = window.server_panel
    qtbot.waitUntil(lambda: server.stored.rowCount() == 2, timeout=10_000)
    server.commit_button.click()
    panel = window.commitment_panel
    assert window.current_panel_key() == "commitment" and panel.table.rowCount() == 2
    with qtbot.waitSignal(panel.commit_finished, timeout=60_000):
        panel.request()
    states = {panel.table.item(r, 1).text(): panel.state_of(r) for r in range(2)}
    assert states == {ct.SOPInstanceUID: "committed",
                      mr.SOPInstanceUID: "failed: 0x0112 No such object instance"}
    assert panel.outcome.text().startswith("1 of 2 object(s) committed")
    assert panel.outcome.property("kind") == "error"


def test_a_commitment_result_sent_to_the_local_servers_port_reaches_the_panel(
        window, qtbot, tmp_path, files_to_send):
    """The PACS knows DICOMDESK at the local server's address (as for C-MOVE) and sends its
    N-EVENT-REPORT there, on a new association: the running local server hands it over."""
    port = free_port()
    window.server_panel.port_spin.setValue(port)
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status == "listening"):
        window.server_panel.start_server()
    settings = config.ServerSettings(aet="PACS", port=0, bind=LOCALHOST,
                                     storage_dir=tmp_path / "pacs", durable=False)
    server = operations.LocalServer(
        settings, nodes=[config.Node("me", "DICOMDESK", LOCALHOST, port)]).start()
    try:
        files = sorted(str(p) for p in files_to_send.iterdir())
        stored = operations.send(operations.Peer(LOCALHOST, server.port, "PACS", "LOADER"),
                                 files[:2])
        assert stored.stored == 2
        window.book.replace_all([config.Node("pacs", "PACS", LOCALHOST, server.port)])
        panel = window.commitment_panel
        panel.set_files(files, "pacs")
        with qtbot.waitSignal(panel.commit_finished, timeout=60_000) as blocker:
            panel.request()
        assert blocker.args[0].result.error == "1 of 3 instance(s) not committed"
        assert sorted(panel.state_of(r) for r in range(3)) == [
            "committed", "committed", "failed: 0x0112 No such object instance"]
    finally:
        server.stop()
