"""The address book of remote nodes, shared by every panel, over the TOML file of ``config``.

Read and written on the GUI thread only (ARCHITECTURE: settings are read there and passed down as
values); the file is small, and ``config`` validates every field (AE titles per PS3.5 6.2).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

__all__ = ["NodeBook"]

_log = logging.getLogger(__name__)


class NodeBook(QObject):
    """The list of ``config.Node`` values; ``changed`` fires after every successful save."""

    #: ``list[config.Node]``, the whole book after a load or a save
    changed = Signal(list)

    def __init__(self, path: str | Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path) if path is not None else None
        self._nodes: list[Any] = []
        self.load_error = ""

    def load(self) -> None:
        """Read the TOML file; a missing file is an empty book, a broken one is reported."""
        from dicomdesk import config

        if self.path is None:
            self.path = Path(config.default_nodes_path())
        self.load_error = ""
        if not self.path.exists():
            self._nodes = []
        else:
            try:
                self._nodes = list(config.load_nodes(self.path))
            except (config.ConfigError, OSError) as exc:
                self.load_error = f"Could not read the address book {self.path}: {exc}"
                _log.warning("%s", self.load_error)
                self._nodes = []
        self.changed.emit(self.nodes)

    @property
    def nodes(self) -> list[Any]:
        return list(self._nodes)

    def find(self, name: str) -> Any | None:
        return next((n for n in self._nodes if n.name == name), None)

    def replace_all(self, nodes: list[Any]) -> None:
        """Write ``nodes`` to the file, then publish them; raises ConfigError/OSError on failure."""
        from dicomdesk import config

        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        config.save_nodes(self.path, list(nodes))
        self._nodes = list(nodes)
        self.changed.emit(self.nodes)
