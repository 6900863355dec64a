"""The journal's folder on disk: what its files are called, which there are, a snapshot
written whole, damaged files moved aside.

`data_dir/NAME/` holds `snap-N.log` (the whole state, compacted) and `wal-N.log` (entries
appended since), numbered in the order they were started; `damaged/` keeps files a replay
found damaged, never replayed again. No policy here: `node.journal` decides when.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from node.entries import encode_packed
from node.private import open_private, private_dir
from node.store import Packed

DAMAGED_DIR = "damaged"
SNAPSHOT_BATCH = 10_000  # records encoded and written per write() of a snapshot

_FILE = re.compile(r"(snap|wal)-(\d{8})\.log")
_LEFTOVER = re.compile(r"snap-\d{8}\.tmp")

JournalFile = tuple[int, str, Path]  # (sequence number, "snap" or "wal", path)


def wal_name(seq: int) -> str:
    return f"wal-{seq:08d}.log"


def journal_files(folder: Path) -> list[JournalFile]:
    """Every snapshot and segment in `folder`, oldest first."""
    found = []
    for path in folder.iterdir():
        m = _FILE.fullmatch(path.name)
        if m and path.is_file():
            found.append((int(m.group(2)), m.group(1), path))
    return sorted(found)


def remove_leftovers(folder: Path) -> list[str]:
    """Remove the snapshots that were being written when the process died (useless: they
    were never renamed into place); return their names."""
    removed = []
    for path in folder.iterdir():
        if _LEFTOVER.fullmatch(path.name):
            path.unlink()
            removed.append(path.name)
    return removed


def remove_before(folder: Path, seq: int) -> None:
    """Remove every file numbered below `seq`: what the snapshot `seq` covers."""
    for file_seq, _, path in journal_files(folder):
        if file_seq < seq:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def write_snapshot(folder: Path, seq: int, records: list[Packed]) -> None:
    """snap-<seq>.log, whole or not at all: written as .tmp, fsynced, renamed."""
    final = folder / f"snap-{seq:08d}.log"
    tmp = final.with_suffix(".tmp")
    try:
        fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
        with open(fd, "wb") as f:
            for i in range(0, len(records), SNAPSHOT_BATCH):
                batch = records[i : i + SNAPSHOT_BATCH]
                f.write(b"".join([encode_packed(c, p) for c, p in batch]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a full disk must not stay full of a snapshot that failed
        raise
    fsync_dir(folder)  # the rename itself must survive a power cut


def move_aside(folder: Path, paths: Iterable[Path]) -> Iterator[tuple[str, str]]:
    """Move damaged files into `folder/damaged/` under a free name, one at a time; yield
    each move once made, as (old name, new path relative to `folder`)."""
    aside = folder / DAMAGED_DIR
    private_dir(aside)
    for path in paths:
        target = _free_name(aside / path.name)
        os.replace(path, target)
        yield path.name, f"{DAMAGED_DIR}/{target.name}"


def fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _free_name(path: Path) -> Path:
    """`path`, or `path.2`, `path.3`, ... when taken."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
