"""Issue 17's missing services in the window: echo of a typed address (and of the Nodes form),
the empty Echo panel's hint, and C-MOVE to a third node, against real peers."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.data
from peers import LOCALHOST, free_port, run_dcmtk, start_storescp
from PySide6.QtCore import Qt

from dicomdesk import config, operations

PEER_FILES = ("CT_small.dcm", "MR_small.dcm")


def test_the_empty_echo_panel_says_how_to_add_a_node_and_a_typed_address_is_echoed(
        window, qtbot, dcmtk_storescp):
    window.show()
    window.show_panel("echo")
    panel = window.echo_panel
    assert panel.empty_hint.isVisible()
    assert "Add one in <b>Nodes</b>" in panel.empty_hint.text()
    qtbot.keyClicks(panel.host_edit, LOCALHOST)
    panel.port_edit.clear()
    qtbot.keyClicks(panel.port_edit, str(dcmtk_storescp.port))
    panel.aet_edit.clear()
    qtbot.keyClicks(panel.aet_edit, "STORESCP")
    name = f"{LOCALHOST}:{dcmtk_storescp.port}"
    qtbot.mouseClick(panel.echo_address_button, Qt.MouseButton.LeftButton)
    worker = panel._workers.get(name)  # the echo starts on the click
    assert worker is not None
    with qtbot.waitSignal(worker.signals.done, timeout=20_000):
        pass
    assert panel.state_text(name) == "● OK"
    assert window.book.find(name) is None  # not saved as a node
    assert panel.copy_command() == (f"dicomdesk echo {LOCALHOST} {dcmtk_storescp.port} "
                                    "--aet DICOMDESK --aec STORESCP")
    # a closed port: red, with the reason
    closed = free_port()
    panel.port_edit.setText(str(closed))
    worker = panel.echo_typed()
    with qtbot.waitSignal(worker.signals.done, timeout=20_000):
        pass
    assert panel.state_text(f"{LOCALHOST}:{closed}") == "● Failed"
    assert "refused" in panel.message_text(f"{LOCALHOST}:{closed}").lower()


def test_an_echo_from_the_nodes_form_appears_in_the_echo_panel(window, qtbot, dcmtk_storescp):
    window.book.replace_all([config.Node("scp", "STORESCP", LOCALHOST, dcmtk_storescp.port)])
    nodes = window.nodes_panel
    nodes.list.setCurrentRow(0)
    with qtbot.waitSignal(nodes.echoed, timeout=20_000):
        nodes.echo()
    assert window.echo_panel.state_text("scp") == "● OK"
    assert not window.echo_panel.empty_hint.isVisibleTo(window.echo_panel)


def test_c_move_to_a_third_node_from_the_query_panel(window, qtbot, tmp_path):
    third = start_storescp(tmp_path, aet="THIRD")
    settings = config.ServerSettings(aet="PACS", port=0, bind=LOCALHOST,
                                     storage_dir=tmp_path / "pacs", durable=False)
    server = operations.LocalServer(
        settings, nodes=[config.Node("third", "THIRD", LOCALHOST, third.port)]).start()
    try:
        files = [pydicom.data.get_testdata_file(n) for n in PEER_FILES]
        done = run_dcmtk("storescu", "-aec", "PACS", LOCALHOST, str(server.port), *files)
        assert done.returncode == 0, done.stderr
        window.book.replace_all([config.Node("pacs", "PACS", LOCALHOST, server.port),
                                 config.Node("third", "THIRD", LOCALHOST, third.port)])
        panel = window.query_panel
        panel.node_picker.select("pacs")
        with qtbot.waitSignal(panel.search_finished, timeout=20_000):
            panel.search()
        assert panel.model.study_count() == 2
        panel.method_combo.setCurrentIndex(panel.method_combo.findData("move_to"))
        assert not panel.dest_picker.isHidden()
        panel.dest_picker.select("third")
        selection = panel.tree.selectionModel()
        for row in range(panel.model.rowCount()):
            selection.select(panel.model.index(row, 0),
                             selection.SelectionFlag.Select | selection.SelectionFlag.Rows)
        assert not window.server_host.is_running  # a third node needs no local server
        with qtbot.waitSignal(panel.retrieve_finished, timeout=30_000) as blocker:
            panel.retrieve()
        assert blocker.args[0] == "2 completed in 2 retrieves."
        received = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                    for p in Path(third.output_dir).iterdir()}
        assert received == {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
                            for f in files}
        command = panel.copy_retrieve_command()
        assert "--dest THIRD" in command
    finally:
        server.stop()
        third.stop()
