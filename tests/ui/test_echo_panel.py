"""Echo panel against real peers: green for DCMTK storescp, red with a reason for a closed port."""

from __future__ import annotations

from peers import free_port

from dicomdesk import config


def _run_echo(window, qtbot, name):
    worker = window.echo_panel.echo(name)
    with qtbot.waitSignal(worker.signals.done, timeout=20_000):
        pass
    return window.echo_panel


def test_echo_to_storescp_turns_green_with_round_trip(window, qtbot, dcmtk_storescp):
    window.book.replace_all([config.Node("scp", "STORESCP", "127.0.0.1", dcmtk_storescp.port)])
    panel = _run_echo(window, qtbot, "scp")
    assert panel.state_text("scp") == "● OK"
    row = panel.row_of("scp")
    assert panel.table.item(row, 3).text().endswith(" ms")
    panel.details_button.setChecked(True)
    assert "Peer implementation class UID: 1.2.276.0.7230010" in panel.details.toPlainText()


def test_echo_to_closed_port_turns_red_with_a_reason_in_words(window, qtbot):
    window.book.replace_all([config.Node("gone", "GONE", "127.0.0.1", free_port())])
    panel = _run_echo(window, qtbot, "gone")
    assert panel.state_text("gone") == "● Failed"
    message = panel.message_text("gone")
    assert message and "Traceback" not in message
    assert "refused" in message.lower() or "not" in message.lower()


def test_echo_all_echoes_every_node(window, qtbot, dcmtk_storescp):
    window.book.replace_all([
        config.Node("scp", "STORESCP", "127.0.0.1", dcmtk_storescp.port),
        config.Node("gone", "GONE", "127.0.0.1", free_port()),
    ])
    panel = window.echo_panel
    panel.echo_all()
    qtbot.waitUntil(lambda: not panel._workers, timeout=20_000)
    assert panel.state_text("scp") == "● OK"
    assert panel.state_text("gone") == "● Failed"


def test_echo_copy_as_command(window, qtbot):
    window.book.replace_all([config.Node("scp", "STORESCP", "127.0.0.1", 104)])
    window.echo_panel.select("scp")
    assert window.echo_panel.copy_command() == \
        "dicomdesk echo 127.0.0.1 104 --aet DICOMDESK --aec STORESCP"


def test_selecting_a_node_while_ctrl_is_held_keeps_it_selected(window, qtbot):
    """``select`` must not depend on the keyboard: with Ctrl held, ``QTableView.selectRow``
    toggles, so selecting the node that was already selected deselected it, and Copy as command
    or Diagnose then found no node (this failed after a test had typed Ctrl+2)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication

    window.book.replace_all([config.Node("scp", "STORESCP", "127.0.0.1", 104)])
    window.show()
    qtbot.waitExposed(window)
    assert window.echo_panel.selected_name() == "scp"  # the first node is selected on refill
    qtbot.keyPress(window.windowHandle(), Qt.Key.Key_Control, Qt.KeyboardModifier.ControlModifier)
    try:
        assert QGuiApplication.keyboardModifiers() == Qt.KeyboardModifier.ControlModifier
        window.echo_panel.select("scp")
        assert window.echo_panel.selected_name() == "scp"
        assert window.echo_panel.copy_command() == \
            "dicomdesk echo 127.0.0.1 104 --aet DICOMDESK --aec STORESCP"
    finally:
        qtbot.keyRelease(window.windowHandle(), Qt.Key.Key_Control, Qt.KeyboardModifier.NoModifier)
    assert QGuiApplication.keyboardModifiers() == Qt.KeyboardModifier.NoModifier
