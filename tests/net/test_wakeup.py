"""Wake descriptors and wakeable events: what lets a cancel end a DUL's one poll at once."""

from __future__ import annotations

import select
import threading

from dicomdesk.net.wakeup import WakeDescriptor, WakeableEvent, any_of, ringing, wakeable


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def test_a_wake_descriptor_is_readable_after_wake_and_empty_after_clear():
    wake = WakeDescriptor()
    try:
        assert not _readable(wake.fileno())
        wake.wake()
        wake.wake()
        assert _readable(wake.fileno())
        wake.clear()
        assert not _readable(wake.fileno())
    finally:
        wake.close()
    wake.wake()  # after close: nothing is written anywhere, nothing raises


def test_a_plain_threading_event_rings_the_wakers_registered_while_inside():
    event = threading.Event()
    rung = []
    with ringing(event, lambda: rung.append(1)) as rings:
        assert rings and isinstance(event, WakeableEvent)
        event.set()
    assert rung == [1]
    event.clear()
    event.set()  # outside: the waker is gone
    assert rung == [1]
    assert wakeable(object()) is None


def test_any_of_is_set_by_whichever_event_comes_first():
    first, second = threading.Event(), threading.Event()
    with any_of(first, None, second) as either:
        assert not either.is_set()
        threading.Thread(target=second.set).start()
        assert either.wait(10)
    already = threading.Event()
    already.set()
    with any_of(already) as either:
        assert either.is_set()
