"""What the archive raises: misuse, and the refusal of a received object (PS3.4 B.2.3)."""

from __future__ import annotations


class ArchiveError(Exception):
    """The archive was misused (e.g. writing to a read-only archive)."""


class ArchiveRefusal(Exception):
    """A received object the archive will not keep; ``status`` is the C-STORE status to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"0x{status:04X}: {reason}")
        self.status = status
        self.reason = reason

