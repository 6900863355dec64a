"""Log rotation, one policy for every log of the herd: NAME -> NAME.1 -> ... -> NAME.<backups>.

The node's own log rotates itself (`LogBook`); a log another process holds open for
appending is rotated before that process opens it again (`rotate_if_full`), or, for the
node's NAME.stderr.log behind its own fds 1 and 2, in place (`rotate_stderr`).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from node.private import open_private, tighten


def rotate_files(path: Path, backups: int) -> None:
    """NAME -> NAME.1 -> ... -> NAME.<backups>; the oldest is dropped. Each keeps its mode."""
    for i in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def rotate_if_full(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate `path` like the log (rotate_files) once it has reached `max_bytes`: for a file
    that is about to be opened again for appending (a node's NAME.stderr.log before it is
    spawned, the supervisor's herdctl.log). The copy made is 0600, as it may date from before
    the herd made its logs private. False when the file is missing or not full yet."""
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    rotate_files(path, backups)
    tighten(path.with_name(f"{path.name}.1"))
    return True


def rotate_stderr(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate `path` like the log when it is the file behind this process's stderr (as the
    supervisor sets it up) and has reached `max_bytes`: the file is renamed and a new one
    put behind fds 1 and 2. Anything else (a terminal, another file) is left alone."""
    try:
        behind = os.fstat(2)
        on_disk = path.stat()
    except OSError:
        return False
    if (
        not stat.S_ISREG(behind.st_mode)
        or (behind.st_dev, behind.st_ino) != (on_disk.st_dev, on_disk.st_ino)
        or behind.st_size < max_bytes
    ):
        return False
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    rotate_files(path, backups)
    fd = open_private(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)
    return True
