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
                    timeout=20_000)
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
    panel.preview.worker.signals.done.connect(lambda: worker_done.append(True))
    qtbot.waitUntil(lambda: bool(worker_done), timeout=10_000)
    assert panel.preview_label.text().startswith("No preview: ")


def test_dcmtk_storescu_to_the_in_app_server_fills_the_logs_and_forwards(window, qtbot, dcmtk_storescp,
                                                                         tmp_path):
    """Flow "bytes to row": storescu → in-app server → association log + received objects; a
    forwarding rule from the settings file sends the object on to a DCMTK storescp found in the
    window's own address book (not the user's default one)."""
    import pydicom.data
    from peers import run_dcmtk

    window.book.replace_all([config.Node("pacs", "STORESCP", "127.0.0.1", dcmtk_storescp.port)])
    settings_path = config.default_settings_path()
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    settings_path.write_text('[server]\nforward_rules = [{destinations = ["pacs"]}]\n')
    try:
        window.server_panel.storage_edit.setText(str(tmp_path / "archive"))
        port = free_port()
        assert _start(window, qtbot, port).status == "listening"
        ct = pydicom.data.get_testdata_file("CT_small.dcm")
        result = run_dcmtk("storescu", "-aec", "DICOMDESK", "127.0.0.1", str(port), ct)
        assert result.returncode == 0, result.stdout + result.stderr
        panel = window.server_panel
        qtbot.waitUntil(lambda: panel.stored.rowCount() == 1, timeout=10_000)
        stored = panel.stored.record(0).event
        assert stored.path is not None and stored.path.exists()
        assert stored.calling_aet == "STORESCU"
        qtbot.waitUntil(lambda: any(r.event.state == "released" for r in panel.associations.records()),
                        timeout=20_000)
        qtbot.waitUntil(lambda: any(r.event.state == "done" for r in panel.forwarding.records()),
                        timeout=15_000)
        forwarded = list(dcmtk_storescp.output_dir.iterdir())
        assert len(forwarded) == 1
        with qtbot.waitSignal(panel.preview_ready, timeout=10_000):
            panel.show_preview(str(stored.path))
    finally:
        settings_path.unlink()
        with qtbot.waitSignal(window.server_host.state_changed, timeout=10_000,
                              check_params_cb=lambda s: s.status == "stopped"):
            window.server_host.stop()


def test_the_network_stack_the_server_imported_is_out_of_the_collectors_sight(window, qtbot):
    """The in-window server imports the network stack and the archive after the window
    settled its heap (ui/app.py); once it listens they are frozen as well (gc.freeze), so a
    full collection — often run by the GUI thread — no longer walks them (45-100 ms pauses
    of the GUI thread measured while browsing a 1M archive with the server running)."""
    import gc

    state = _start(window, qtbot, free_port())
    assert state.status == "listening"
    from dicomdesk.net.applicationentity import AE
    from dicomdesk.operations.server import LocalServer

    tracked = {id(o) for o in gc.get_objects()}  # the frozen generation is not listed
    assert id(AE) not in tracked and id(LocalServer) not in tracked
