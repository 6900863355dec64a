"""The node's journal: every applied record on disk before anyone hears of it.

Layout under `data_dir/NAME/` (0700, files 0600): `snap-N.log` (a compacted image of the
whole state) and `wal-N.log` (records appended since), both made of the entries of
`node.entries`; `node.journal_folder` names, lists and writes them.

Replaying is applying every entry of every file to an empty store. Because the store keeps
the greatest record by a total order, replay order and duplicates do not matter, so a crash
at any point of a compaction (which only ever adds a snapshot before deleting what it
covers) replays to the right state.

Replay (`node.entries`) trusts nothing it reads: an entry counts only when its CRC matches
and its fields pass the protocol's own record rules. Anything else (a torn last entry, a
flipped bit, a record no node could have made) is skipped, counted and named in the log
(file, offset, client where readable). A file with such entries is then repaired once: the
whole state is written as a snapshot and the file is moved to `damaged/`, kept for
inspection but never replayed or reported again.

A write either lands whole or not at all: after a failed or short write the segment is
truncated back to its last whole entry, and the error goes to the caller, which then
acknowledges, floods and keeps nothing of that batch (see `NodeServer.commit`).

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
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from node import journal_folder
from node.config import FSYNC_POLICIES
from node.counters import JournalTally
from node.entries import ReplayStats, replay_file
from node.native import mypyc_attr
from node.private import DIR_MODE, open_private, private_dir
from node.store import ClientStore

COMPACT_RETRY = 30.0  # seconds after a failed compaction before the next is tried

Write = Callable[[int, bytes | memoryview], int]


class JournalError(Exception):
    """The journal folder cannot be used; the message names the path and the reason."""


class JournalLike(Protocol):
    """What the server needs of a journal; `NullJournal` is the no-op one for tests."""

    def write(self, entries: list[bytes]) -> None: ...

    @property
    def failing(self) -> OSError | None: ...

    @property
    def tally(self) -> JournalTally: ...


# Compiled (node.native); the tests note what is journalled in interpreted subclasses.
@mypyc_attr(allow_interpreted_subclasses=True)
class NullJournal:
    """Keeps nothing: for in-process tests and tools that need no durability."""

    failing: OSError | None = None

    def __init__(self) -> None:
        self.tally = JournalTally()

    def write(self, entries: list[bytes]) -> None:
        pass


def _nothing() -> None:
    pass


def errno_name(e: OSError) -> str:
    """`ENOSPC` for an OSError, as an operator greps for it."""
    return errno.errorcode.get(e.errno or 0, str(e.errno))


class Journal:
    """Writes batches of entries whole or not at all, fsyncs per policy, compacts in the
    background."""

    def __init__(
        self,
        folder: Path,
        *,
        fsync: str = "everysec",
        compact_factor: int = 4,
        compact_min: int = 10_000,
        log: Callable[[str], None] = lambda event: None,
        write: Write = os.write,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}")
        self.folder = folder
        self.fsync_policy = fsync
        self._compact_factor = compact_factor
        self._compact_min = compact_min
        self._write = write
        self._fd = -1  # the segment being appended to; -1: the next write creates wal-<_seq>
        self._seq = 1
        self._size = 0  # bytes of whole entries in the segment: a failed write truncates to it
        self._retired: list[int] = []  # fds of abandoned segments, closed under the lock
        self._dirty = False  # written since the last fsync
        self._appended = 0  # entries since the last compaction (or replay)
        self._check_at = compact_min  # `_appended` at which compaction is next considered
        self._compact_after = 0.0  # time.monotonic() before which no compaction starts
        self._store: ClientStore | None = None
        self._lock = asyncio.Lock()  # fsync and compaction never touch a closing fd
        self._syncer: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._log = log
        self.failing: OSError | None = None  # the error of the last write, until one succeeds
        self._failed_writes = 0
        self._failing_since = 0.0
        self._fsync_failing = False
        self.tally = JournalTally()
        # The node's `settle_turn`: a snapshot holds journalled records only, never those a
        # turn's reads applied and left for the turn's end (`node.turn_journal`).
        self.before_snapshot: Callable[[], object] = _nothing

    # -- start-up ---------------------------------------------------------------------

    def open(self, store: ClientStore) -> ReplayStats:
        """Replay every file into `store`; repair what was damaged; get ready to append."""
        started = time.perf_counter()
        try:
            private_dir(self.folder)
            if self.folder.stat().st_mode & 0o077:  # the node's own folder: ours to tighten
                self.folder.chmod(DIR_MODE)
            for name in journal_folder.remove_leftovers(self.folder):
                self._log(f"JOURNAL_LEFTOVER_REMOVED file={name}")
            files = journal_folder.journal_files(self.folder)
            stats = ReplayStats(files=len(files))
            for _, _, path in files:
                replay_file(path, store, stats)
            self._seq = max((seq for seq, _, _ in files), default=0) + 1
            self._store = store
            self._name_damage(stats)
            if stats.damaged_files:
                self._repair(store, stats)
            elif files and files[-1][1] == "wal":
                self._reopen(files[-1][0], files[-1][2])  # no empty segment per start
        except OSError as e:
            raise JournalError(f"cannot use journal folder {self.folder}: {e.strerror}") from None
        stats.seconds = time.perf_counter() - started
        return stats

    def _name_damage(self, stats: ReplayStats) -> None:
        for damage in stats.damage:
            self._log(f"JOURNAL_DAMAGED {damage.describe()}")
        unnamed = stats.damaged + stats.torn - len(stats.damage)
        if unnamed > 0:
            self._log(f"JOURNAL_DAMAGED more={unnamed} (not named one by one)")

    def _repair(self, store: ClientStore, stats: ReplayStats) -> None:
        """Write the replayed state as a snapshot, then move the damaged files aside and
        drop the rest it covers: the next start replays clean files only."""
        seq = self._seq
        try:
            journal_folder.write_snapshot(self.folder, seq, store.packed())
        except OSError as e:
            # Nothing moved: the damage is reported again next start, and nothing is lost.
            self._log(
                f"JOURNAL_REPAIR_FAILED errno={errno_name(e)} error={e.strerror}"
                f" damaged_files={len(stats.damaged_files)}"
            )
            return
        for name, target in journal_folder.move_aside(self.folder, stats.damaged_files):
            stats.moved_aside += 1
            self._log(f"JOURNAL_MOVED_ASIDE file={name} to={target}")
        journal_folder.remove_before(self.folder, seq)
        journal_folder.fsync_dir(self.folder)

    def _reopen(self, seq: int, path: Path) -> None:
        fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        self._fd, self._seq, self._size = fd, seq, os.fstat(fd).st_size

    def start(self) -> None:
        """Begin the once-a-second fsync (policy `everysec`); call inside the loop."""
        if self.fsync_policy == "everysec":
            self._syncer = asyncio.get_running_loop().create_task(self._sync_every_second())

    async def close(self) -> None:
        """Fsync what was written, stop the background work, close the file."""
        for task in (self._syncer, self._compactor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        async with self._lock:
            self._close_retired()
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    # -- the hot path -----------------------------------------------------------------

    def write(self, entries: list[bytes]) -> None:
        """Write `entries` (each with its LF) in one write, and fsync them under `always`.

        Whole or not at all: on any OSError the segment is cut back to its last whole entry
        and the error is raised, so the caller acknowledges nothing of the batch.
        """
        data = entries[0] if len(entries) == 1 else b"".join(entries)
        fd = self._fd
        try:
            if fd < 0:
                fd = self._open_segment()
            written = self._write(fd, data)
            if written < len(data):  # a short write: rare, so only then the loop
                self._write_rest(fd, data, written)
            if self.fsync_policy == "always":
                started = time.perf_counter()
                os.fsync(fd)
                self.tally.fsync_latency.observe(time.perf_counter() - started)
        except OSError as e:
            self._cut_back()
            self._failed(e)
            raise
        tally = self.tally
        tally.writes += 1
        tally.bytes_written += len(data)
        self._size += len(data)
        if self.failing is not None:
            self._recovered()
        self._appended += len(entries)
        if self.fsync_policy != "always":
            self._dirty = True
        if self._appended >= self._check_at:  # below it no compaction is due: no call
            self._maybe_compact()

    def _write_rest(self, fd: int, data: bytes, written: int) -> None:
        view = memoryview(data)[written:]
        while view:
            n = self._write(fd, view)
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[n:]

    def _open_segment(self) -> int:
        path = self.folder / journal_folder.wal_name(self._seq)
        fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        self._fd, self._size = fd, os.fstat(fd).st_size
        return fd

    def _cut_back(self) -> None:
        """Truncate the segment to its last whole entry, so the next entry is not glued
        onto a partial one; if even that fails, leave the segment and start a new one."""
        if self._fd < 0:
            return
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as e:
            self._log(
                f"JOURNAL_SEGMENT_ABANDONED file={journal_folder.wal_name(self._seq)}"
                f" errno={errno_name(e)} error={e.strerror}"
            )
            self._retired.append(self._fd)
            self._fd = -1
            self._seq += 1

    def _failed(self, e: OSError) -> None:
        self.tally.write_failures += 1
        self._failed_writes += 1
        if self.failing is None:
            self._failing_since = time.monotonic()
            self._log(
                f"JOURNAL_WRITE_FAILED folder={self.folder} errno={errno_name(e)}"
                f" error={e.strerror} (nothing of the batch is acknowledged, flooded or kept;"
                " logged once until a write succeeds)"
            )
        self.failing = e

    def _recovered(self) -> None:
        self._log(
            f"JOURNAL_WRITE_RECOVERED failed_writes={self._failed_writes}"
            f" seconds={time.monotonic() - self._failing_since:.3f}"
        )
        self.failing = None
        self._failed_writes = 0

    # -- background work --------------------------------------------------------------

    async def _sync_every_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._dirty or self._retired:
                async with self._lock:
                    self._close_retired()
                    self._dirty = False
                    if self._fd >= 0:
                        await self._fsync(self._fd)

    async def _fsync(self, fd: int) -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(os.fsync, fd)
        except OSError as e:
            self.tally.fsync_failures += 1
            self._dirty = True
            if not self._fsync_failing:
                self._fsync_failing = True
                self._log(f"JOURNAL_FSYNC_FAILED errno={errno_name(e)} error={e.strerror}")
        else:
            self.tally.fsync_latency.observe(time.perf_counter() - started)
            if self._fsync_failing:
                self._fsync_failing = False
                self._log("JOURNAL_FSYNC_RECOVERED")

    def _close_retired(self) -> None:
        for fd in self._retired:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._retired.clear()

    def _maybe_compact(self) -> None:
        store = self._store
        if store is None or (self._compactor is not None and not self._compactor.done()):
            return
        due_at = max(self._compact_min, self._compact_factor * len(store))
        if self._appended < due_at:
            self._check_at = due_at  # the store only grows, so it is not due before then
            return
        if time.monotonic() < self._compact_after:
            return  # the last one failed: the disk needs a rest, not a snapshot per write
        self._compactor = asyncio.get_running_loop().create_task(self._compact(store))

    async def _compact(self, store: ClientStore) -> None:
        """Start a new segment, write the whole state as a snapshot, drop what it covers."""
        async with self._lock:
            self.before_snapshot()  # into the old segment, which the snapshot covers
            old_fd, old_seq = self._fd, self._seq
            self._seq += 1
            self._fd, self._size = -1, 0  # the next write starts wal-<seq>
            self._appended = 0
            self._check_at = self._compact_min
            records = store.packed()  # the state as of the switch: covers every old entry
        seq = self._seq
        started = time.perf_counter()
        try:
            if old_fd >= 0:
                await asyncio.to_thread(os.fsync, old_fd)
            await asyncio.to_thread(journal_folder.write_snapshot, self.folder, seq, records)
        except OSError as e:
            self.tally.compaction_failures += 1
            self._compact_after = time.monotonic() + COMPACT_RETRY
            self._log(
                f"JOURNAL_COMPACT_FAILED errno={errno_name(e)} error={e.strerror}"
                f" retry_in={COMPACT_RETRY:g}s"
            )
            return
        finally:
            if old_fd >= 0:
                os.close(old_fd)
        journal_folder.remove_before(self.folder, seq)
        self.tally.compactions += 1
        self._log(
            f"JOURNAL_COMPACTED records={len(records)} replaced_through={old_seq}"
            f" seconds={time.perf_counter() - started:.3f}"
        )
