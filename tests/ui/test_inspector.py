"""Protocol inspector: the trace of real associations, filters, patient data switch, export."""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset

from dicomdesk import config
from dicomdesk.net import uids
from dicomdesk.ui.trace_model import TRACE_LOGGER

SECRET_NAME = "SECRET^PATIENT"


def _echo(window, qtbot, name):
    worker = window.echo_panel.echo(name)
    with qtbot.waitSignal(worker.signals.done, timeout=20_000):
        pass


def test_recording_is_off_until_the_inspector_is_shown_and_restores_the_level_when_off(window, qtbot):
    panel = window.inspector_panel
    assert not panel.recording
    assert not logging.getLogger(TRACE_LOGGER).isEnabledFor(logging.DEBUG)
    window.show()
    window.inspector_action.trigger()
    qtbot.waitUntil(lambda: panel.recording, timeout=20_000)
    assert logging.getLogger(TRACE_LOGGER).isEnabledFor(logging.DEBUG)
    panel.record_box.setChecked(False)
    assert not panel.recording
    assert not logging.getLogger(TRACE_LOGGER).isEnabledFor(logging.DEBUG)


def test_echo_from_the_echo_panel_shows_c_echo_rq_and_rsp(window, qtbot, dcmtk_storescp):
    window.book.replace_all([config.Node("scp", "STORESCP", "127.0.0.1", dcmtk_storescp.port)])
    panel = window.inspector_panel
    panel.set_recording(True)
    _echo(window, qtbot, "scp")
    panel.flush()
    text = "\n".join(panel.model.visible_lines())
    assert "C-ECHO-RQ" in text and "C-ECHO-RSP" in text
    assert all(e.layer != "pdu" for e in panel.model.visible_entries())  # PDU level off by default
    panel.set_recording(False)


def test_filter_by_association_shows_only_that_association(window, qtbot, dcmtk_storescp):
    window.book.replace_all([config.Node("scp", "STORESCP", "127.0.0.1", dcmtk_storescp.port)])
    panel = window.inspector_panel
    panel.set_recording(True)
    _echo(window, qtbot, "scp")
    _echo(window, qtbot, "scp")
    panel.flush()
    ids = sorted({e.assoc_id for e in panel.model.visible_entries()})
    assert len(ids) >= 2
    assert panel.association_combo.count() == len(panel.model.associations()) + 1
    total = panel.model.rowCount()
    panel.select_association(ids[-1])
    assert 0 < panel.model.rowCount() < total
    assert {e.assoc_id for e in panel.model.visible_entries()} == {ids[-1]}
    panel.select_association(None)
    assert panel.model.rowCount() == total
    panel.set_recording(False)


def _find_scp(pynetdicom_scp):
    from pynetdicom import evt

    def on_find(event):
        match = Dataset()
        match.PatientName = SECRET_NAME
        match.PatientID = "ID-42"
        match.QueryRetrieveLevel = "PATIENT"
        yield 0xFF00, match

    return pynetdicom_scp([uids.PATIENT_ROOT_FIND_SOP_CLASS], [(evt.EVT_C_FIND, on_find)])


def test_patient_data_is_hidden_until_the_checkbox_is_on_and_export_writes_visible_lines(
        window, qtbot, pynetdicom_scp, tmp_path):
    from dicomdesk import operations

    scp = _find_scp(pynetdicom_scp)
    panel = window.inspector_panel
    panel.set_recording(True)
    result = operations.find(operations.Peer("127.0.0.1", scp.port, scp.aet, timeout=10),
                             "PATIENT", {"PatientName": "", "PatientID": ""}, model="patient")
    assert result.error is None and len(result.matches) == 1
    panel.flush()
    hidden = "\n".join(panel.model.visible_lines())
    assert "C-FIND-RSP" in hidden and SECRET_NAME not in hidden
    assert not panel.patient_data_box.isChecked()

    out = tmp_path / "trace.txt"
    assert panel.export(out) == panel.model.rowCount()
    assert out.read_text().splitlines() == hidden.splitlines()

    panel.patient_data_box.setChecked(True)
    shown = "\n".join(panel.model.visible_lines())
    assert SECRET_NAME in shown
    rsp_row = next(r for r in range(panel.model.rowCount())
                   if "C-FIND-RSP" in panel.model.index(r, 5).data() and
                   SECRET_NAME in panel.model.index(r, 5).data())
    assert rsp_row >= 0
    panel.export(out)
    assert SECRET_NAME in out.read_text()

    panel.layer_boxes["pdu"].setChecked(True)
    assert panel.model.filter.layers == {"association", "dimse", "pdu"}
    panel.clear_button.click()
    assert panel.model.rowCount() == 0
    panel.set_recording(False)
