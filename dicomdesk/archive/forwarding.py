"""Forwarding received objects to other nodes (auto-routing; C-STORE SCU, PS3.4 B.2.1).

Rules (``config.ForwardRule``) say which received objects go where: optionally only those from
given calling AE titles or of given modalities, to one or more address-book nodes.  On each
stored object ``Forwarder.on_stored`` writes one ``forward_queue`` row per destination into the
index *before* the C-STORE response leaves, so a forward survives a crash: it is only ever lost
if the object was never acknowledged (and the sender will send it again).

The ``Forwarder`` thread sends the due rows, one association per destination and batch, through
an injected ``send(node, paths) -> {path: error or None}`` (the local server passes one built on
``operations.send``: the archive does not import the operations ring).  A destination that is
down is retried with exponential back-off (``initial_delay`` doubling up to ``max_delay``) until
``max_attempts`` attempts, then the row is ``failed``.  Every state change is logged and given
to ``on_forward`` as a ``ForwardEvent``.  The thread waits on an event with the next due time as
timeout — it is woken when something is queued and never polls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .forward_queue import ForwardItem

logger = logging.getLogger(__name__)

#: ``send(node, paths)`` → for each path None (stored) or a sentence saying why not.
SendFunction = Callable[[Any, list[Path]], Mapping[Path, str | None]]


@dataclass(frozen=True)
class ForwardEvent:
    """One forwarding state change, for the log and the server window.

    ``state``: "queued", "sending", "done", "retrying" (pending again after a failed attempt)
    or "failed" (given up after ``attempts``)."""

    sop_instance_uid: str
    destination: str
    state: str
    attempts: int = 0
    error: str = ""


def rule_matches(rule: Any, calling_aet: str, modality: str) -> bool:
    """A rule applies when each of its non-empty filters contains the object's value."""
    calling = (calling_aet or "").strip()
    if rule.calling_aets and calling not in {a.strip() for a in rule.calling_aets}:
        return False
    if rule.modalities and (modality or "").strip().upper() not in {m.strip().upper()
                                                                     for m in rule.modalities}:
        return False
    return True


def destinations_for(rules: Iterable[Any], calling_aet: str, modality: str) -> list[str]:
    """The destinations of every matching rule, each once, in rule order."""
    out: dict[str, None] = {}
    for rule in rules:
        if rule_matches(rule, calling_aet, modality):
            out.update(dict.fromkeys(rule.destinations))
    return list(out)


def retry_delay(attempts: int, initial: float, maximum: float) -> float:
    """Back-off after ``attempts`` failed attempts: initial, 2x, 4x … capped at ``maximum``."""
    return min(maximum, initial * (2 ** max(attempts - 1, 0)))


class Forwarder:
    """Sends queued objects to their destinations in a background thread."""

    def __init__(self, archive: Any, nodes: Sequence[Any], rules: Sequence[Any], send: SendFunction, *,
                 on_forward: Callable[[ForwardEvent], None] | None = None,
                 initial_delay: float = 5.0, max_delay: float = 600.0, max_attempts: int = 20,
                 batch_size: int = 50) -> None:
        self.archive = archive
        self.nodes = list(nodes)
        self.rules = list(rules)
        self.send = send
        self.on_forward = on_forward
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.max_attempts = max(1, max_attempts)
        self.batch_size = batch_size
        self._wake = threading.Event()
        self._stopping = threading.Event()
        for rule in self.rules:
            for destination in rule.destinations:
                if (_node_named(self.nodes, destination) is None
                        and not any(n.aet == destination for n in self.nodes)):
                    logger.warning("forwarding destination %r is not in the address book", destination)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ queueing
    def on_stored(self, sop_instance_uid: str, calling_aet: str = "", modality: str | None = None
                  ) -> list[str]:
        """Queue a just-stored object for every destination whose rule matches; returns them."""
        if not self.rules:
            return []
        if modality is None and any(r.modalities for r in self.rules):
            modality = self.archive.index.modality_of(sop_instance_uid)
        destinations = destinations_for(self.rules, calling_aet, modality or "")
        if destinations:
            self.enqueue(sop_instance_uid, destinations)
        return destinations

    def enqueue(self, sop_instance_uid: str, destinations: Iterable[str]) -> None:
        """Durably queue an instance for nodes (by address-book name or AE title); wakes the thread."""
        destinations = list(destinations)
        self.archive.index.enqueue_forwards(sop_instance_uid, destinations, time.time())
        for destination in destinations:
            self._event(ForwardEvent(sop_instance_uid, destination, "queued"))
        self._wake.set()

    # ------------------------------------------------------------------ thread
    def start(self) -> Forwarder:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="forwarder", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in flight (its association has its own timeouts)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before looking, so an enqueue during the look is not lost
            try:
                worked = self.run_once()
                timeout = 0.0 if worked else self._until_next_due()
            except Exception:  # the index or a sender bug: log, back off, keep the thread alive
                logger.exception("forwarding failed")
                timeout = self.initial_delay
            if timeout is None or timeout > 0:
                self._wake.wait(timeout)

    def _until_next_due(self) -> float | None:
        due = self.archive.index.next_forward_at()
        return None if due is None else max(0.0, due - time.time())

    def run_once(self) -> bool:
        """Send one batch of due items (to one destination); False when nothing was due."""
        due = self.archive.index.due_forwards(time.time(), limit=self.batch_size * 4)
        if not due:
            return False
        from ..net.pydicom_tables import load_pydicom

        load_pydicom()  # the sender reads the files' headers (one thread loads it, load_pydicom)
        destination = due[0].destination
        batch = [item for item in due if item.destination == destination][: self.batch_size]
        self._send_batch(destination, batch)
        return True

    def _send_batch(self, destination: str, batch: list[ForwardItem]) -> None:
        from .scp import node_by_ae_title

        node = _node_named(self.nodes, destination) or node_by_ae_title(self.nodes, destination)
        if node is None:
            for item in batch:
                self._finish(item, "failed", f"{destination!r} is not in the address book")
            return
        rows = self.archive.index.instances(item.sop_instance_uid for item in batch)
        paths: dict[Path, ForwardItem] = {}
        for item in batch:
            row = rows.get(item.sop_instance_uid)
            if row is None:
                self._finish(item, "failed", "no longer in the archive")
                continue
            paths[self.archive.root / row["path"]] = item
            self._event(ForwardEvent(item.sop_instance_uid, destination, "sending", item.attempts))
        if not paths:
            return
        try:
            results = self.send(node, list(paths))
        except Exception as exc:  # a sender must not raise; treat as a failed attempt for all
            logger.exception("forwarding to %s failed", destination)
            results = {path: str(exc) for path in paths}
        for path, item in paths.items():
            error = results.get(path, "not sent")
            if error is None:
                self._finish(item, "done")
            else:
                self._retry_or_fail(item, error)

    def _retry_or_fail(self, item: ForwardItem, error: str) -> None:
        attempts = item.attempts + 1
        if attempts >= self.max_attempts:
            self._finish(item, "failed", error)
            return
        delay = retry_delay(attempts, self.initial_delay, self.max_delay)
        self.archive.index.mark_forward(item.id, state="pending", error=error,
                                        next_attempt_at=time.time() + delay)
        logger.info("forward %s to %s: attempt %d failed (%s); retry in %.0f s",
                    item.sop_instance_uid, item.destination, attempts, error, delay)
        self._event(ForwardEvent(item.sop_instance_uid, item.destination, "retrying", attempts, error))

    def _finish(self, item: ForwardItem, state: str, error: str = "") -> None:
        self.archive.index.mark_forward(item.id, state=state, error=error)
        attempts = item.attempts + 1
        if state == "done":
            logger.info("forward %s to %s: done after %d attempt(s)", item.sop_instance_uid,
                        item.destination, attempts)
            self._event(ForwardEvent(item.sop_instance_uid, item.destination, "done", attempts))
        else:
            logger.warning("forward %s to %s: failed after %d attempt(s): %s", item.sop_instance_uid,
                           item.destination, attempts, error)
            self._event(ForwardEvent(item.sop_instance_uid, item.destination, "failed", attempts, error))

    def _event(self, event: ForwardEvent) -> None:
        if event.state == "queued":
            logger.info("forward %s to %s: queued", event.sop_instance_uid, event.destination)
        elif event.state == "sending":
            logger.debug("forward %s to %s: sending (attempt %d)", event.sop_instance_uid,
                         event.destination, event.attempts + 1)
        if self.on_forward is None:
            return
        try:
            self.on_forward(event)
        except Exception:  # a listener's bug must not stop forwarding
            logger.exception("on_forward callback failed")


def _node_named(nodes: Sequence[Any], name: str) -> Any | None:
    for node in nodes:
        if node.name == name:
            return node
    folded = name.casefold()
    return next((n for n in nodes if n.name.casefold() == folded), None)
