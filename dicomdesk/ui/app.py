"""Entry point of the desktop application (``dicomdesk`` with no sub-command).

Qt aborts the process when no platform plugin can connect to a display; on a headless Linux
machine we say so in one line and return 2 instead, pointing to ``dicomdesk serve``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

__all__ = ["NO_DISPLAY_MESSAGE", "display_available", "main"]

_log = logging.getLogger(__name__)

NO_DISPLAY_MESSAGE = "dicomdesk: no display found (set DISPLAY or use `dicomdesk serve`)"


def display_available(environ: Mapping[str, str] | None = None,
                      platform: str | None = None) -> bool:
    """False on Linux/BSD when no Qt platform is forced and neither X11 nor Wayland is set."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if environ.get("QT_QPA_PLATFORM"):
        return True
    if platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
    return True  # Windows and macOS always have their native platform


def _close_on_signals(app: object) -> Callable[[object], None]:
    """Ctrl-C (or ``kill``) closes the window the way its close button does, so the local
    server stops cleanly. Python runs a signal handler only when Python code runs, and the
    idle Qt event loop runs none: the signal is written to a pipe (``set_wakeup_fd``) that
    a QSocketNotifier watches, which gives Python the turn — no timer, no polling.

    Called before the window exists: the window starts its local server at once, on a worker
    thread, so the port may accept (and a script may signal us) before the window is shown. The
    handler therefore only queues the close (a zero-delay timer), which runs once the event loop
    does, on the window given to the returned function.
    """
    from PySide6.QtCore import QSocketNotifier, QTimer

    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd)
    notifier = QSocketNotifier(read_fd, QSocketNotifier.Type.Read, app)

    def drain() -> None:
        try:
            os.read(read_fd, 512)
        except BlockingIOError:
            pass

    notifier.activated.connect(drain)
    windows: list[object] = []

    def close_window() -> None:
        for window in windows:
            window.close()  # type: ignore[attr-defined]

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: QTimer.singleShot(0, close_window))
    return windows.append


def main(argv: Sequence[str] | None = None) -> int:
    """Open the main window and run the event loop; returns the exit status.

    ``argv`` are the arguments after the program name (Qt options such as ``-style``).
    """
    if not display_available():
        print(NO_DISPLAY_MESSAGE, file=sys.stderr)
        return 2
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    from dicomdesk.ui.assets import load_icon, load_style
    from dicomdesk.ui.main_window import MainWindow
    from dicomdesk.ui.workers import settle_heap

    QCoreApplication.setOrganizationName("dicomdesk")
    QCoreApplication.setApplicationName("dicomdesk")
    app = QApplication.instance() or QApplication(["dicomdesk", *(argv or [])])
    app.setApplicationDisplayName("dicomdesk")
    app.setDesktopFileName("dicomdesk")
    app.setWindowIcon(load_icon("dicomdesk"))
    app.setStyleSheet(load_style())
    close_on_signals = _close_on_signals(app)  # before the window: its server may listen at once
    window = MainWindow()
    close_on_signals(window)
    window.show()
    settle_heap()  # start-up objects live as long as the window: keep them out of full GCs
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
