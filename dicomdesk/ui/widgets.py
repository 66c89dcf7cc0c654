"""Small widgets shared by the panels: the node picker and "Copy as command"."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QComboBox, QLabel, QWidget

from dicomdesk.ui.nodebook import NodeBook

__all__ = ["NodePicker", "StatusLabel", "copy_to_clipboard"]


def copy_to_clipboard(text: str) -> None:
    QGuiApplication.clipboard().setText(text)


class NodePicker(QComboBox):
    """A combo box of the address book's nodes that follows its changes, keeping the choice."""

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
