"""What every panel shares: the task tracker, the address book and the local server host."""

from __future__ import annotations

from dataclasses import dataclass

from dicomdesk.ui.nodebook import NodeBook
from dicomdesk.ui.server_host import ServerHost
from dicomdesk.ui.workers import TaskTracker

__all__ = ["UiContext"]


@dataclass
class UiContext:
    """Handed to each panel by the main window (GUI thread objects only)."""

    tracker: TaskTracker
    book: NodeBook
    server: ServerHost

    def local_aet(self) -> str:
        """Our AE title: the Calling AE of every request and the C-MOVE destination (PS3.4 C.4.2)."""
        return self.server.state.aet

    def storage_dir(self) -> str:
        return self.server.state.storage_dir
