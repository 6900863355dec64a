"""Client IAMAT replies written together at the end of the event loop's turn, not each as
soon as it is made.

A reply written at once wakes its client. On a machine whose cores the node shares, with its
clients or with the other nodes of a herd on one machine, the woken client often takes the
core from the node, and the node's other reads of the turn wait for it to come back. So a
connection gathers what it has to write during a turn (`ClientConnection.write_out`), and
`TurnWrites` writes every connection's gathering in one callback at the turn's end: the
turn's reads are all handled first, warm, and the clients then wake together. Under the
8x1 load of `make bench` the herd answered 1.07 times as many IAMATs a second, in 8 of 8
alternating pairs of `bench/ab.py` (bench/README.md, "A turn's replies written at its end").

Nothing is acknowledged earlier for it: a reply is made only after its journal write. Only
runs of IAMAT replies wait for the turn's end. Any other reply goes at once, with what was
gathered before it (a WHATSAT's client polls, and its next poll may find what this turn
applied: `bench/ab.py --load propagate` measured the idle propagation 7 % slower when they
waited too). And every gathered reply goes when a link that was idle writes a flood line at
once (`PeerLink.send`), so that a lone client's reply still leaves before its update wakes
a neighbour.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Gathering(Protocol):
    """A connection that gathers its writes during a turn."""

    def write_out(self) -> None:
        """Write what was gathered, if anything is left."""
        ...


class TurnWrites:
    """The connections with something to write at the end of this turn."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: list[Gathering] = []

    def add(self, conn: Gathering) -> None:
        """`conn` began gathering: write it out at the end of this turn."""
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self.write_waiting)
        self._waiting.append(conn)

    def write_waiting(self) -> None:
        """Write out every connection that gathered something (the turn's last callback)."""
        waiting, self._waiting = self._waiting, []
        for i, conn in enumerate(waiting):
            try:
                conn.write_out()
            except Exception:
                # One connection's failure must not strand the others' replies: a
                # connection is listed only when it begins gathering.
                for rest in waiting[i + 1 :]:
                    self.add(rest)
                raise
