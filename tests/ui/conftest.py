"""Fixtures for the desktop application tests: real widgets, offscreen, isolated settings.

QT_QPA_PLATFORM must be set before Qt loads its platform plugin, i.e. before pytest-qt creates
the QApplication; conftest modules are imported before any test, so this is early enough.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# What the main window sets before its first paint (ui/workers.favour_gui_thread); set here
# too because Qt reads it once per process and a test may paint before any window exists.
os.environ.setdefault("QT_NO_GUI_THREADPOOL", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from dicomdesk.ui.main_window import MainWindow  # noqa: E402


@pytest.fixture(autouse=True)
def no_key_left_held():
    """Fail the test that leaves a keyboard modifier "held" in the application: Qt keeps the
    modifiers of the last key event (``QTest.keyClick`` on a QWindow with Ctrl leaves Ctrl
    down), and every later test would then select and click with Ctrl held."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication

    yield
    if QGuiApplication.instance() is not None:
        held = QGuiApplication.keyboardModifiers()
        assert held == Qt.KeyboardModifier.NoModifier, f"the test left {held} held"


@pytest.fixture
def ui_settings(tmp_path: Path) -> QSettings:
    """QSettings in tmp_path: tests never read or write the user's real settings."""
    return QSettings(str(tmp_path / "dicomdesk.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def nodes_path(tmp_path: Path) -> Path:
    return tmp_path / "nodes.toml"


@pytest.fixture
def make_window(qtbot, ui_settings: QSettings, nodes_path: Path, tmp_path: Path):
    """Factory for a MainWindow over tmp_path; the local server does not start unless asked."""
    windows: list[MainWindow] = []
    ui_settings.setValue("server/storage_dir", str(tmp_path / "storage"))

    def make(autostart_server: bool = False, settings: QSettings | None = None) -> MainWindow:
        window = MainWindow(settings=settings or ui_settings, nodes_path=nodes_path,
                            autostart_server=autostart_server)
        window.confirm_close = lambda count: True  # type: ignore[method-assign]
        qtbot.addWidget(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.tracker.cancel_all()
        window.server_host.stop_now()
        window.tracker.wait(10_000)


@pytest.fixture
def window(make_window) -> Iterator[MainWindow]:
    yield make_window()
