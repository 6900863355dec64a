"""The node's hot path, sans-IO: the IAMATs or CHANGELOCs of a read applied in one pass.

Those two lines arrive by the thousand; every other line goes through
`protocol.parse_line`, one message object per line. `take_iamats` and `take_changelocs`
take the lines of their kind from the head of a `LineBacklog` and hand back, in a `Batch`,
everything the I/O layer must write for them: the AT replies, the journal entries, the
flood and the log lines. One read then costs one journal write, one reply write and one
write per link, whatever number of lines it held.

Each take first tries the read whole: one call (`blocks.iamat_lines`,
`blocks.changeloc_lines`: C when built, else one regex pass) cuts and checks every line of
a block that is all of one kind and spelled with single spaces, as well-behaved clients and
every neighbour send them.
Else it goes line by line (`protocol.iamat_fields`, `protocol.changeloc_fields`, the same
rules for any spacing) and stops at the first line of another kind, which stays at the
head of the backlog for the caller's general path, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import TypeVar

from node.blocks import changeloc_lines, iamat_lines
from node.kept import append_kept
from node.protocol import (
    AT_LINE,
    CHANGELOC_LINE,
    ChangeLocFields,
    IAmAtFields,
    Lines,
    changeloc_fields,
    format_diff,
    format_ns,
    iamat_fields,
)
from node.store import ClientStore, Offer, Undo

_LF = b"\n"
T = TypeVar("T")  # the fields of one kind of line


class LineBacklog:
    """Lines read but not yet handled, oldest first.

    The lines of a read come in as the block `LineSplitter.feed` made of them, and stay
    that block while nothing else is waiting: a take may then check it whole. They are cut
    into single lines only when someone needs them one by one.
    """

    __slots__ = ("_block", "_count", "_lines")

    def __init__(self) -> None:
        self._block = b""  # uncut lines, before any in `_lines`...
        self._count = 0  # ... and how many (0: no block)
        self._lines: deque[bytes] = deque()

    def __len__(self) -> int:
        return self._count + len(self._lines)

    def __bool__(self) -> bool:
        return bool(self._count or self._lines)

    def add(self, lines: Lines) -> None:
        """Append a block of lines, as `LineSplitter.feed` hands them over."""
        block, count = lines
        if not count:
            return
        if self._lines:
            self._lines.extend(block.split(_LF))
        elif self._count:
            self._block += _LF + block
            self._count += count
        else:
            self._block, self._count = block, count

    def whole(self, limit: int) -> Lines | None:
        """Every waiting line as one block, when they are still uncut and at most `limit`."""
        if self._count and not self._lines and self._count <= limit:
            return self._block, self._count
        return None

    def lines(self) -> deque[bytes]:
        """The waiting lines, one by one, for the caller to pop from the left (and put
        back what it does not take)."""
        if self._count:
            self._lines.extendleft(reversed(self._block.split(_LF)))
            self._block, self._count = b"", 0
        return self._lines

    def head_starts_with(self, prefix: bytes | tuple[bytes, ...]) -> bool:
        """Whether the oldest waiting line starts with `prefix` (or one of them), without
        cutting the block."""
        return (self._lines[0] if self._lines else self._block).startswith(prefix)

    def popleft(self) -> bytes:
        return self.lines().popleft()

    def put_back(self, lines: Iterable[bytes]) -> None:
        """Put lines back at the head, in the order given."""
        self.lines().extendleft(reversed(list(lines)))

    def clear(self) -> None:
        self._block, self._count = b"", 0
        self._lines.clear()


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
        self.undo: Undo = []
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


def take_lines(
    backlog: LineBacklog,
    limit: int,
    cut_block: Callable[[bytes], list[T]],
    line_form: Callable[[bytes], T | None],
) -> list[T]:
    """The fields of up to `limit` lines of one kind from the head of `backlog`, taken off it.

    The backlog's uncut block is tried whole first: one `cut_block` cuts and checks
    every line when all of them are of the kind and single-spaced. Else the lines go one by
    one through `line_form` (the same rules, any spacing), up to the first that is not of the
    kind, which stays at the head of the backlog.
    """
    whole = backlog.whole(limit)
    if whole is not None:
        block, count = whole
        found = cut_block(block)
        if len(found) == count:
            backlog.clear()
            return found
    lines = backlog.lines()
    taken: list[T] = []
    while len(taken) < limit and lines:
        fields = line_form(lines[0])
        if fields is None:
            break
        lines.popleft()
        taken.append(fields)
    return taken


def take_iamats(
    backlog: LineBacklog,
    limit: int,
    store: ClientStore,
    server: bytes,
    received_ns: int,
    conn_id: int,
    out: Batch,
) -> int:
    """Handle up to `limit` valid IAMAT lines from the head of `backlog`, all heard at
    `received_ns` by `server`; return how many. Stops at the first line that is not a valid
    IAMAT and leaves it at the head of the backlog."""
    taken = take_lines(backlog, limit, iamat_lines, iamat_fields)
    if taken:  # else a WHATSAT or another line is at the head: nothing to format
        _apply_iamats(taken, store, server, received_ns, conn_id, out)
    return len(taken)


def _apply_iamats(
    taken: list[IAmAtFields],
    store: ClientStore,
    server: bytes,
    received_ns: int,
    conn_id: int,
    out: Batch,
) -> None:
    offer = store.offer
    kept_ = Offer.KEPT
    received = format_ns(received_ns)
    tail = b" %s %s" % (received, server)
    replies, log, entries, flood, undo = out.replies, out.log, out.entries, out.flood, out.undo
    for client, location, sent in taken:
        packed = location + b" " + sent + tail
        kept = offer(client, packed, location, sent, received, server, undo) is kept_
        if kept:
            append_kept(entries, flood, client, packed)
        diff = format_diff(received_ns, sent)
        replies.append(AT_LINE % (server, diff, client, location, sent))
        log.append(
            b"IAMAT conn=%d client=%s location=%s sent=%s diff=%s kept=%s"
            % (conn_id, client, location, sent, diff, b"yes" if kept else b"no")
        )


def take_changelocs(
    backlog: LineBacklog,
    limit: int,
    store: ClientStore,
    known_servers: Collection[bytes],
    out: Batch,
    held_back: dict[bytes, None] | None = None,
    sift: bool = False,
) -> int:
    """Apply up to `limit` valid CHANGELOC lines from the head of `backlog`; return how
    many were taken (`out` counts the applied and the duplicates). Stops at the first line
    that is not a valid CHANGELOC and leaves it at the head of the backlog.

    `held_back`: the flood lines we hold back from the neighbour that sent these; a record
    it sent us is one it has, so its line is taken out (it need not go back).
    `sift`: the lines are expected to be mostly copies of records held (the link's last
    batch was), so a whole block is first sifted for them (`_sifted`)."""
    sifted = None
    if sift:
        whole = backlog.whole(limit)
        if whole is not None:
            sifted = _sifted(whole[0], store)
    copies: list[bytes] = []
    if sifted is None:
        taken = take_lines(backlog, limit, changeloc_lines, changeloc_fields)
    else:
        backlog.clear()
        taken, copies = sifted
    out.received += len(taken) + len(copies)
    out.duplicates += len(copies)
    if held_back:
        drop = held_back.pop
        for line in copies:
            drop(line + _LF, None)
        for client, packed, _location, _sent, _received, _server in taken:  # no `*_` list
            drop(CHANGELOC_LINE % (client, packed), None)
    _apply_changelocs(taken, store, known_servers, out)
    return len(taken) + len(copies)


_CHANGELOC_WORD = b"CHANGELOC"


def _sifted(block: bytes, store: ClientStore) -> tuple[list[ChangeLocFields], list[bytes]] | None:
    """A whole block of CHANGELOC lines, sifted: the fields of the lines to apply, and the
    lines that are copies; None when one of its lines is not a valid single-spaced
    CHANGELOC, or a copy's client has another record in it.

    A line that is exactly `CHANGELOC client` and the record we hold for that client is a
    flood's second copy: it is counted and dropped on sight, without the regex and its
    six fields (870 -> 250 ns in process, with the regex). Only the other lines are checked
    and cut, in one `changeloc_lines`. A record held is valid, so such a line is too. A copy
    is judged against the store as it was before the block: the same as in line order unless
    the block has another record of that client (a neighbour floods a client's records
    oldest first, so this is rare), which the line-by-line path then takes.
    """
    word = _CHANGELOC_WORD
    copies: list[bytes] = []
    copied: set[bytes] = set()
    fresh: list[bytes] = []
    for line in block.split(_LF):
        parts = line.split(b" ", 2)
        if len(parts) == 3:
            client = parts[1]
            if store.holds(client, parts[2]) and parts[0] == word:
                copies.append(line)
                copied.add(client)
                continue
        fresh.append(line)
    taken: list[ChangeLocFields] = []
    if fresh:
        taken = changeloc_lines(_LF.join(fresh) if copies else block)
        if len(taken) != len(fresh):
            return None
        for fields in taken:
            if fields[0] in copied:
                return None
    return taken, copies


def _apply_changelocs(
    taken: list[ChangeLocFields], store: ClientStore, known_servers: Collection[bytes], out: Batch
) -> None:
    offer = store.offer
    kept, same = Offer.KEPT, Offer.SAME
    entries, flood, undo = out.entries, out.flood, out.undo
    applied = duplicates = 0
    for client, packed, location, sent, received, server in taken:
        if server not in known_servers:
            if store.holds(client, packed):
                duplicates += 1
            else:
                out.unknown.append((server, client))
            continue
        outcome = offer(client, packed, location, sent, received, server, undo)
        if outcome is kept:
            append_kept(entries, flood, client, packed)
            applied += 1
        elif outcome is same:
            duplicates += 1
    out.applied += applied
    out.duplicates += duplicates
