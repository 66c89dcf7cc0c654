"""Association doctor from the window: Diagnose on the Echo panel and on the Send panel."""

from __future__ import annotations

import pydicom.data

from dicomdesk import config
from dicomdesk.net import uids


def _wait_report(qtbot, dialog):
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=20_000)
    return dialog.report.toPlainText()


def test_echo_panel_diagnose_explains_what_storescp_accepts(window, qtbot, dcmtk_storescp):
    window.book.replace_all([config.Node("scp", "STORESCP", "127.0.0.1", dcmtk_storescp.port)])
    window.echo_panel.select("scp")
    dialog = window.echo_panel.diagnose_selected()
    report = _wait_report(qtbot, dialog)
    assert dialog.result.ok
    assert "CT Image Storage: accepted with Explicit VR Little Endian" in report
    assert "Peer maximum PDU length: 16384 bytes" in report
    dialog.close()


def test_send_panel_diagnose_names_the_refusal_for_the_queued_file(window, qtbot, pynetdicom_scp):
    scp = pynetdicom_scp([uids.MR_IMAGE_STORAGE])
    window.book.replace_all([config.Node("mr only", scp.aet, "127.0.0.1", scp.port)])
    panel = window.send_panel
    with qtbot.waitSignal(panel.scan_finished, timeout=20_000):
        panel.add_paths([pydicom.data.get_testdata_file("CT_small.dcm")])
    panel.node_picker.select("mr only")
    dialog = panel.diagnose()
    report = _wait_report(qtbot, dialog)
    assert "CT Image Storage: refused: abstract syntax not supported" in report
    assert "Files: 1 selected; 0 as they are, 1 cannot be sent" in report
    dialog.close()


def test_diagnose_of_a_node_that_rejects_us_says_why(window, qtbot, pynetdicom_scp):
    scp = pynetdicom_scp(require_called_aet=True)
    window.book.replace_all([config.Node("wrong", "NOT-IT", "127.0.0.1", scp.port)])
    window.echo_panel.select("wrong")
    dialog = window.echo_panel.diagnose_selected()
    report = _wait_report(qtbot, dialog)
    assert not dialog.result.ok
    assert "called AE title not recogni" in report
    assert "could not be established" in dialog.heading.text()
    dialog.close()
