"""The slow, obvious reference the tests hold the node's fast paths to.

The node takes IAMAT and CHANGELOC lines only in `node.ingest` (checked by
`protocol.iamat_fields` / `changeloc_fields`, or a block regex) and orders records only
with `store.newer_than_packed`. Here the same rules are written the plain way, one message
object per line and an explicit order key, as oracles: a test that finds the two disagree
has found a bug in one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.entries import check_entry, encode_body
from node.protocol import (
    TIME_RECEIVED,
    Message,
    TimeKey,
    changeloc_fields,
    format_ns,
    iamat_fields,
    parse_line,
    time_key,
    valid_location,
)
from node.store import Record, shared_name


@dataclass(frozen=True, slots=True)
class IAmAt:
    """`IAMAT <client> <location> <time>` from a client."""

    client: bytes
    location: bytes
    time: bytes
    tkey: TimeKey | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ChangeLoc:
    """`CHANGELOC <client> <location> <time_sent> <time_received> <server>` between peers."""

    client: bytes
    location: bytes
    time_sent: bytes
    time_received: bytes
    server: bytes
    tkey: TimeKey | None = field(default=None, compare=False)


def parse(line: bytes, *, peer: bool = False) -> Message | IAmAt | ChangeLoc | None:
    """`protocol.parse_line` with IAMAT and CHANGELOC parsed the reference way: each field
    by its own rule (`time_key`, `valid_location`, `TIME_RECEIVED`).

    It also checks that the node's one validator of each (`iamat_fields`,
    `changeloc_fields`) agrees, so every example a test feeds through here tests both.
    """
    fields = line.split()
    reference: IAmAt | ChangeLoc | None = None
    if fields and fields[0] == b"IAMAT" and len(fields) == 4:
        tkey = time_key(fields[3])
        if tkey is not None and valid_location(fields[2]):
            reference = IAmAt(fields[1], fields[2], fields[3], tkey)
        node_view = iamat_fields(line)
        assert (node_view is None) == (reference is None), line
        assert reference is None or node_view == (fields[1], fields[2], fields[3])
    elif fields and fields[0] == b"CHANGELOC" and len(fields) == 6:
        tkey = time_key(fields[3])
        if (
            tkey is not None
            and valid_location(fields[2])
            and TIME_RECEIVED.fullmatch(fields[4]) is not None
        ):
            client, location, sent, received, server = fields[1:]
            reference = ChangeLoc(client, location, sent, received, server, tkey)
        node_fields = changeloc_fields(line)
        assert (node_fields is None) == (reference is None), line
        assert node_fields is None or node_fields[2:] == tuple(fields[2:])
        if reference is not None and not peer:
            return parse_line(line)  # a client may not send CHANGELOC: Invalid
    if reference is not None:
        return reference
    return parse_line(line, peer=peer)


# PROTOCOL.md's order is (time, server, location); two records equal on those but spelled
# differently are ordered by the time's bytes, then the receive time.
OrderKey = tuple[TimeKey, bytes, bytes, bytes, bytes]


def order_key(record: Record) -> OrderKey:
    """The explicit order key of a record: the reference for `store.newer_than_packed`."""
    tkey = time_key(record.time_sent)
    assert tkey is not None
    return (tkey, record.server, record.location, record.time_sent, record.time_received)


def packed_key(packed: bytes) -> OrderKey:
    """`order_key` of a record as the store packs it."""
    location, time_sent, time_received, server = packed.split(b" ")
    return order_key(Record(b"", location, time_sent, time_received, server))


def make_record(
    client: bytes,
    location: bytes,
    time_sent: bytes,
    time_received: bytes,
    server: bytes,
    tkey: TimeKey | None = None,
) -> Record:
    """A record from fields a test vouches for; its time is checked."""
    if tkey is None and time_key(time_sent) is None:
        raise ValueError(f"invalid time {time_sent!r}")
    return Record(client, location, time_sent, time_received, shared_name(server))


def record_from_iamat(msg: IAmAt, server: bytes, received_ns: int) -> Record:
    """The record an IAMAT creates at the node named `server`, heard at `received_ns`."""
    return make_record(msg.client, msg.location, msg.time, format_ns(received_ns), server, msg.tkey)


def record_from_changeloc(msg: ChangeLoc) -> Record:
    """The record a peer flooded."""
    return make_record(
        msg.client, msg.location, msg.time_sent, msg.time_received, msg.server, msg.tkey
    )


def encode_entry(record: Record) -> bytes:
    """A record's journal entry, with its LF."""
    return encode_body(b"%s %s" % (record.client, record.packed()))


def decode_entry(line: bytes) -> Record | None:
    """The record in one entry (LF removed), or None when it is damaged."""
    checked = check_entry(line)
    if isinstance(checked, str):
        return None
    client, packed = checked
    location, time_sent, time_received, server = packed.split(b" ")
    return Record(client, location, time_sent, time_received, shared_name(server))
