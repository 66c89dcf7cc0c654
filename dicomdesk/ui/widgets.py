"""Small widgets shared by the panels: the node picker, "Copy as command", remembered view state."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QComboBox, QLabel, QWidget

from dicomdesk.ui.nodebook import NodeBook

__all__ = ["NodePicker", "StatusLabel", "copy_to_clipboard", "restore_view_state",
           "save_view_state"]


def restore_view_state(settings: QSettings, key: str, view: Any) -> None:
    """Column widths or splitter positions remembered under ``layout/<key>`` (``view`` is a
    QHeaderView or a QSplitter: anything with ``saveState``/``restoreState``)."""
    state = settings.value(f"layout/{key}")
    if isinstance(state, QByteArray) and not state.isEmpty():
        view.restoreState(state)


def save_view_state(settings: QSettings, key: str, view: Any) -> None:
    settings.setValue(f"layout/{key}", view.saveState())


def copy_to_clipboard(text: str, source: QWidget | None = None) -> None:
    """Put ``text`` on the clipboard; with ``source``, its window's status bar confirms it
    ("Copy as command" otherwise gives no sign that anything happened)."""
    QGuiApplication.clipboard().setText(text)
    window = source.window() if source is not None else None
    status_bar = getattr(window, "statusBar", None)
    if text and callable(status_bar):
        first = text.splitlines()[0]
        more = len(text.splitlines()) - 1
        shown = first if len(first) <= 90 else first[:87] + "…"
        status_bar().showMessage(
            f"Copied to the clipboard: {shown}" + (f" (+{more} more line(s))" if more else ""), 6000)


class NodePicker(QComboBox):
    """A combo box of the address book's nodes that follows its changes, keeping the choice."""

    #: the combo box's text after the choice changed (the node's label; "" when none)
    node_changed = Signal(str)

    def __init__(self, book: NodeBook, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._book = book
        self.setMinimumContentsLength(16)
        book.changed.connect(self._refill)
        self.currentTextChanged.connect(self.node_changed)
        self._refill(book.nodes)

    def _refill(self, nodes: list[Any]) -> None:
        current = self.currentData()
        self.blockSignals(True)
        self.clear()
        for node in nodes:
            self.addItem(f"{node.name}  ({node.aet}@{node.host}:{node.port})", node.name)
        if current is not None:
            self.select(current)
        self.blockSignals(False)
        self.node_changed.emit(self.currentData() or "")

    def select(self, name: str) -> None:
        index = self.findData(name)
        if index >= 0:
            self.setCurrentIndex(index)

    def node(self) -> Any | None:
        name = self.currentData()
        return self._book.find(name) if name else None


class StatusLabel(QLabel):
    """A one-line outcome under an action: plain, success (green) or failure (red)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setObjectName("statusLabel")

    def show_message(self, text: str, kind: str = "info") -> None:
        self.setProperty("kind", kind)
        self.setText(text)
        self.style().unpolish(self)
        self.style().polish(self)
