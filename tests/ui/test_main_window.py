"""The window opens with every panel, navigates by side bar and shortcuts, remembers choices."""

from __future__ import annotations

from PySide6.QtCore import Qt

from dicomdesk.ui.main_window import PANELS


def test_window_opens_titled_with_icon_and_all_panels(window, qtbot):
    window.show()
    qtbot.waitExposed(window)
    assert window.windowTitle() == "dicomdesk"
    assert not window.windowIcon().isNull()
    assert window.side_bar.count() == len(PANELS) == 7
    assert window.stack.count() == 7
    for row in range(window.side_bar.count()):
        assert not window.side_bar.item(row).icon().isNull()
    assert [window.side_bar.item(r).text() for r in range(7)] == [t for _, t, _ in PANELS]


def test_view_shortcuts_switch_panels(window, qtbot):
    window.show()
    qtbot.waitExposed(window)
    shortcuts = [a.shortcut().toString() for a in window.panel_actions]
    assert shortcuts == ["Ctrl+1", "Ctrl+2", "Ctrl+3", "Ctrl+4", "Ctrl+5", "Ctrl+6", "Ctrl+7"]
    window.panel_actions[4].trigger()
    assert window.stack.currentWidget() is window.nodes_panel
    window.panel_actions[2].trigger()
    assert window.stack.currentWidget() is window.send_panel
    window.activateWindow()
    qtbot.waitActive(window)
    qtbot.keyClick(window.windowHandle(), Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    # A click on a QWindow presses no modifier key, so none is released: let go of Ctrl, or
    # the application believes it is still held in every later test (tests/ui/conftest.py).
    qtbot.keyRelease(window.windowHandle(), Qt.Key.Key_Control, Qt.KeyboardModifier.NoModifier)
    assert window.stack.currentWidget() is window.query_panel


def test_file_menu_has_add_files_and_quit_shortcuts(window):
    assert window.add_files_action.shortcut().toString() == "Ctrl+O"
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"


def test_status_bar_shows_stopped_server_and_no_transfer(window):
    assert "DICOMDESK" in window.server_status.text()
    assert "stopped" in window.server_status.text()
    assert window.transfers_status.text() == "No transfer under way"


def test_last_panel_and_query_form_are_remembered(make_window, ui_settings):
    first = make_window()
    first.show_panel("send")
    first.query_panel.patient_name_edit.setText("DOE*")
    first.query_panel.date_combo.setCurrentText("Last week")
    first.close()
    second = make_window()
    assert second.current_panel_key() == "send"
    assert second.query_panel.patient_name_edit.text() == "DOE*"
    assert second.query_panel.date_combo.currentText() == "Last week"


def test_closing_during_a_transfer_asks_then_cancels_and_closes(make_window, qtbot):
    from dicomdesk.ui.workers import OperationWorker

    window = make_window()
    window.show()
    asked: list[int] = []
    answers = iter([False, True])

    def confirm(count):
        asked.append(count)
        return next(answers)

    window.confirm_close = confirm
    worker = window.tracker.start(OperationWorker(lambda ctx: ctx.cancel.wait(20), "slow"),
                                  transfer=True)
    assert window.transfers_status.text() == "1 transfer under way"
    window.close()
    assert asked == [1] and window.isVisible() and not worker.cancel_requested
    window.close()
    assert asked == [1, 1] and worker.cancel_requested
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20_000)
