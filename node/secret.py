"""The herd's shared secret: from $HERD_SECRET, else a 0600 file created once, race-free."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from node.private import private_dir

SECRET_ENV = "HERD_SECRET"
# Anyone who records one handshake (or reads an old log) can try secrets offline against its
# proofs, as fast as HMAC-SHA256 runs; below this a guessable secret falls quickly.
MIN_SECRET_BYTES = 16


class SecretError(Exception):
    """The secret cannot be read or created; the message says which file and why."""


def load_secret(path: Path, env: Mapping[str, str] = os.environ) -> bytes:
    """The herd secret: $HERD_SECRET when set, else the file at `path`, created on first use.

    Five nodes starting at once must end up with one secret: each writes its candidate to a
    private temp file and hard-links it into place; link fails for all but the first, and the
    losers read the winner's file, which is complete the moment it appears.
    """
    from_env = env.get(SECRET_ENV, "")
    if from_env:
        return from_env.encode("utf-8", "surrogateescape")  # any bytes the shell set
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    import secrets  # 4 ms, for the one start that makes the file

    try:
        private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return _read(path)
    except OSError as e:
        raise SecretError(f"cannot create secret file {path}: {e.strerror}") from None


def short_secret_warning(env: Mapping[str, str] = os.environ) -> str | None:
    """A warning when $HERD_SECRET is set but shorter than MIN_SECRET_BYTES, naming its
    length, never its value; None when it is long enough or not set (the file is used)."""
    value = env.get(SECRET_ENV, "")
    size = len(value.encode("utf-8", "surrogateescape"))
    if not value or size >= MIN_SECRET_BYTES:
        return None
    return (
        f"warning: {SECRET_ENV} is {size} byte{'s' * (size != 1)} long, shorter than"
        f" {MIN_SECRET_BYTES}: a recorded handshake lets anyone try secrets offline until one"
        f" fits; use a long random one, e.g. from"
        f" `python3 -c 'import secrets; print(secrets.token_hex(32))'`"
    )


def _read(path: Path) -> bytes:
    try:
        st = path.stat()
        data = path.read_bytes().strip()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise SecretError(f"cannot read secret file {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"secret file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o});"
            f" run: chmod 600 {path}"
        )
    if not data:
        raise SecretError(f"secret file {path} is empty")
    return data
