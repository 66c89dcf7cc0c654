"""Icons and the style sheet, from the ``dicomdesk.resources`` package or the source tree.

The packaged location is ``dicomdesk.resources`` (pyproject maps it to the top-level
``resources/`` folder); when running from a checkout that mapping does not exist, so the
repository's ``resources/`` folder is used instead.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path
from typing import Any

__all__ = ["load_icon", "load_style", "resource_text", "resources_root"]

_log = logging.getLogger(__name__)
_SOURCE_ROOT = Path(__file__).resolve().parents[2] / "resources"


def resources_root() -> Any:
    """A Traversable for the resources folder (installed package first, then the checkout)."""
    try:
        root = importlib.resources.files("dicomdesk.resources")
        if root.joinpath("style.qss").is_file():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    return _SOURCE_ROOT


def resource_text(name: str) -> str:
    try:
        return resources_root().joinpath(name).read_text(encoding="utf-8")
    except OSError:
        _log.warning("resource %s not found", name)
        return ""


def load_icon(name: str) -> Any:
    """QIcon from ``<name>.svg`` rendered by QtSvg (null icon if missing)."""
    from PySide6.QtCore import QByteArray, Qt
    from PySide6.QtGui import QIcon, QPainter, QPixmap
    from PySide6.QtSvg import QSvgRenderer

    data = resource_text(f"{name}.svg")
    if not data:
        return QIcon()
    renderer = QSvgRenderer(QByteArray(data.encode("utf-8")))
    if not renderer.isValid():
        _log.warning("icon %s is not a valid SVG", name)
        return QIcon()
    icon = QIcon()
    for size in (16, 24, 32, 48, 64, 128, 256):
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        renderer.render(painter)
        painter.end()
        icon.addPixmap(pixmap)
    return icon


def load_style() -> str:
    return resource_text("style.qss")
