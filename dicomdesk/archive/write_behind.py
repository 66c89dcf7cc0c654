"""A write-behind queue: items handed over now, written later in batches by one thread.

Why: indexing one received object costs a SQLite transaction (CPU and a dozen page writes to
the WAL; docs/internals.md, timings), and it sat between the last data PDU and the C-STORE response, where
the sending peer waits for it. The file itself is already in its final place when the response
goes out — the index is derived from the files (``Archive.recover`` rebuilds any row a crash
loses) — so the row can be written just after, by a helper thread, several rows per
transaction while a burst of objects arrives.

Readers must still see their own writes: a C-FIND or C-MOVE that follows a C-STORE response
must find that object. ``wait_idle`` blocks until every item handed over so far is written;
the index calls it at the start of every read. The thread sleeps on a condition until
work arrives (no polling); with ``linger`` it then waits that long for more items (a burst
of objects becomes one transaction) unless a reader is waiting; ``close`` writes what is
left before it returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class WriteBehind(Generic[T]):
    """Hand items to ``write_batch`` on a helper thread, in order, a batch at a time.

    ``write_batch(items)`` is called with every item queued since the previous call (at most
    ``max_batch``); an exception it raises is logged and the batch's items are dropped (the
    caller's recovery path owns them), so one bad batch never stops the thread.
    """

    def __init__(self, write_batch: Callable[[Sequence[T]], None], *, name: str,
                 max_batch: int = 256, linger: float = 0.0) -> None:
        self._write_batch = write_batch
        self._name = name
        self._max_batch = max_batch
        self._linger = linger
        self._flush_now = False  # someone waits in wait_idle or close: no lingering
        self._cond = threading.Condition()
        self._queue: list[T] = []
        self._busy = False  # a batch taken from the queue is being written
        self._closed = False
        # Started now, not at the first item: a server's thread count is steady from the start.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def on_writer_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, item: T) -> None:
        """Queue ``item``; raises RuntimeError once closed (write it synchronously then)."""
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name}: closed")
            self._queue.append(item)
            if (len(self._queue) == 1 and not self._busy) or len(self._queue) == self._max_batch:
                self._cond.notify_all()  # the writer waits for a first item, or lingers for more

    def wait_idle(self) -> None:
        """Return once every item submitted before this call is written (at once on the writer)."""
        if self.on_writer_thread:
            return
        with self._cond:
            while self._queue or self._busy:
                self._flush_now = True
                self._cond.notify_all()
                self._cond.wait()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if not self.on_writer_thread:
            self._thread.join()

    def _linger_for_more(self) -> None:
        """With the first item queued, wait up to ``linger`` s for a batch to fill (called
        with the condition held). A deadline while work is pending, never an idle wake-up;
        a reader (``wait_idle``) or ``close`` ends it at once."""
        if self._linger <= 0:
            return
        deadline = time.monotonic() + self._linger
        while len(self._queue) < self._max_batch and not self._closed and not self._flush_now:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()  # wake wait_idle callers
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                self._linger_for_more()
                self._flush_now = False
                batch = self._queue[:self._max_batch]
                del self._queue[:self._max_batch]
                self._busy = True
            try:
                self._write_batch(batch)
            except Exception:  # the caller's recovery owns the items; the thread goes on
                logger.exception("%s: %d queued writes failed", self._name, len(batch))
