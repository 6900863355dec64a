"""The turn's journal write: the IAMATs that a loop turn's client reads kept are journalled
together, in one write at the turn's end, and only then answered, flooded and logged.

Under the 8x1 load of `make bench` a node reads eight clients in one turn; one write per
read made eight journal writes a turn, a sixteenth of the node's CPU. Nothing is
acknowledged earlier for it: a deferred read's replies, its flood lines and its log lines
wait here, and the turn's end (`TurnWrites.end_turn`, before any held query is answered)
writes the journal first (`NodeServer.settle_turn`). When that write fails, every read of
the turn is refused as one: the store is put back in reverse order, so a record that a later
read judged against an earlier one goes with it, and each connection is told
(`journal_refused`).

Only records judged against the journal's state may be judged here, so whatever else looks
at the store settles the turn first: a neighbour's batch, a client line handled outside its
read (a resume, a held query), a full sync to a neighbour, and the journal's compaction
snapshot. A connection with replies waiting here answers no other line of its read until
they go, so replies keep the order of their lines.
"""

from __future__ import annotations

from typing import Protocol

from node.ingest import Batch
from node.native import mypyc_attr
from node.store import Undo


class Waiting(Protocol):
    """A client connection whose IAMAT replies wait for the turn's journal write."""

    def deliver(self, replies: list[bytes]) -> None:
        """The journal took them: queue the replies, in line order."""
        ...

    def journal_refused(self) -> None:
        """The journal refused the turn: no AT for these IAMATs, and the connection closes
        after the replies before them."""
        ...


GROUP_ABOVE = 1.5  # client reads per turn, on average, above which a turn's first waits too
_WEIGHT = 0.125  # of the latest turn in that average


# Compiled (node.native).
class TurnGrouping:
    """Which of a turn's client reads wait for the turn's journal write.

    Every read after the turn's first does. The first waits too while turns have had more
    than GROUP_ABOVE reads on average, as under a steady load; otherwise it is committed at
    once, since a lone update (one read a turn, an idle herd) must not wait for the turn's
    end: with every first waiting, the idle propagation p50 was 1.03-1.06 times as long
    (bench/README.md, "A turn's journal write").
    """

    __slots__ = ("average", "grouping", "reads")

    def __init__(self) -> None:
        self.reads = 0  # client reads with IAMATs in this turn
        self.average = 0.0  # ... over the last turns that had any
        self.grouping = False  # the first of a turn waits too

    def read(self) -> bool:
        """A client read brought IAMATs: whether they wait for the turn's journal write."""
        reads = self.reads
        self.reads = reads + 1
        return bool(reads) or self.grouping

    def turn_ended(self) -> None:
        if not self.reads:
            return  # a turn of queries only: no sign of how IAMATs come
        average = self.average + (self.reads - self.average) * _WEIGHT
        self.average = average
        self.grouping = average > GROUP_ABOVE
        self.reads = 0


# Compiled (node.native).
@mypyc_attr(allow_interpreted_subclasses=True)
class TurnJournal:
    """What this turn's client reads left for its journal write: their entries, the undo of
    what they replaced, and their replies, flood lines and log lines, in read order."""

    __slots__ = ("entries", "flood", "log", "read_at", "undo", "waiting")

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.undo: Undo = []
        self.flood: list[bytes] = []
        self.log: list[bytes] = []
        # (connection, its replies, how many of its IAMATs were kept rather than stale)
        self.waiting: list[tuple[Waiting, list[bytes], int]] = []
        self.read_at = 0.0  # time.monotonic() of the first read deferred

    def defer(self, batch: Batch, conn: Waiting) -> None:
        """Take a client batch's effects over (the batch is empty after, to be reused)."""
        kept = len(batch.entries)
        if kept:
            self.entries.extend(batch.entries)
            batch.entries.clear()
            self.undo.extend(batch.undo)
            batch.undo.clear()
        if batch.flood:
            self.flood.extend(batch.flood)
            batch.flood.clear()
        if batch.log:
            self.log.extend(batch.log)
            batch.log.clear()
        replies = batch.replies
        batch.replies = []
        self.waiting.append((conn, replies, kept))

    def take(self) -> TurnJournal:
        """Everything deferred, as a TurnJournal of its own; this one starts empty again."""
        taken = TurnJournal()
        taken.entries, self.entries = self.entries, taken.entries
        taken.undo, self.undo = self.undo, taken.undo
        taken.flood, self.flood = self.flood, taken.flood
        taken.log, self.log = self.log, taken.log
        taken.waiting, self.waiting = self.waiting, taken.waiting
        taken.read_at = self.read_at
        return taken
