"""An event-loop probe that tells our stalls from the machine's (bench/archive_scale.py and the
GUI tests over a large archive use it).

A QTimer ticks every ``period_ms`` on the GUI thread; each interval between two ticks is split,
with the kernel's own accounting of the GUI thread, into

- ``cpu``: the GUI thread's CPU time (``time.thread_time``): work done on the GUI thread in one
  go (a page inserted, rows laid out and painted, a slot);
- ``runqueue``: time the thread was runnable but waited for a core (``/proc/thread-self/
  schedstat``, second field): the scheduler serving other processes, which an application
  cannot prevent and which a shared 2-core machine makes large and random;
- ``blocked``: the rest, time the thread slept inside the process: waiting for the GIL held by
  a server or reader thread, a lock, disk I/O — and the idle wait for the next tick.

``own`` = wall - runqueue is the gap the event loop would have had if a core had been free
whenever the GUI thread could run: the part of a stall that the application causes, and the
figure a test can bound on a loaded CI machine without being flaky. Where the kernel has no
schedstat (``available`` False), ``runqueue`` is 0 and ``own`` is the wall time.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from PySide6.QtCore import QTimer

__all__ = ["Interval", "LoopProbe", "runqueue_wait_s"]

_SCHEDSTAT = "/proc/thread-self/schedstat"


def runqueue_wait_s() -> float | None:
    """Seconds the calling thread has spent runnable but not running (None: not available)."""
    try:
        with open(_SCHEDSTAT, "rb") as fp:
            return int(fp.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class Interval(NamedTuple):
    """One interval between two ticks (seconds) and when it ended (``perf_counter``)."""

    wall: float
    cpu: float
    runqueue: float
    end: float

    @property
    def own(self) -> float:
        """The gap without the scheduler's share: what our process made the loop wait."""
        return self.wall - self.runqueue

    @property
    def blocked(self) -> float:
        """Off-CPU and not runnable: waiting for the GIL, a lock, I/O, or the next tick."""
        return max(0.0, self.wall - self.cpu - self.runqueue)


class LoopProbe:
    """Start on the GUI thread; ``intervals`` grows by one per tick; ``mark`` names a phase."""

    def __init__(self, period_ms: int = 5) -> None:
        self.period_ms = period_ms
        self.timer = QTimer()
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self._tick)
        self.intervals: list[Interval] = []
        self.available = runqueue_wait_s() is not None
        self._last = (0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float]:
        return time.perf_counter(), time.thread_time(), runqueue_wait_s() or 0.0

    def start(self) -> None:
        self._last = self._now()
        self.timer.start()

    def _tick(self) -> None:
        now = self._now()
        wall, cpu, runqueue = (b - a for a, b in zip(self._last, now))
        self.intervals.append(Interval(wall, cpu, runqueue, now[0]))
        self._last = now

    def stop(self) -> None:
        self.timer.stop()

    def mark(self) -> int:
        """The number of intervals so far: slice ``intervals`` by phase with it."""
        return len(self.intervals)

    @staticmethod
    def summary(intervals: list[Interval]) -> dict[str, float]:
        """Longest wall gap, longest own gap, most GUI-thread CPU and most blocked time in one
        interval, in milliseconds (0 for no interval)."""
        def most(values: list[float]) -> float:
            return round(max(values, default=0.0) * 1000, 1)

        return {"max_gap_ms": most([i.wall for i in intervals]),
                "max_own_gap_ms": most([i.own for i in intervals]),
                "max_gui_cpu_ms": most([i.cpu for i in intervals]),
                "max_blocked_ms": most([i.blocked for i in intervals])}
