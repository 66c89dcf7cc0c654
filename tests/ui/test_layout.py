"""Looks: at 1280x800 and 1920x1080 every panel fits, nothing is clipped or overlaps; the
window is titled and has an icon; the desktop entry names the installed program and icon."""

from __future__ import annotations

import configparser
import itertools
from pathlib import Path

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QLabel,
    QLayout,
    QWidget,
)

from dicomdesk import config
from dicomdesk.ui.main_window import PANELS

ROOT = Path(__file__).resolve().parents[2]


def _layout_widgets(layout: QLayout) -> list[QWidget]:
    """Widgets placed by ``layout`` and its nested layouts (the ones that must not overlap)."""
    found: list[QWidget] = []
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item.widget() is not None:
            found.append(item.widget())
        elif item.layout() is not None:
            found += _layout_widgets(item.layout())
    return found


def _problems(root: QWidget) -> list[str]:
    problems = []
    for widget in [root, *root.findChildren(QWidget)]:
        if not widget.isVisible() or widget.isWindow():
            continue
        parent = widget.parentWidget()
        name = f"{type(widget).__name__}({widget.objectName() or getattr(widget, 'text', lambda: '')()!r})"
        if parent is not None and widget is not root and not parent.rect().contains(widget.geometry()):
            problems.append(f"{name} {widget.geometry()} is outside its parent {parent.rect()}")
        if isinstance(widget, (QAbstractButton, QLabel)) and not (
                isinstance(widget, QLabel) and widget.wordWrap()):
            hint = widget.minimumSizeHint()
            if widget.width() < hint.width() or widget.height() < hint.height():
                problems.append(f"{name} is clipped: {widget.size()} < {hint}")
        layout = widget.layout()
        if layout is not None:
            placed = [w for w in _layout_widgets(layout) if w.isVisible() and not w.isWindow()]
            for a, b in itertools.combinations(placed, 2):
                if a.geometry().intersects(b.geometry()):
                    problems.append(f"{type(a).__name__} and {type(b).__name__} overlap in "
                                    f"{type(widget).__name__}: {a.geometry()} / {b.geometry()}")
    return problems


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)], ids=["1280x800", "1920x1080"])
def test_every_panel_fits_without_clipping_or_overlap(make_window, qtbot, size):
    window = make_window()
    window.book.replace_all([config.Node("a node with a long name", "LONGAETITLE16CHR",
                                         "pacs.hospital.example.org", 11112)])
    window.echo_panel.details_button.setChecked(True)  # the optional part shown too
    window.nodes_panel.tls_group.setChecked(True)
    window.show()
    qtbot.waitExposed(window)
    window.resize(*size)
    QApplication.processEvents()
    assert (window.width(), window.height()) == size
    for row, (key, _title, _icon) in enumerate(PANELS):
        window.show_panel_row(row)
        QApplication.processEvents()
        panel = window.panel(key)
        assert window.stack.currentWidget() is panel
        room = window.stack.size()
        hint = panel.minimumSizeHint()
        assert hint.width() <= room.width() and hint.height() <= room.height(), (key, hint, room)
        assert QRect(0, 0, room.width(), room.height()).contains(panel.geometry())
        assert _problems(panel) == [], key
    assert _problems(window.statusBar()) == []
    assert _problems(window.side_bar) == []


def test_window_title_names_dicomdesk_and_the_application_has_an_icon(window):
    from dicomdesk.ui.app import main  # noqa: F401  (the entry point sets the app icon)

    assert "dicomdesk" in window.windowTitle()
    assert not window.windowIcon().isNull()
    icon = window.windowIcon()
    assert icon.availableSizes() and max(s.width() for s in icon.availableSizes()) >= 128


def test_desktop_entry_runs_the_program_and_names_the_shipped_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive (Desktop Entry Specification)
    entry.read(ROOT / "resources" / "dicomdesk.desktop", encoding="utf-8")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application"
    assert desktop["Name"] == "dicomdesk"
    assert desktop["Exec"].split()[0] == "dicomdesk"
    # Icon= is a theme icon name (no path, no extension) with a matching file shipped with it
    assert desktop["Icon"] == "dicomdesk"
    assert (ROOT / "resources" / f"{desktop['Icon']}.svg").is_file()
    assert desktop["Terminal"] == "false"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dicomdesk = "' in pyproject  # the console script Exec= runs
