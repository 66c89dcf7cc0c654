"""Waking a thread that sleeps in ``poll``: a wake descriptor, and events that ring it.

A DUL waits in one ``poll`` over its socket, a wake descriptor and the next deadline, so
nothing in the stack wakes on a timer. A cancel (``threading.Event``) set in another thread
(the GUI's cancel button) must end that wait at once: ``WakeableEvent.set`` runs the wakers
registered on it, and a DUL's waker writes to its ``WakeDescriptor``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Iterator


class WakeDescriptor:
    """A descriptor that becomes readable when ``wake()`` is called from any thread
    (an eventfd where the platform has one, else a pipe); ``clear()`` empties it."""

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            self._read_fd = self._write_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - Linux has eventfd
            self._read_fd, self._write_fd = os.pipe()
            os.set_blocking(self._read_fd, False)
            os.set_blocking(self._write_fd, False)
        self._closed = False
        # wake() may run in any thread: never write to a descriptor number that close()
        # has given back (it may be another file by then)
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self._read_fd

    def wake(self) -> None:
        """Make the descriptor readable (never blocks; a full counter is awake already)."""
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._write_fd, (1).to_bytes(8, "little"))
            except OSError:  # full: already awake
                pass

    def clear(self) -> None:
        """Consume every wake-up so far."""
        try:
            while os.read(self._read_fd, 8):
                if self._read_fd == self._write_fd:
                    break  # an eventfd read returns the whole counter at once
        except OSError:  # empty, or closed
            pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in {self._read_fd, self._write_fd}:
                try:
                    os.close(fd)
                except OSError:
                    pass


class WakeableEvent(threading.Event):
    """A ``threading.Event`` whose ``set()`` also calls the wakers registered on it."""

    def set(self) -> None:
        super().set()
        for waker in tuple(self.__dict__.get("_wakers", ())):
            waker()

    def add_waker(self, waker: Callable[[], None]) -> None:
        self.__dict__.setdefault("_wakers", []).append(waker)

    def remove_waker(self, waker: Callable[[], None]) -> None:
        try:
            self.__dict__.get("_wakers", []).remove(waker)
        except ValueError:
            pass


def wakeable(event: Any) -> WakeableEvent | None:
    """``event`` as a ``WakeableEvent``: a plain ``threading.Event`` (what the GUI and the
    operations are given) becomes one in place, so whoever holds it rings the wakers when
    it calls ``set()``. None for an object that cannot be (it is then only looked at when
    the DUL wakes for another reason)."""
    if isinstance(event, WakeableEvent):
        return event
    if type(event) is threading.Event:
        event.__class__ = WakeableEvent
        return event
    return None


@contextlib.contextmanager
def ringing(event: Any, waker: Callable[[], None]) -> Iterator[bool]:
    """While inside, ``event.set()`` calls ``waker``; yields whether it can (see ``wakeable``)."""
    target = wakeable(event) if event is not None else None
    if target is None:
        yield False
        return
    target.add_waker(waker)
    try:
        yield True
    finally:
        target.remove_waker(waker)


@contextlib.contextmanager
def any_of(*events: Any) -> Iterator[WakeableEvent]:
    """An event set as soon as one of ``events`` is set (None entries are ignored): one
    wait, by a thread or by a DUL's poll, for whichever comes first."""
    combined = WakeableEvent()
    with contextlib.ExitStack() as stack:
        for event in events:
            if event is not None:
                stack.enter_context(ringing(event, combined.set))
                if event.is_set():
                    combined.set()
        yield combined
