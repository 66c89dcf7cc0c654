"""Which waiting connections an AE keeps: admission before the A-ASSOCIATE-RQ (PS3.8 9.1.5).

A connection holds no association slot until its A-ASSOCIATE-RQ has arrived; until then it
is *pending*. Pending connections are bounded per source address and in all, so idle sockets
cannot lock a real requestor out: when a bound is reached, the oldest connection that has
sent nothing is closed to make room, else the oldest one stalled in its request for
STALLED_REQUEST_S, else the newcomer is refused. ``applicationentity.AE`` applies this under
its lock; ARTIM (PS3.8 9.1.5) ends a silent connection that is never pushed out.
"""

from __future__ import annotations

import select
import socket
import time

#: A pending connection that has sent bytes but no whole A-ASSOCIATE-RQ for this long may be
#: closed to make room (a real requestor sends its request within milliseconds).
STALLED_REQUEST_S = 2.0


class PendingConnection:
    """A connection that holds no association slot yet: its socket, source host and start."""

    __slots__ = ("sock", "host", "since", "talking_since", "evicted", "slot")

    def __init__(self, sock: socket.socket, host: str, since: float):
        self.sock, self.host, self.since = sock, host, since
        self.talking_since: float | None = None  # when its first byte was seen
        self.evicted = False
        self.slot = False

    def wait_for_first_byte(self, timeout: float | None) -> bool:
        """Block until the peer sends something (or the connection ends); False on timeout."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN | select.POLLPRI)
        if not poller.poll(None if timeout is None else int(timeout * 1000)):
            return False
        self.talking_since = time.monotonic()
        return True

    def talking_before(self, moment: float) -> bool:
        """True when its first byte came before ``moment`` (and it still has no slot)."""
        return self.talking_since is not None and self.talking_since <= moment

    def is_silent(self) -> bool:
        """True when the peer has sent nothing yet — not even bytes its thread has not read
        (a burst of real requestors may be accepted before their threads run)."""
        if self.talking_since is not None:
            return False
        try:
            self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False  # closed or being wrapped for TLS: its thread is on it
        self.talking_since = time.monotonic()  # data (or the end) is waiting to be read
        return False

    def evict(self) -> None:
        """Close the connection under its thread's feet: a blocked read sees the end at once.
        The plain socket's shutdown, even on a TLS socket (its handshake then fails at once)."""
        self.evicted = True
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass


def make_room(pending: dict[int, PendingConnection], host: str, max_pending: int,
              max_per_address: int) -> bool:
    """True when a new connection from ``host`` may wait for its request, after closing (and
    removing from ``pending``, keyed by ``id``) the oldest silent or stalled pending
    connection if a bound is reached; False when every candidate is sending its request
    right now. The caller holds the lock that guards ``pending``."""
    same = [p for p in pending.values() if p.host == host]
    if len(same) >= max_per_address:
        candidates = same
    elif len(pending) >= max_pending:
        candidates = list(pending.values())
    else:
        return True
    stalled = time.monotonic() - STALLED_REQUEST_S
    victim = next((p for p in sorted(candidates, key=lambda p: p.since) if p.is_silent()), None)
    if victim is None:
        victim = min((p for p in candidates if p.talking_before(stalled)),
                     key=lambda p: p.since, default=None)
    if victim is None:
        return False  # every waiting connection is sending its request right now
    victim.evict()
    del pending[id(victim)]
    return True
