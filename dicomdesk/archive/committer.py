"""Durable commits out of line: fsyncs in parallel, placement in order, one journal fsync a batch.

Why: in durable mode each received object costs a file fsync (its data) and a journal fsync
(its entry, ``journal.py``) before its C-STORE response. Done in the association's thread
they add up with the transfer; a sender that keeps several C-STOREs outstanding (an
asynchronous operations window, PS3.7 D.3.3.3) lets the server receive object N+1 while
object N's data goes to disk. Here the file fsyncs of several objects run at once (the file
system serves concurrent fsyncs with one journal commit and one device flush), and the
objects are then placed strictly in the order they came — journal entries, renames, one
fsync of the journal folder for the whole batch, index rows queued — by one placer thread.

What does not change: an object's future is resolved only after its own data was fsynced
and its journal entry made durable by an fsync that started after the entry existed, so a
response sent on that result never acknowledges anything a crash could lose.
"""

from __future__ import annotations

import collections
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

logger = logging.getLogger(__name__)

#: Concurrent file fsyncs (they mostly wait on the disk, not the CPU).
FSYNC_WORKERS = 8
#: Objects placed under one journal fsync at most.
MAX_BATCH = 64


@dataclass
class CommitJob:
    """One received object between its checks and its placement.

    ``fp`` is the open temp file (fsynced and closed by a worker); ``place_args`` what the
    archive's placement needs; ``result`` resolves to what the placement returned, or the
    exception that refused the object.
    """

    fp: Any
    place_args: tuple
    result: Future = field(default_factory=Future)
    synced: Future | None = None


class Committer:
    """Runs ``place_batch(jobs)`` for fsynced jobs in submission order (one placer thread)."""

    def __init__(self, sync: Callable[[Any], None], place_batch: Callable[[list[CommitJob]], None],
                 *, workers: int = FSYNC_WORKERS) -> None:
        self._sync = sync  # fsync and close one temp file; raises to refuse the object
        self._place_batch = place_batch
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="archive-fsync")
        self._queue: collections.deque[CommitJob] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._placer = threading.Thread(target=self._run, name="archive-placer", daemon=True)
        self._placer.start()

    def submit(self, fp: Any, place_args: tuple) -> Future:
        """Queue a checked object: fsync ``fp`` now (in parallel), place it in its turn."""
        job = CommitJob(fp, place_args)
        with self._cond:
            if self._closing:
                raise RuntimeError("the archive is closing")
            job.synced = self._pool.submit(self._sync, fp)
            self._queue.append(job)
            self._cond.notify()
        return job.result

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                head = self._queue[0]
            assert head.synced is not None
            head.synced.exception()  # wait for the oldest object's data
            with self._cond:
                batch = []
                while self._queue and len(batch) < MAX_BATCH and self._queue[0].synced.done():
                    batch.append(self._queue.popleft())
            ready, failed = [], []
            for job in batch:
                exc = job.synced.exception()
                (failed if exc is not None else ready).append((job, exc))
            for job, exc in failed:
                job.result.set_exception(exc)
            if ready:
                try:
                    self._place_batch([job for job, _ in ready])
                except BaseException as exc:  # the placement's own bug: refuse, never hang
                    logger.exception("placing received objects failed")
                    for job, _ in ready:
                        if not job.result.done():
                            job.result.set_exception(exc)

    def close(self) -> None:
        """Place everything queued, then stop (the archive is closing)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._placer.join()
        self._pool.shutdown(wait=True)

