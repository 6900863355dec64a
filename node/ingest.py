"""The node's hot path, sans-IO: a whole read of IAMATs or CHANGELOCs applied in one pass.

The general path (`protocol.parse_line`, one message object per line) stays for every other
line. These functions take the two kinds of line that arrive by the thousand, check them
by exactly the same rules, and hand back everything the I/O layer must write for the batch:
the AT replies, the journal entries, the flood and the log lines. One read then costs one
journal write, one reply write and one write per link, whatever number of lines it held.

`take_iamats` and `take_changelocs` pop lines off the left of a backlog while they are of
their kind, and put back the first line that is not, so the caller's general path meets it
next, in order. `take_iamat_block` and `take_changeloc_block` take a whole block of lines or
nothing: one regex pass cuts and checks every line of a read that is all of one kind and
spelled with single spaces, as well-behaved clients and every neighbour send them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from zlib import crc32

from node.entries import ENTRY_FORMAT
from node.protocol import (
    CHANGELOC_LINES,
    IAMAT_LINES,
    LOCATION_AND_TIME,
    PACKED_RECORD,
    format_diff,
    format_ns,
)
from node.store import ClientStore, newer_than_packed


class Batch:
    """What one pass produced, in line order, for the I/O layer to write out.

    The pass has already put the records it kept into the store; `undo` says what they
    replaced, so that a batch the journal refuses leaves the store as it found it
    (`ClientStore.restore`). `NodeServer.commit` is the one place that drains a batch.
    """

    __slots__ = (
        "applied",
        "duplicates",
        "entries",
        "flood",
        "log",
        "received",
        "refused",
        "replies",
        "undo",
        "unknown",
    )

    def __init__(self) -> None:
        self.replies: list[bytes] = []  # AT lines, one per IAMAT handled
        self.entries: list[bytes] = []  # journal entries of the records kept
        self.flood: list[bytes] = []  # CHANGELOC lines of the records kept
        self.undo: list[tuple[bytes, bytes | None]] = []  # (client, what it held before)
        self.log: list[bytes] = []  # one raw event per IAMAT, for LogBook.raw_events
        self.received = 0  # CHANGELOC lines taken
        self.applied = 0  # ... of which were newer than what we held
        self.duplicates = 0  # ... of which we already held exactly
        self.unknown: list[tuple[bytes, bytes]] = []  # (server, client): not in our topology
        # After the journal refused the batch: the CHANGELOC lines of the records it would
        # have kept, for a neighbour's link to apply again later.
        self.refused: list[bytes] = []

    def refuse(self) -> None:
        """Forget everything the batch would have done; keep its records in `refused`."""
        self.refused.extend(self.flood)
        for part in (self.replies, self.entries, self.flood, self.undo, self.log, self.unknown):
            part.clear()
        self.received = self.applied = self.duplicates = 0


IAmAtFields = tuple[bytes, bytes, bytes]  # client, location, time_sent
# client, packed record, and the packed record's location, time_sent, time_received, server
ChangeLocFields = tuple[bytes, bytes, bytes, bytes, bytes, bytes]


def take_iamats(
    backlog: deque[bytes],
    limit: int,
    store: ClientStore,
    server: bytes,
    received_ns: int,
    conn_id: int,
    out: Batch,
) -> int:
    """Handle up to `limit` valid IAMAT lines from the left of `backlog`, all heard at
    `received_ns` by `server`; return how many. Stops at the first line that is not a valid
    IAMAT and leaves it at the head of the backlog."""
    fields_ok = LOCATION_AND_TIME.fullmatch
    taken: list[IAmAtFields] = []
    while len(taken) < limit and backlog:
        line = backlog.popleft()
        fields = line.split()
        if (
            len(fields) != 4
            or fields[0] != b"IAMAT"
            or fields_ok(b"%s %s" % (fields[2], fields[3])) is None
        ):
            backlog.appendleft(line)
            break
        taken.append((fields[1], fields[2], fields[3]))
    _apply_iamats(taken, store, server, received_ns, conn_id, out)
    return len(taken)


def take_iamat_block(
    block: bytes,
    lines: int,
    store: ClientStore,
    server: bytes,
    received_ns: int,
    conn_id: int,
    out: Batch,
) -> bool:
    """`take_iamats` for a block of `lines` lines joined by LF, when every one of them is a
    valid IAMAT spelled with single spaces; else False, and nothing is done. A whole read
    of a well-behaved client is such a block: one regex pass then cuts and checks it all."""
    found: list[IAmAtFields] = IAMAT_LINES.findall(block)
    if len(found) != lines:
        return False
    _apply_iamats(found, store, server, received_ns, conn_id, out)
    return True


def _apply_iamats(
    taken: list[IAmAtFields],
    store: ClientStore,
    server: bytes,
    received_ns: int,
    conn_id: int,
    out: Batch,
) -> None:
    table = store.table
    received = format_ns(received_ns)
    tail = b" %s %s" % (received, server)
    replies, log, entries, flood, undo = out.replies, out.log, out.entries, out.flood, out.undo
    for client, location, sent in taken:
        packed = location + b" " + sent + tail
        held = table.get(client)
        kept = held is None or newer_than_packed(location, sent, received, server, held)
        if kept:
            table[client] = packed
            undo.append((client, held))
            body = b"%s %s" % (client, packed)
            entries.append(ENTRY_FORMAT % (crc32(body), body))
            flood.append(b"CHANGELOC %s\n" % body)
        diff = format_diff(received_ns, sent)
        replies.append(b"AT %s %s %s %s %s\n" % (server, diff, client, location, sent))
        log.append(
            b"IAMAT conn=%d client=%s location=%s sent=%s diff=%s kept=%s"
            % (conn_id, client, location, sent, diff, b"yes" if kept else b"no")
        )


def take_changelocs(
    backlog: deque[bytes],
    limit: int,
    store: ClientStore,
    known_servers: Collection[bytes],
    out: Batch,
) -> int:
    """Apply up to `limit` valid CHANGELOC lines from the left of `backlog`; return how many
    were taken (`out` counts the applied and the duplicates). Stops at the first line that
    is not a valid CHANGELOC and leaves it at the head of the backlog.

    Lines of any spacing are taken here; `take_changeloc_block` is the fast way for the
    single-spaced lines neighbours send.
    """
    record_ok = PACKED_RECORD.fullmatch
    taken: list[ChangeLocFields] = []
    while len(taken) < limit and backlog:
        line = backlog.popleft()
        fields = line.split()
        if len(fields) != 6 or fields[0] != b"CHANGELOC":
            backlog.appendleft(line)
            break
        packed = b" ".join(fields[2:])
        if record_ok(packed) is None:
            backlog.appendleft(line)
            break
        taken.append((fields[1], packed, fields[2], fields[3], fields[4], fields[5]))
    out.received += len(taken)
    _apply_changelocs(taken, store, known_servers, out)
    return len(taken)


def take_changeloc_block(
    block: bytes,
    lines: int,
    store: ClientStore,
    known_servers: Collection[bytes],
    out: Batch,
) -> bool:
    """`take_changelocs` for a block of `lines` lines joined by LF, when every one of them
    is a valid CHANGELOC spelled with single spaces, as neighbours send them; else False,
    and nothing is done."""
    found: list[ChangeLocFields] = CHANGELOC_LINES.findall(block)
    if len(found) != lines:
        return False
    out.received += lines
    _apply_changelocs(found, store, known_servers, out)
    return True


def _apply_changelocs(
    taken: list[ChangeLocFields], store: ClientStore, known_servers: Collection[bytes], out: Batch
) -> None:
    table = store.table
    entries, flood, undo = out.entries, out.flood, out.undo
    applied = duplicates = 0
    for client, packed, location, sent, received, server in taken:
        held = table.get(client)
        if held == packed:  # a flood's second copy: most nodes get each record twice
            duplicates += 1
        elif server not in known_servers:
            out.unknown.append((server, client))
        elif held is None or newer_than_packed(location, sent, received, server, held):
            table[client] = packed
            undo.append((client, held))
            body = b"%s %s" % (client, packed)
            entries.append(ENTRY_FORMAT % (crc32(body), body))
            flood.append(b"CHANGELOC %s\n" % body)
            applied += 1
    out.applied += applied
    out.duplicates += duplicates
