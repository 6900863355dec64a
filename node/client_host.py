"""What a client's connection needs of its node: a narrow view, so that the connection
never imports the server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from node.admission import Admission
from node.ingest import Batch
from node.logbook import RateLimited
from node.peers import Peers
from node.peers.host import PeerHost
from node.protocol import WhatsAt
from node.store import Record
from node.turn_journal import Waiting


class ClientHost(PeerHost, Protocol):
    """The node as its client connections see it (`NodeServer` is one)."""

    @property
    def neighbours(self) -> frozenset[bytes]: ...

    @property
    def peers(self) -> Peers: ...

    # Of client connections; `Any` because naming their class here would tie this view
    # back to the connection that uses it.
    @property
    def admission(self) -> Admission[Any]: ...

    @property
    def connections(self) -> set[Any]: ...

    @property
    def refusals(self) -> RateLimited:
        """CONN_REFUSED lines, ten a second at most."""
        ...

    @property
    def clock_ns(self) -> Callable[[], int]: ...

    def next_conn_id(self) -> int: ...

    def waits_for_turn(self) -> bool:
        """Whether a client read's IAMATs wait for the turn's journal write (`defer`)."""
        ...

    def defer(self, batch: Batch, conn: Waiting) -> None:
        """Leave a client read's batch to the turn's journal write (`node.turn_journal`)."""
        ...

    def journal_error(self) -> str | None:
        """Why the journal refuses writes (`ENOSPC`), or None while it takes them."""
        ...

    async def whatsat(self, record: Record, msg: WhatsAt) -> bytes:
        """The full reply to a WHATSAT about `record`."""
        ...

    def whatsat_now(self, record: Record, msg: WhatsAt) -> bytes | None:
        """The full reply, when it can be made without waiting; else None."""
        ...
