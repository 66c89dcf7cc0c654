"""Application entry: a clear one-line refusal without a display; style and icons load."""

from __future__ import annotations

import os
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


def _run_app_and_interrupt(tmp_path, extra_env=None, after_signal=None):
    """Start ``dicomdesk`` (the window, offscreen) with its local server on a free port, send
    SIGINT as soon as that port accepts, and return (exit status, stderr)."""
    import os
    import signal
    import subprocess

    from tests.peers import free_port, wait_for_port

    port = free_port()
    config = tmp_path / "config" / "dicomdesk"
    config.mkdir(parents=True)
    (config / "dicomdesk.conf").write_text(
        f"[server]\nport={port}\nstorage_dir={tmp_path / 'storage'}\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"), **(extra_env or {}))
    child = subprocess.Popen([sys.executable, "-m", "dicomdesk"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, timeout=30)
        child.send_signal(signal.SIGINT)
        if after_signal is not None:
            after_signal()
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return child.returncode, err


def test_ctrl_c_closes_the_window_and_stops_its_server(tmp_path):
    """SIGINT to the running app (Ctrl-C in the terminal that started it) closes the window
    like its close button: the local server stops and the process exits 0, with no
    KeyboardInterrupt traceback — even while the event loop is idle."""
    returncode, err = _run_app_and_interrupt(tmp_path)
    assert returncode == 0, err
    assert "Traceback" not in err, err


def test_ctrl_c_while_the_window_is_still_opening_closes_it_too(tmp_path):
    """The window's local server listens (on a worker thread) before the window is shown, so a
    script can signal the app at that moment. A sitecustomize holds ``show()`` until the test
    has sent SIGINT (what a busy machine does by chance): the signal must close the window once
    the event loop runs, not raise KeyboardInterrupt (exit 1, the old handler came too late)."""
    import textwrap

    hold = tmp_path / "hold"
    hold.mkdir()
    released = tmp_path / "signal-sent"
    (hold / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import pathlib, time
        from PySide6.QtWidgets import QMainWindow

        _show = QMainWindow.show

        def show(self):
            deadline = time.monotonic() + 30
            while not pathlib.Path({str(released)!r}).exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # the test's SIGINT arrives in here
            _show(self)

        QMainWindow.show = show
    """))
    returncode, err = _run_app_and_interrupt(
        tmp_path, extra_env={"PYTHONPATH": os.pathsep.join(filter(None, (
            str(hold), os.environ.get("PYTHONPATH"))))},
        after_signal=released.touch)
    assert returncode == 0, err
    assert "Traceback" not in err, err
