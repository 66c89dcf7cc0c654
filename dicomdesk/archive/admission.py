"""Whether the archive accepts new objects now, and why not (PS3.4 B.2.3: 0xA700 Out of Resources).

A received object is refused when the disk is full (the journal's reserve had to be given to
the index, or less than the reserve is free beside it), when free space is below the
configured floor (``--min-free``), or when the index cannot be written. A refusal ends by
itself as soon as there is room again (``reason`` heals it: the archive reopens its index,
indexes what the journal kept, and remakes the reserve).

Free space is measured once per ``FREE_SPACE_CHECK_BYTES`` received, or a quarter of the room
the last measurement found, whichever is less — not once per object (one ``statvfs`` each).
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Callable

from .journal import Reserve

logger = logging.getLogger(__name__)

#: Received bytes after which free space is measured again at the latest (``Admission.due``).
FREE_SPACE_CHECK_BYTES = 64 << 20


class Admission:
    """The refusing state of one archive: ``refusal`` (None: new objects are accepted).

    ``reserve`` is the journal's reserve file, whose headroom is measured when ``journaled``
    (not for a read-only archive); ``min_free_bytes`` the floor of free space; ``heal`` is the
    archive's way back once the disk has room (True when its index takes rows again)."""

    def __init__(self, root: Path, reserve: Reserve, *, journaled: bool, min_free_bytes: int = 0,
                 heal: Callable[[], bool] = lambda: True) -> None:
        self.root = root
        self.reserve = reserve
        self.journaled = journaled
        self.min_free_bytes = min_free_bytes
        self.heal = heal
        #: Why new objects are refused (disk full, index unwritable); None: they are accepted.
        self.refusal: str | None = None
        self._lock = threading.Lock()
        #: Bytes received since free space was last measured, and how many may come before
        #: it is measured again (``due``); 0: at the next commit.
        self._unmeasured_bytes = 0
        self._measure_budget = 0

    def reason(self, *, measure: bool = True) -> str | None:
        """Why a new object would be refused now, or None. A full disk (the reserve given to
        the index) or an unwritable index ends as soon as there is room again: the reserve is
        made anew and the journal's unindexed objects are indexed first. ``measure=False``
        skips the free-space measurement (one ``statvfs``): the receiving side asks before
        the first byte, the commit measures."""
        if self.refusal is not None and self._heal() is not None:
            return self.refusal
        if not measure:
            return None
        self._unmeasured_bytes = 0
        self._measure_budget = 0
        budget = FREE_SPACE_CHECK_BYTES
        if self.journaled:
            headroom = self.reserve.headroom(held=True)
            if headroom < 0:
                self.refuse(f"disk full (less than {self.reserve.size} bytes free beside the reserve)")
                return self.refusal
            budget = min(budget, headroom // 4)
        if self.min_free_bytes > 0:
            free = shutil.disk_usage(self.root).free
            if free < self.min_free_bytes:
                return f"free space below {self.min_free_bytes} bytes"
            budget = min(budget, (free - self.min_free_bytes) // 4)
        self._measure_budget = budget
        return None

    def due(self, size: int | None) -> bool:
        """Whether the commit of an object of ``size`` bytes measures free space again
        (``reason``): after ``FREE_SPACE_CHECK_BYTES`` or a quarter of the room the last
        measurement found, whichever is less, were received since — not once per object
        (near a full disk the budget shrinks to every object)."""
        if size is None:
            return True
        self._unmeasured_bytes += size
        return self._unmeasured_bytes >= self._measure_budget

    def refuse(self, reason: str) -> None:
        """Refuse new objects from now on, for ``reason``."""
        # No lock: ``_heal`` holds its lock while it waits for the index thread, which calls this.
        if self.refusal is None:
            logger.error("refusing new objects: %s", reason)
        self.refusal = reason

    def _heal(self) -> str | None:
        """Leave the refusing state if the disk has room again; returns the reason if not."""
        with self._lock:
            if self.refusal is None:
                return None
            if not self.reserve.room():
                return self.refusal
            if not self.heal():
                return self.refusal
            logger.warning("accepting new objects again: %s is over", self.refusal)
            self.refusal = None
            return None
