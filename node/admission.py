"""Who gets a connection slot: the caps on clients, and room kept for the neighbours. No I/O
but the fd limit, read once at start.

Clients are admitted up to `per_host` connections per address and `total` in all. A
connection that arrives past either cap could still be a neighbour (they connect from
addresses clients may share, 127.0.0.1 on one machine), so it is not refused at once: it
joins a small pool *on probation*, sized from the neighbour count, where its first line
must be a handshake line and its handshake must finish within a deadline. Anything else
refuses it. When the pool is full, its oldest member makes room, so a flood of connections
cannot keep a neighbour out for longer than the flood takes to push it through. An
authenticated neighbour counts against no client cap.
"""

from __future__ import annotations

import collections
import resource
from typing import Generic, Literal, TypeVar

K = TypeVar("K")
Kind = Literal["client", "probation"]

FD_HEADROOM = 128  # fds a node needs besides connections: journal, logs, listener, links, HTTP
PROBATION_DEADLINE = 5.0  # seconds a connection on probation has to authenticate


def reserve_for(neighbours: int) -> int:
    """The probation pool's size: room for every neighbour to (re)connect twice."""
    return max(4, 2 * neighbours)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


def client_cap(configured: int, fd_limit: int, reserve: int) -> int:
    """The total client cap in force: as configured, but always below the fd limit."""
    return max(1, min(configured, fd_limit - FD_HEADROOM - reserve))


class Admission(Generic[K]):
    """The slots of one node's connections, by kind; `K` is whatever names a connection."""

    def __init__(self, per_host: int, total: int, reserve: int) -> None:
        self.per_host = per_host
        self.total = total
        self.reserve = reserve
        self.clients = 0
        self.by_host: collections.Counter[str] = collections.Counter()
        self.probation: dict[K, None] = {}  # in order of arrival: the first is the oldest
        self._slots: dict[K, tuple[Kind, str]] = {}

    def admit(self, key: K, host: str) -> tuple[Kind, K | None]:
        """Admit a new connection: as a client while the caps allow, else on probation.
        The second value is the probationer evicted to make room, if one was."""
        if self.by_host[host] < self.per_host and self.clients < self.total:
            self.by_host[host] += 1
            self.clients += 1
            self._slots[key] = ("client", host)
            return "client", None
        evicted = None
        if len(self.probation) >= self.reserve:
            evicted = next(iter(self.probation))
            self.release(evicted)
        self.probation[key] = None
        self._slots[key] = ("probation", host)
        return "probation", evicted

    def over(self, host: str) -> str:
        """Which cap a connection from `host` went on probation over, for the log."""
        if self.by_host[host] >= self.per_host:
            return f"max_connections({self.per_host})"
        return f"max_connections_total({self.total})"

    def release(self, key: K) -> None:
        """The connection is gone, refused, or handed to the peer side (an authenticated
        neighbour counts against no client cap): its slot is free."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        kind, host = slot
        if kind == "probation":
            del self.probation[key]
        else:
            self.clients -= 1
            self.by_host[host] -= 1
            if self.by_host[host] <= 0:
                del self.by_host[host]
