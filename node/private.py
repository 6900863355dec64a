"""Files and folders that can hold client data or secrets: files 0600, folders 0700.

Logs, status and pid files, the secret: whatever the herd writes is readable by its own
user only. An existing file it appends to with a wider mode is tightened when opened; a
folder that already exists is left as it is (the operator chose it).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create `path` and every missing parent as 0700; an existing folder is left alone.

    Nodes start side by side and make the same folders: a parent missing when our mkdir ran
    may be there a moment later, made by another node. So a missing parent is made (or found
    made), then the mkdir is tried once more; a second "no such file" is the real error (a
    path through something that is not a folder, a parent removed under us)."""
    try:
        _make_dir(path)
    except FileNotFoundError:
        if path.parent == path:
            raise
        private_dir(path.parent)
        _make_dir(path)


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:  # another node made it first, or it was there all along
        if not path.is_dir():
            raise
    else:
        os.chmod(path, DIR_MODE)  # whatever the umask took away or left


def open_private(path: Path, flags: int) -> int:
    """`os.open(path, flags | O_CREAT)`, created 0600; an existing wider file is tightened."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def tighten(path: Path) -> None:
    """Make an existing regular file 0600 (a log rotated before the herd made its logs
    private); a missing one, or anything but a file, is left alone."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != FILE_MODE:
        os.chmod(path, FILE_MODE)


def replace_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (a 0600 temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def replace_json(path: Path, data: Mapping[str, object]) -> None:
    """Replace `path` with `data` as one line of JSON, keys sorted, atomically; 0600."""
    replace_private(path, (json.dumps(data, sort_keys=True) + "\n").encode())
