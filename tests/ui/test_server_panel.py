"""The in-process local server: listening state in the status bar, association log, port taken."""

from __future__ import annotations

import pytest
from peers import free_port

from dicomdesk import config


def _start(window, qtbot, port):
    window.server_panel.port_spin.setValue(port)
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status not in ("starting",)):
        window.server_panel.start_server()
    return window.server_host.state


def test_local_server_listens_and_logs_an_echo_association(window, qtbot):
    port = free_port()
    state = _start(window, qtbot, port)
    assert state.status == "listening", state
    assert window.server_status.text() == f"Local server DICOMDESK listening on port {port}"
    window.book.replace_all([config.Node("me", "DICOMDESK", "127.0.0.1", port)])
    worker = window.echo_panel.echo("me")
    with qtbot.waitSignal(worker.signals.done, timeout=10_000):
        pass
    assert window.echo_panel.state_text("me") == "● OK"
    panel = window.server_panel
    qtbot.waitUntil(lambda: any(r.event.state == "released" for r in panel.associations.records()),
                    timeout=5000)
    assert panel.associations.record(0).event.calling_aet == "DICOMDESK"
    with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                          check_params_cb=lambda s: s.status == "stopped"):
        window.server_host.stop()
    assert "stopped" in window.server_status.text()


def test_port_taken_is_reported_and_another_port_offered(window, qtbot, dcmtk_storescp):
    state = _start(window, qtbot, dcmtk_storescp.port)
    assert state.status == "port_taken"
    assert f"port {dcmtk_storescp.port} is taken" in window.server_status.text()
    assert not window.other_port_button.isHidden()
    assert window.other_port_button.text() == f"Use port {dcmtk_storescp.port + 1}"


def test_serve_copy_as_command(window):
    window.server_panel.port_spin.setValue(4242)
    window.server_panel.storage_edit.setText("/srv/dicom")
    assert window.server_panel.copy_command() == \
        "dicomdesk serve --port 4242 --aet DICOMDESK --storage /srv/dicom"


def test_preview_of_a_ct_image_is_decoded_in_a_worker(window, qtbot):
    import pydicom.data

    panel = window.server_panel
    with qtbot.waitSignal(panel.preview_ready, timeout=10_000) as blocker:
        panel.show_preview(pydicom.data.get_testdata_file("CT_small.dcm"))
    image = blocker.args[0]
    assert (image.width, image.height) == (128, 128)
    assert len(image.pixels) == 128 * 128 and len(set(image.pixels)) > 10
    assert panel.preview_label.pixmap() is not None and not panel.preview_label.pixmap().isNull()


def test_preview_of_a_non_image_says_why_in_words(window, qtbot, tmp_path):
    path = tmp_path / "x.dcm"
    path.write_text("not dicom")
    panel = window.server_panel
    worker_done = []
    panel.show_preview(str(path))
    panel._preview_worker.signals.done.connect(lambda: worker_done.append(True))
    qtbot.waitUntil(lambda: bool(worker_done), timeout=10_000)
    assert panel.preview_label.text().startswith("No preview: ")
