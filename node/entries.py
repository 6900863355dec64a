"""Journal entries: how one is written, how one is checked, how a file of them is replayed.

An entry is one line: the CRC-32 of its body in 8 hex digits, a space, the body
`client location time_sent time_received server`, LF. Replay trusts nothing it reads: an
entry counts only when its CRC matches and its fields pass the protocol's own record rules
(`protocol.CLIENT_RECORD`); anything else is skipped, counted and described (`Damage`).
No I/O but reading the file replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node.logbook import show
from node.protocol import CLIENT_RECORD
from node.store import ClientStore, Offer

try:  # the `fast` extra: zlib-ng's CRC-32 gives the same values, 43 against 171 ns an entry
    from zlib_ng.zlib_ng import crc32 as crc32
except ImportError:  # pragma: no cover - installed without it
    from zlib import crc32 as crc32

DAMAGE_NAMED = 20  # damaged entries described one by one per replay; the rest counted


def encode_packed(client: bytes, packed: bytes) -> bytes:
    """The entry of a record as the store keeps it, with its LF."""
    return encode_body(b"%s %s" % (client, packed))


# An entry: the CRC-32 of its body in 8 hex digits, a space, the body, LF. The one
# definition in Python; node/_kept.c writes the same bytes for the hot path when built.
ENTRY_FORMAT = b"%08x %s\n"


def encode_body(body: bytes) -> bytes:
    """The entry of `client location time_sent time_received server`, with its LF."""
    return ENTRY_FORMAT % (crc32(body), body)


def check_entry(line: bytes) -> tuple[bytes, bytes] | str:
    """`(client, packed record)` of one entry (LF removed), or why it is damaged:
    `"crc"` when the checksum does not match, `"record"` when it matches but a field
    breaks the protocol's rules."""
    crc, _, body = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != crc32(body):
            return "crc"
    except ValueError:
        return "crc"
    m = CLIENT_RECORD.fullmatch(body)
    if m is None:
        return "record"
    return m.group(1), m.group(2)


@dataclass(frozen=True, slots=True)
class Damage:
    """One entry that replay skipped: where it was and why."""

    file: str
    offset: int
    reason: str  # crc | record | torn | overlong
    client: bytes | None

    def describe(self) -> str:
        who = "" if self.client is None else f" client={show(self.client)}"
        return f"file={self.file} offset={self.offset} reason={self.reason}{who}"


@dataclass
class ReplayStats:
    """What a replay found, for the start-up log line."""

    files: int = 0
    entries: int = 0
    applied: int = 0
    damaged: int = 0
    torn: int = 0
    seconds: float = 0.0
    damage: list[Damage] = field(default_factory=list)  # the first DAMAGE_NAMED, in order
    damaged_files: list[Path] = field(default_factory=list)
    moved_aside: int = 0  # files moved to damaged/ by this start

    def skipped(self, damage: Damage, path: Path | None) -> None:
        if damage.reason == "torn":
            self.torn += 1
        else:
            self.damaged += 1
        if len(self.damage) < DAMAGE_NAMED:
            self.damage.append(damage)
        if path is not None and path not in self.damaged_files:
            self.damaged_files.append(path)


REPLAY_CHUNK = 8 << 20  # bytes read at a time: a big journal never sits in memory whole
MAX_ENTRY = 64 << 20  # longer than any entry a node writes: damage that never ends in LF


class _Replayer:
    """Applies the entries of one file, fed in chunks, keeping each entry's offset."""

    def __init__(self, store: ClientStore, stats: ReplayStats, path: Path | None) -> None:
        self.store = store
        self.stats = stats
        self.path = path
        self.name = path.name if path is not None else "-"
        self.offset = 0  # of the first byte not yet consumed
        self.rest = b""
        self.skipping = False  # inside an overlong entry: drop bytes up to its LF

    def feed(self, chunk: bytes) -> None:
        if self.skipping:
            lf = chunk.find(b"\n")
            if lf < 0:
                self.offset += len(chunk)
                return
            self.offset += lf + 1
            chunk = chunk[lf + 1 :]
            self.skipping = False
        data = self.rest + chunk if self.rest else chunk
        lines = data.split(b"\n")
        self.rest = lines.pop()
        self._apply(lines)
        if len(self.rest) > MAX_ENTRY:  # no entry is that long: damage without an LF
            self._skip(Damage(self.name, self.offset, "overlong", None))
            self.offset += len(self.rest)
            self.rest = b""
            self.skipping = True

    def end(self) -> None:
        if self.rest:  # the last entry never got its LF: a cut-short write
            self._skip(Damage(self.name, self.offset, "torn", _client_of(self.rest)))

    def _apply(self, lines: list[bytes]) -> None:
        stats = self.stats
        offer = self.store.offer
        kept = Offer.KEPT
        offset = self.offset
        entries = applied = 0
        for line in lines:
            checked = check_entry(line)
            if isinstance(checked, str):
                self._skip(Damage(self.name, offset, checked, _client_of(line)))
            else:
                entries += 1
                client, packed = checked
                location, sent, received, server = packed.split(b" ")
                if offer(client, packed, location, sent, received, server, None) is kept:
                    applied += 1
            offset += len(line) + 1
        self.offset = offset
        stats.entries += entries
        stats.applied += applied

    def _skip(self, damage: Damage) -> None:
        self.stats.skipped(damage, self.path)


def _client_of(line: bytes) -> bytes | None:
    """The client field of a damaged entry, when the entry still has that shape."""
    fields = line.split(b" ", 2)
    if len(fields) >= 3 and len(fields[0]) == 8 and fields[1]:
        return fields[1][:200]
    return None


def replay_bytes(data: bytes, store: ClientStore, stats: ReplayStats) -> None:
    """Apply every good entry of one file's contents to `store`."""
    replayer = _Replayer(store, stats, None)
    replayer.feed(data)
    replayer.end()


def replay_file(path: Path, store: ClientStore, stats: ReplayStats) -> None:
    """`replay_bytes` for a file, read in chunks."""
    replayer = _Replayer(store, stats, path)
    with open(path, "rb") as f:
        while chunk := f.read(REPLAY_CHUNK):
            replayer.feed(chunk)
    replayer.end()
