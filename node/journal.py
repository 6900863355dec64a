"""The node's journal: every applied record on disk before anyone hears of it.

Layout under `data_dir/NAME/`: `snap-N.log` (a compacted image of the whole state) and
`wal-N.log` (records appended since), both made of entries

    <crc32 of the rest, 8 hex> <client> <location> <time_sent> <time_received> <server>\\n

Replaying is applying every entry of every file to an empty store. Because the store keeps
the greatest record by a total order, replay order and duplicates do not matter, so a crash
at any point of a compaction (which only ever adds a snapshot before deleting what it
covers) replays to the right state. A torn last entry, or a damaged one, fails its CRC or
lacks its LF: it is skipped and counted.

Durability (`journal.fsync`, like Redis's appendfsync):
- `always`: each batch of entries is written and fsynced before its replies go out. Nothing
  acknowledged is lost, even on a power cut; every batch pays for an fsync.
- `everysec` (default): entries are written (to the OS) before replies go out, and fsynced
  once a second. A process crash loses nothing; a power cut can lose the last second.
- `no`: written before replies, fsynced when the OS decides (typically within 30 s). A
  process crash loses nothing; a power cut can lose what the OS had not yet written.
With the herd replicating, a record a node loses in a power cut usually survives at its
neighbours and comes back in the catch-up sync when the node returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from node.store import ClientStore, Packed, Record, shared_name

FSYNC_POLICIES = ("always", "everysec", "no")
_FILE = re.compile(r"(snap|wal)-(\d{8})\.log")


class JournalError(Exception):
    """The journal folder cannot be used; the message names the path and the reason."""


def encode_entry(record: Record) -> bytes:
    """One journal entry, with its LF."""
    body = b"%s %s %s %s %s" % (
        record.client,
        record.location,
        record.time_sent,
        record.time_received,
        record.server,
    )
    return ENTRY_FORMAT % (zlib.crc32(body), body)


def encode_packed(client: bytes, packed: bytes) -> bytes:
    """The same entry as `encode_entry`, from a record as the store keeps it."""
    return encode_body(b"%s %s" % (client, packed))


# An entry: the CRC-32 of its body in 8 hex digits, a space, the body, LF. The hot path
# (`node.ingest`) formats entries with this directly, to spare a call per record.
ENTRY_FORMAT = b"%08x %s\n"


def encode_body(body: bytes) -> bytes:
    """The entry of `client location time_sent time_received server`, with its LF."""
    return ENTRY_FORMAT % (zlib.crc32(body), body)


def decode_entry(line: bytes) -> Record | None:
    """The record in one entry (LF removed), or None when it is damaged."""
    crc, _, body = line.partition(b" ")
    if len(crc) != 8:
        return None
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None
        client, location, time_sent, time_received, server = body.split(b" ")
    except ValueError:
        return None
    # The CRC vouches for an entry this node wrote from a validated record: no re-parsing.
    return Record(client, location, time_sent, time_received, shared_name(server))


@dataclass
class ReplayStats:
    """What a replay found, for the start-up log line."""

    files: int = 0
    entries: int = 0
    applied: int = 0
    damaged: int = 0
    torn: int = 0
    seconds: float = 0.0


REPLAY_CHUNK = 8 << 20  # bytes read at a time: a big journal never sits in memory whole


def replay_bytes(data: bytes, store: ClientStore, stats: ReplayStats) -> None:
    """Apply every good entry of one file's contents to `store`."""
    rest = _replay_lines(data, store, stats)
    if rest:
        stats.torn += 1  # the last entry never got its LF: the write was cut short


def replay_file(path: Path, store: ClientStore, stats: ReplayStats) -> None:
    """`replay_bytes` for a file, read in chunks."""
    rest = b""
    with open(path, "rb") as f:
        while chunk := f.read(REPLAY_CHUNK):
            rest = _replay_lines(rest + chunk, store, stats)
    if rest:
        stats.torn += 1


def _replay_lines(data: bytes, store: ClientStore, stats: ReplayStats) -> bytes:
    """Apply the complete entries in `data`; return the unterminated rest."""
    lines = data.split(b"\n")
    apply = store.apply
    for line in lines[:-1]:
        record = decode_entry(line)
        if record is None:
            stats.damaged += 1
            continue
        stats.entries += 1
        if apply(record):
            stats.applied += 1
    return lines[-1]


class JournalLike(Protocol):
    """What the server needs of a journal; `NullJournal` is the no-op one for tests."""

    def append(self, record: Record) -> None: ...

    def extend(self, entries: list[bytes]) -> None: ...

    def flush(self) -> None: ...


class NullJournal:
    """Keeps nothing: for in-process tests and tools that need no durability."""

    def append(self, record: Record) -> None:
        pass

    def extend(self, entries: list[bytes]) -> None:
        pass

    def flush(self) -> None:
        pass


class Journal:
    """Appends entries in batches, fsyncs per policy, compacts in the background."""

    def __init__(
        self,
        folder: Path,
        *,
        fsync: str = "everysec",
        compact_factor: int = 4,
        compact_min: int = 10_000,
        log: Callable[[str], None] = lambda event: None,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}")
        self.folder = folder
        self.fsync_policy = fsync
        self._compact_factor = compact_factor
        self._compact_min = compact_min
        self._pending: list[bytes] = []
        self._fd = -1
        self._seq = 0
        self._dirty = False  # written since the last fsync
        self._appended = 0  # entries since the last compaction (or replay)
        self._check_at = compact_min  # `_appended` at which compaction is next considered
        self._store: ClientStore | None = None
        self._lock = asyncio.Lock()  # fsync and compaction never touch a closing fd
        self._syncer: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._log = log

    # -- start-up ---------------------------------------------------------------------

    def open(self, store: ClientStore) -> ReplayStats:
        """Replay every file into `store`, then start a fresh segment for appends."""
        started = time.perf_counter()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            files = self._files()
            stats = ReplayStats(files=len(files))
            for _, _, path in files:
                replay_file(path, store, stats)
            self._seq = max((seq for seq, _, _ in files), default=0) + 1
            self._fd = self._open_segment(self._seq)
        except OSError as e:
            raise JournalError(f"cannot use journal folder {self.folder}: {e.strerror}") from None
        self._store = store
        stats.seconds = time.perf_counter() - started
        return stats

    def start(self) -> None:
        """Begin the once-a-second fsync (policy `everysec`); call inside the loop."""
        if self.fsync_policy == "everysec":
            self._syncer = asyncio.get_running_loop().create_task(self._sync_every_second())

    async def close(self) -> None:
        """Write and fsync what is pending, stop the background work, close the file."""
        for task in (self._syncer, self._compactor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        async with self._lock:
            self.flush()
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    # -- the hot path -----------------------------------------------------------------

    def append(self, record: Record) -> None:
        """Queue an entry; it reaches the OS at the next `flush`, before any reply."""
        self._pending.append(encode_entry(record))

    def extend(self, entries: list[bytes]) -> None:
        """Queue entries already encoded (as `encode_packed` does), in order."""
        self._pending.extend(entries)

    def flush(self) -> None:
        """Write queued entries in one write (and fsync them under `always`)."""
        if not self._pending or self._fd < 0:
            return
        data = b"".join(self._pending)
        self._appended += len(self._pending)
        self._pending.clear()
        written = os.write(self._fd, data)
        if written < len(data):  # a short write: rare, so only then the loop
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(self._fd, view) :]
        if self.fsync_policy == "always":
            os.fsync(self._fd)
        else:
            self._dirty = True
        if self._appended >= self._check_at:  # below it no compaction is due: no call
            self._maybe_compact()

    # -- background work --------------------------------------------------------------

    async def _sync_every_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._dirty:
                async with self._lock:
                    self._dirty = False
                    await asyncio.to_thread(os.fsync, self._fd)

    def _maybe_compact(self) -> None:
        store = self._store
        if store is None or (self._compactor is not None and not self._compactor.done()):
            return
        due_at = max(self._compact_min, self._compact_factor * len(store))
        if self._appended < due_at:
            self._check_at = due_at  # the store only grows, so it is not due before then
            return
        self._compactor = asyncio.get_running_loop().create_task(self._compact(store))

    async def _compact(self, store: ClientStore) -> None:
        """Start a new segment, write the whole state as a snapshot, drop what it covers."""
        async with self._lock:
            old_fd, old_seq = self._fd, self._seq
            self._seq += 1
            self._fd = self._open_segment(self._seq)
            self._appended = 0
            self._check_at = self._compact_min
            records = store.packed()  # the state as of the switch: covers every old entry
        seq = self._seq
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._write_snapshot, seq, records)
        except OSError as e:
            self._log(f"JOURNAL_COMPACT_FAILED error={e.strerror}")
            os.close(old_fd)
            return
        os.close(old_fd)
        for file_seq, _, path in self._files():
            if file_seq < seq:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self._log(
            f"JOURNAL_COMPACTED records={len(records)} replaced_through={old_seq}"
            f" seconds={time.perf_counter() - started:.3f}"
        )

    def _write_snapshot(self, seq: int, records: list[Packed]) -> None:
        final = self.folder / f"snap-{seq:08d}.log"
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for i in range(0, len(records), 10_000):
                f.write(b"".join([encode_packed(c, p) for c, p in records[i : i + 10_000]]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power cut
        finally:
            os.close(dir_fd)

    # -- files ------------------------------------------------------------------------

    def _files(self) -> list[tuple[int, str, Path]]:
        found = []
        for path in self.folder.iterdir():
            m = _FILE.fullmatch(path.name)
            if m:
                found.append((int(m.group(2)), m.group(1), path))
        return sorted(found)

    def _open_segment(self, seq: int) -> int:
        path = self.folder / f"wal-{seq:08d}.log"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
