"""Application entry: a clear one-line refusal without a display; style and icons load."""

from __future__ import annotations

import sys

from dicomdesk.ui import app, assets


def test_main_without_display_prints_one_line_and_returns_2(monkeypatch, capsys):
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert app.main([]) == 2
    captured = capsys.readouterr()
    assert captured.err == "dicomdesk: no display found (set DISPLAY or use `dicomdesk serve`)\n"
    assert captured.out == ""


def test_display_detection_rules():
    assert not app.display_available({}, "linux")
    assert app.display_available({"DISPLAY": ":0"}, "linux")
    assert app.display_available({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert app.display_available({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert app.display_available({}, "win32")
    assert app.display_available({}, "darwin")


def test_style_sheet_and_every_icon_load(qapp):
    assert "sideBar" in assets.load_style()
    for name in ("dicomdesk", "echo", "query", "send", "server", "nodes"):
        icon = assets.load_icon(name)
        assert not icon.isNull(), name
        assert not icon.pixmap(32, 32).toImage().isNull()
