"""Client records and the last-writer-wins order every node applies the same way. No I/O."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from node.protocol import (
    ChangeLoc,
    IAmAt,
    TimeKey,
    diff_from_received,
    format_at,
    format_changeloc,
    format_ns,
    time_key,
)

# PROTOCOL.md's order is (time, server, location). Two records equal on those but spelled
# differently (time "1.5" vs "1.50", or another time_received after a node lost its state)
# are ordered by those bytes too, so every node keeps the same one whatever the arrival order.
OrderKey = tuple[TimeKey, bytes, bytes, bytes, bytes]


@dataclass(frozen=True, slots=True)
class Record:
    """Where a client said it was, and which node heard it when.

    `key` orders records: client time as an exact decimal, then the receiving server's
    name, then the location bytes, then (tie-breaks PROTOCOL.md leaves open) the time's own
    bytes and the receive time. Equal keys are the same record.
    """

    client: bytes
    location: bytes
    time_sent: bytes
    time_received: bytes  # the receiving node's POSIX time, exactly 9 decimals
    server: bytes
    key: OrderKey

    def at_line(self) -> bytes:
        """The AT line the receiving node produced, rebuilt exactly, with its LF."""
        diff = diff_from_received(self.time_received, self.time_sent)
        return format_at(self.server, diff, self.client, self.location, self.time_sent)

    def changeloc(self) -> bytes:
        """This record as the CHANGELOC line peers flood, with its LF."""
        return format_changeloc(
            self.client, self.location, self.time_sent, self.time_received, self.server
        )


def make_record(
    client: bytes, location: bytes, time_sent: bytes, time_received: bytes, server: bytes
) -> Record:
    """A record from already validated fields."""
    tkey = time_key(time_sent)
    if tkey is None:
        raise ValueError(f"invalid time {time_sent!r}")
    key = (tkey, server, location, time_sent, time_received)
    return Record(client, location, time_sent, time_received, server, key)


def record_from_iamat(msg: IAmAt, server: bytes, received_ns: int) -> Record:
    """The record an IAMAT creates at the node named `server`, heard at `received_ns`."""
    return make_record(msg.client, msg.location, msg.time, format_ns(received_ns), server)


def record_from_changeloc(msg: ChangeLoc) -> Record:
    """The record a peer flooded."""
    return make_record(msg.client, msg.location, msg.time_sent, msg.time_received, msg.server)


class ClientStore:
    """The newest record of every client this node has heard of."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[bytes, Record] = {}

    def apply(self, record: Record) -> bool:
        """Keep `record` if it is newer than what we hold; True when it was kept."""
        held = self._records.get(record.client)
        if held is not None and held.key >= record.key:
            return False
        self._records[record.client] = record
        return True

    def get(self, client: bytes) -> Record | None:
        """The newest record of `client`, or None when no node has told us of it."""
        return self._records.get(client)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.snapshot())  # safe while records are applied meanwhile

    def snapshot(self) -> list[Record]:
        """Every record, as a list that later updates do not change."""
        return list(self._records.values())
