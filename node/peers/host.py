"""What the peer side needs of its node: a narrow view, so that links never import the
server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from node.config import HerdConfig, Limits
from node.counters import NodeCounters
from node.ingest import Batch
from node.logbook import LogBook
from node.store import ClientStore, Packed
from node.turn_writes import TurnWrites


class PeerHost(Protocol):
    """The node as its links see it (`NodeServer` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def name_bytes(self) -> bytes: ...

    @property
    def secret(self) -> bytes: ...

    @property
    def config(self) -> HerdConfig: ...

    @property
    def limits(self) -> Limits: ...

    @property
    def log(self) -> LogBook: ...

    @property
    def store(self) -> ClientStore: ...

    @property
    def known_servers(self) -> frozenset[bytes]: ...

    @property
    def counters(self) -> NodeCounters: ...

    @property
    def turn_writes(self) -> TurnWrites:
        """The client connections whose replies go out at the end of this turn."""
        ...

    def commit(
        self, batch: Batch, deliver: Callable[[list[bytes]], object] | None, origin: bytes | None
    ) -> bool:
        """Journal, then flood and log a batch; False when the journal refused it."""
        ...

    def settle_turn(self) -> bool:
        """Journal what this turn's client reads left for the turn's end, before a batch is
        judged against the store (`node.turn_journal`); False when the journal refused it."""
        ...

    def sync_state(self) -> list[Packed]:
        """Every record held, for a neighbour that just linked up."""
        ...
