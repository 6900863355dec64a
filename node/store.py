"""Client records and the last-writer-wins order every node applies the same way. No I/O."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from node.protocol import (
    CHANGELOC_LINE,
    TimeKey,
    diff_from_received,
    format_at,
)


@dataclass(frozen=True, slots=True)
class Record:
    """Where a client said it was, and which node heard it when.

    Records are ordered as PROTOCOL.md says, by (time, server, location), and on a tie
    that PROTOCOL.md leaves open by the time's own bytes and the receive time, so every
    node keeps the same one whatever the arrival order (`newer_than_packed`).
    """

    client: bytes
    location: bytes
    time_sent: bytes
    time_received: bytes  # the receiving node's POSIX time, exactly 9 decimals
    server: bytes

    def at_line(self) -> bytes:
        """The AT line the receiving node produced, rebuilt exactly, with its LF."""
        diff = diff_from_received(self.time_received, self.time_sent)
        return format_at(self.server, diff, self.client, self.location, self.time_sent)

    def packed(self) -> bytes:
        """The record as the store keeps it: `location time_sent time_received server`."""
        return b"%s %s %s %s" % (self.location, self.time_sent, self.time_received, self.server)

    def changeloc(self) -> bytes:
        """This record as the CHANGELOC line peers flood, with its LF."""
        return CHANGELOC_LINE % (self.client, self.packed())


_SERVERS: dict[bytes, bytes] = {}


def shared_name(server: bytes) -> bytes:
    """One bytes object per server name: a herd has a handful, a store a million records."""
    shared = _SERVERS.get(server)
    if shared is None:
        shared = _SERVERS.setdefault(server, server) if len(_SERVERS) < 1024 else server
    return shared


Packed = tuple[bytes, bytes]  # (client, b"location time_sent time_received server")
Undo = list[tuple[bytes, bytes | None]]  # (client, the record it held before, or None)


class Offer(enum.IntEnum):
    """What `ClientStore.offer` did with a record."""

    OLDER = 0  # not newer than the record held: dropped
    KEPT = 1  # newer, or the first of its client: now the record held
    SAME = 2  # exactly the record held (a flood's second copy)


# As globals, for `offer` to return without looking into the enum class per record.
_OLDER, _KEPT, _SAME = Offer.OLDER, Offer.KEPT, Offer.SAME


class ClientStore:
    """The newest record of every client this node has heard of.

    Each record is kept packed, as one bytes object `location time_sent time_received
    server` under its client name: a million clients fit in about half the memory that
    a million Record objects take. Records are unpacked when asked for.
    """

    __slots__ = ("_packed",)

    def __init__(self) -> None:
        self._packed: dict[bytes, bytes] = {}

    def offer(
        self,
        client: bytes,
        packed: bytes,
        location: bytes,
        time_sent: bytes,
        time_received: bytes,
        server: bytes,
        undo: Undo | None,
    ) -> Offer:
        """Keep a valid record, `packed` and also given as its fields, if it comes after
        the one held; when kept, note in `undo` (unless None) what it replaced, for
        `restore` to put back.

        The one last-writer-wins decision of the node: every batch (`node.ingest`) and
        every replayed journal entry goes through it.
        """
        table = self._packed
        held = table.get(client)
        if held is not None:
            if held == packed:  # a flood's second copy: most nodes get each record twice
                return _SAME
            if not _newer(location, time_sent, time_received, server, held):
                return _OLDER
        table[client] = packed
        if undo is not None:
            undo.append((client, held))
        return _KEPT

    def apply(self, record: Record) -> bool:
        """`offer` for one record; True when it was kept."""
        r = record
        fields = (r.location, r.time_sent, r.time_received, r.server)
        return self.offer(r.client, r.packed(), *fields, None) is Offer.KEPT

    def holds(self, client: bytes, packed: bytes) -> bool:
        """Whether `packed` is exactly the record held for `client`."""
        return self._packed.get(client) == packed

    def restore(self, undo: Undo) -> None:
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


NewerThanPacked = Callable[[bytes, bytes, bytes, bytes, bytes], bool]
# What `offer` decides with: the C of `node/_order.c` when the compiled core is built with
# it (the same rules, without splitting the record held), else `newer_than_packed`.
_newer: NewerThanPacked = newer_than_packed
ORDER_BUILT_IN = "python"  # which decides: "python", or "c"

try:
    from node import _order
except ImportError:  # the compiled core is not built, or not used (node.native)
    pass
else:
    _newer = _order.newer_than_packed
    ORDER_BUILT_IN = "c"
