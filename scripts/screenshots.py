"""Render each panel of the window to a PNG (offscreen), for the README and for review.

Usage: python scripts/screenshots.py [OUT_DIR]   (default: build/screenshots)

Uses a throw-away settings file and address book in a temporary folder and does not start the
local server, so it touches neither the user's configuration nor the network.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str]) -> int:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from dicomdesk import config
    from dicomdesk.ui.assets import load_icon, load_style
    from dicomdesk.ui.main_window import PANELS, MainWindow

    out = Path(argv[0] if argv else "build/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication(["dicomdesk"])
    app.setWindowIcon(load_icon("dicomdesk"))
    app.setStyleSheet(load_style())
    with tempfile.TemporaryDirectory() as tmp:
        nodes = Path(tmp) / "nodes.toml"
        config.save_nodes(nodes, [
            config.Node("pacs", "PACS", "pacs.example.org", 104, "Main archive"),
            config.Node("modality", "CT01", "10.0.0.21", 11112, retrieve="get"),
        ])
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        settings.setValue("server/storage_dir", str(Path(tmp) / "storage"))
        window = MainWindow(settings=settings, nodes_path=nodes, autostart_server=False)
        window.resize(1100, 720)
        window.show()
        for row, (key, _title, _icon) in enumerate(PANELS):
            window.show_panel_row(row)
            app.processEvents()
            path = out / f"{row + 1}-{key}.png"
            window.grab().save(str(path))
            print(path)
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
