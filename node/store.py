"""Client records and the last-writer-wins order every node applies the same way. No I/O."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from node.protocol import (
    TimeKey,
    diff_from_received,
    format_at,
    format_changeloc,
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
    bytes and the receive time. Equal keys are the same record. The key is computed when
    needed rather than stored: a node holding a million clients keeps only the bytes.
    """

    client: bytes
    location: bytes
    time_sent: bytes
    time_received: bytes  # the receiving node's POSIX time, exactly 9 decimals
    server: bytes

    @property
    def key(self) -> OrderKey:
        return order_key(self, None)

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
    client: bytes,
    location: bytes,
    time_sent: bytes,
    time_received: bytes,
    server: bytes,
    tkey: TimeKey | None = None,
) -> Record:
    """A record from already validated fields (`tkey`: the parser's key of time_sent)."""
    if tkey is None and time_key(time_sent) is None:
        raise ValueError(f"invalid time {time_sent!r}")
    return Record(client, location, time_sent, time_received, shared_name(server))


_SERVERS: dict[bytes, bytes] = {}


def shared_name(server: bytes) -> bytes:
    """One bytes object per server name: a herd has a handful, a store a million records."""
    shared = _SERVERS.get(server)
    if shared is None:
        shared = _SERVERS.setdefault(server, server) if len(_SERVERS) < 1024 else server
    return shared


def order_key(record: Record, tkey: TimeKey | None) -> OrderKey:
    """`record.key`, reusing `tkey` (the key of its time) when the caller has it."""
    if tkey is None:
        tkey = time_key(record.time_sent)
        assert tkey is not None  # records are validated when made
    return (tkey, record.server, record.location, record.time_sent, record.time_received)


Packed = tuple[bytes, bytes]  # (client, b"location time_sent time_received server")


def changeloc_from_packed(client: bytes, packed: bytes) -> bytes:
    """A stored record as its CHANGELOC line, with LF, straight from its packed bytes."""
    return b"CHANGELOC %s %s\n" % (client, packed)


class ClientStore:
    """The newest record of every client this node has heard of.

    Each record is kept packed, as one bytes object `location time_sent time_received
    server` under its client name: a million clients fit in about half the memory that
    a million Record objects take. Records are unpacked when asked for.
    """

    __slots__ = ("_packed",)

    def __init__(self) -> None:
        self._packed: dict[bytes, bytes] = {}

    def apply(self, record: Record, tkey: TimeKey | None = None) -> bool:
        """Keep `record` if it is newer than what we hold; True when it was kept.

        `tkey`, the key of the record's time when the parser already computed it, saves
        computing it again; the held record's key is computed only when there is one.
        """
        packed = b"%s %s %s %s" % (
            record.location,
            record.time_sent,
            record.time_received,
            record.server,
        )
        return self.apply_packed(record.client, packed, order_key(record, tkey))

    def apply_packed(self, client: bytes, packed: bytes, key: OrderKey) -> bool:
        """`apply` for a record already packed, with its order key."""
        held = self._packed.get(client)
        if held is not None and packed_key(held) >= key:
            return False
        self._packed[client] = packed
        return True

    @property
    def table(self) -> dict[bytes, bytes]:
        """The packed records by client, for `node.ingest`'s batches: they write it only
        after `newer_than_packed` says so, which is what `apply_packed` does one at a time."""
        return self._packed

    def restore(self, undo: list[tuple[bytes, bytes | None]]) -> None:
        """Put back what a batch replaced: `undo` holds (client, record held before, or
        None), in the order the batch applied them."""
        table = self._packed
        for client, held in reversed(undo):
            if held is None:
                table.pop(client, None)
            else:
                table[client] = held

    def get(self, client: bytes) -> Record | None:
        """The newest record of `client`, or None when no node has told us of it."""
        held = self._packed.get(client)
        return None if held is None else _unpack(client, held)

    def __len__(self) -> int:
        return len(self._packed)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.snapshot())  # safe while records are applied meanwhile

    def snapshot(self) -> list[Record]:
        """Every record, as a list that later updates do not change."""
        return [_unpack(client, held) for client, held in self._packed.items()]

    def packed(self) -> list[Packed]:
        """Every record still packed, as a list that later updates do not change."""
        return list(self._packed.items())


def packed_key(packed: bytes) -> OrderKey:
    """The order key of a packed record, without unpacking it into a Record."""
    location, time_sent, time_received, server = packed.split(b" ")
    tkey = time_key(time_sent)
    assert tkey is not None  # records are validated before they are stored
    return (tkey, server, location, time_sent, time_received)


def newer_than_packed(
    location: bytes, time_sent: bytes, time_received: bytes, server: bytes, held: bytes
) -> bool:
    """Whether a valid record with these fields comes after the packed record `held`.

    This runs for every update of a client already known, so the common cases skip the
    order key: equal times compare by the rest of the key; times of the same shape (same
    length, point in the same place, no leading zero) compare as bytes exactly as they
    compare as numbers.
    """
    held_location, held_sent, held_received, held_server = held.split(b" ")
    if time_sent == held_sent:
        return (server, location, time_received) > (held_server, held_location, held_received)
    if (
        len(time_sent) == len(held_sent)
        and time_sent[0] != 0x30
        and held_sent[0] != 0x30
        and time_sent.find(b".") == held_sent.find(b".")
    ):
        return time_sent > held_sent
    return (_valid_time_key(time_sent), server, location, time_sent, time_received) > (
        _valid_time_key(held_sent),
        held_server,
        held_location,
        held_sent,
        held_received,
    )


def _valid_time_key(time_sent: bytes) -> TimeKey:
    """`time_key` of a time already validated: no regex."""
    whole, _, frac = time_sent.partition(b".")
    whole = whole.lstrip(b"0")
    return len(whole), whole, frac.rstrip(b"0")


def _unpack(client: bytes, packed: bytes) -> Record:
    location, time_sent, time_received, server = packed.split(b" ")
    return Record(client, location, time_sent, time_received, shared_name(server))
