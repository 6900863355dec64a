"""What client connections leave for the end of the event loop's turn: their IAMAT replies,
written together rather than each as soon as it is made, and their WHATSATs, answered after
every read of the turn.

A reply written at once wakes its client. On a machine whose cores the node shares, with its
clients or with the other nodes of a herd on one machine, the woken client often takes the
core from the node, and the node's other reads of the turn wait for it to come back. So a
connection gathers what it has to write during a turn (`ClientConnection.write_out`), and
`TurnWrites` writes every connection's gathering in one callback at the turn's end: the
turn's reads are all handled first, warm, and the clients then wake together. Under the
8x1 load of `make bench` the herd answered 1.07 times as many IAMATs a second, in 8 of 8
alternating pairs of `bench/ab.py` (bench/README.md, "A turn's replies written at its end").

Nothing is acknowledged earlier for it: a reply is made only after its journal write, which
for a turn's client reads is the turn's one write, made first at its end
(`node.turn_journal`). And every gathered reply goes when a link that was idle writes a
flood line at once (`PeerLink.send`), so that a lone client's reply still leaves before its
update wakes a neighbour.

A WHATSAT that a read brings is answered at the turn's end too, first of all, and its
answer written at once (`hold`, `ClientConnection.answer_held`): every record that reached
the node in that turn, from a neighbour read after the query's own connection, is in its
answer. A poller learns of an update one turn earlier than when each query was answered as
its read came; `bench/ab.py --load propagate` measured the idle propagation p50 0.915 to
0.935 times what it was (bench/README.md, "A query answered at the turn's end"). Only the
answer is made later, never the reading: the turn's end comes before the loop polls again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from node.native import mypyc_attr


def _nothing() -> None:
    pass


class Gathering(Protocol):
    """A connection that gathers its writes during a turn."""

    def write_out(self) -> None:
        """Write what was gathered, if anything is left."""
        ...


class Holding(Protocol):
    """A connection that holds a read's queries until the turn's end."""

    def answer_held(self) -> None:
        """Answer the held queries, and write the answers."""
        ...


# Compiled (node.native); bench/in_process.py writes at every read's end in a subclass.
@mypyc_attr(allow_interpreted_subclasses=True)
class TurnWrites:
    """The connections with queries to answer, or gathered replies to write, at the end of
    this turn."""

    __slots__ = ("_held", "_scheduled", "_settle", "_waiting")

    def __init__(self, settle: Callable[[], object] = _nothing) -> None:
        self._waiting: list[Gathering] = []
        self._held: list[Holding] = []
        self._scheduled = False  # `end_turn` is on the loop's ready queue
        self._settle = settle  # the turn's journal write (`NodeServer.settle_turn`)

    def add(self, conn: Gathering) -> None:
        """`conn` began gathering: write it out at the end of this turn."""
        self._schedule()
        self._waiting.append(conn)

    def hold(self, conn: Holding) -> None:
        """`conn` holds queries: answer them at the end of this turn, before the writes."""
        self._schedule()
        self._held.append(conn)

    def settle_at_end(self) -> None:
        """A read left its IAMATs to the turn's journal write: end the turn, which makes it
        first of all (`node.turn_journal`)."""
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.end_turn)

    def end_turn(self) -> None:
        """The turn's last callback: the journal write of the turn's reads, then the held
        queries are answered, then every gathering is written."""
        try:
            self._settle()
        except Exception:
            self._scheduled = False  # the held queries and the writes go on the next turn
            self._schedule()
            raise
        held, self._held = self._held, []
        for i, conn in enumerate(held):
            try:
                conn.answer_held()
            except Exception:
                # One connection's failure must not strand the others: they, and the
                # turn's writes, go on the next turn.
                self._held[:0] = held[i + 1 :]
                self._scheduled = False
                self._schedule()
                raise
        self._scheduled = False  # answers gathered above are written below, in this call
        self.write_waiting()

    def write_waiting(self) -> None:
        """Write out every connection that gathered something (also mid-turn, before a
        flood write wakes a neighbour)."""
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
