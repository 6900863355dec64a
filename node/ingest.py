"""The node's hot path, sans-IO: a whole read of IAMATs or CHANGELOCs applied in one pass.

The general path (`protocol.parse_line`, one message object per line) stays for every other
line. These functions take the two kinds of line that arrive by the thousand, check them
by exactly the same rules, and hand back everything the I/O layer must write for the batch:
the AT replies, the journal entries, the flood and the log lines. One read then costs one
journal write, one reply write and one write per link, whatever number of lines it held.

Each function pops lines off the left of a backlog while they are of its kind, and puts back
the first line that is not, so the caller's general path meets it next, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection

from node.journal import encode_body
from node.protocol import PACKED_RECORD, format_diff, format_ns
from node.store import ClientStore, newer_than_packed


class Batch:
    """What one pass produced, in line order, for the I/O layer to write out."""

    __slots__ = (
        "applied",
        "duplicates",
        "entries",
        "flood",
        "log",
        "received",
        "replies",
        "unknown",
    )

    def __init__(self) -> None:
        self.replies: list[bytes] = []  # AT lines, one per IAMAT handled
        self.entries: list[bytes] = []  # journal entries of the records kept
        self.flood: list[bytes] = []  # CHANGELOC lines of the records kept
        self.log: list[bytes] = []  # one raw event per IAMAT, for LogBook.raw_events
        self.received = 0  # CHANGELOC lines taken
        self.applied = 0  # ... of which were newer than what we held
        self.duplicates = 0  # ... of which we already held exactly
        self.unknown: list[tuple[bytes, bytes]] = []  # (server, client): not in our topology


def _keep(client: bytes, packed: bytes, out: Batch) -> None:
    body = b"%s %s" % (client, packed)
    out.entries.append(encode_body(body))
    out.flood.append(b"CHANGELOC %s\n" % body)


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
    table = store.table
    received = format_ns(received_ns)
    tail = b" %s %s" % (received, server)
    replies, log = out.replies, out.log
    record_ok = PACKED_RECORD.fullmatch
    done = 0
    while done < limit and backlog:
        line = backlog.popleft()
        fields = line.split()
        if len(fields) != 4 or fields[0] != b"IAMAT":
            backlog.appendleft(line)
            break
        _, client, location, sent = fields
        # Packed first: one match then checks the location and the time together.
        packed = location + b" " + sent + tail
        if record_ok(packed) is None:
            backlog.appendleft(line)
            break
        done += 1
        held = table.get(client)
        kept = held is None or newer_than_packed(location, sent, received, server, held)
        if kept:
            table[client] = packed
            _keep(client, packed, out)
        diff = format_diff(received_ns, sent)
        replies.append(b"AT %s %s %s %s %s\n" % (server, diff, client, location, sent))
        log.append(
            b"IAMAT conn=%d client=%s location=%s sent=%s diff=%s kept=%s"
            % (conn_id, client, location, sent, diff, b"yes" if kept else b"no")
        )
    return done


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

    A flood reaches most nodes twice; the second copy is recognised by its bytes, equal to
    the record we hold, before anything is parsed.
    """
    table = store.table
    record_ok = PACKED_RECORD.fullmatch
    taken = 0
    while taken < limit and backlog:
        line = backlog.popleft()
        fields = line.split()
        if len(fields) != 6 or fields[0] != b"CHANGELOC":
            backlog.appendleft(line)
            break
        client = fields[1]
        packed = b" ".join(fields[2:])
        held = table.get(client)
        if held == packed:  # what we hold was validated when it was kept
            taken += 1
            out.duplicates += 1
            continue
        if record_ok(packed) is None:
            backlog.appendleft(line)
            break
        _, _, location, sent, received, server = fields
        taken += 1
        if server not in known_servers:
            out.unknown.append((server, client))
            continue
        if held is None or newer_than_packed(location, sent, received, server, held):
            table[client] = packed
            _keep(client, packed, out)
            out.applied += 1
    out.received += taken
    return taken
