"""The node's status file: what a supervisor on this machine needs to know, kept fresh.

`run_dir/NAME.status.json` (a `NodeStatus`) is replaced atomically (write a temp file,
rename) whenever the status changes, and at least every few seconds so a reader can tell a
live node from a stale file. A supervisor reads it; nothing here listens on a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NotRequired, TypedDict

from node.private import private_dir, replace_json

CHECK_INTERVAL = 0.25  # seconds between looks for a change
REFRESH_INTERVAL = 5.0  # seconds after which the file is rewritten even if unchanged

# One neighbour's link as the node sees it: `out` our link to it is up (since `out_since`,
# POSIX time; 0.0 before the first), `in` its link to us is up, `synced` it has sent us its
# whole state on that link, `buffered` bytes waiting to go out to it.
LinkStatus = TypedDict(
    "LinkStatus",
    {"out": bool, "out_since": float, "in": bool, "synced": bool, "buffered": int},
)


class NodeStatus(TypedDict):
    """The status file's object. A reader must expect a file written by another version of
    the node, with keys missing or added: check each value where it is used."""

    name: str
    pid: int
    host: str
    port: int
    state: str  # "starting", "running" or "stopping"
    started_at: float  # POSIX time
    clients: int  # client records held
    connections: int
    links: dict[str, LinkStatus]  # by neighbour name
    journal_error: str | None  # the errno name while the journal refuses writes
    updated_at: NotRequired[float]  # POSIX time; added by StatusFile when it writes


def status_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.status.json"


class StatusFile:
    """Keeps the status file in step with `snapshot()` until stopped; removes it at the end."""

    def __init__(self, path: Path, snapshot: Callable[[], NodeStatus]) -> None:
        self.path = path
        self._snapshot = snapshot
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        private_dir(self.path.parent)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def write_now(self) -> None:
        status = {**self._snapshot(), "updated_at": time.time()}
        # A full disk must not take the node down; the next tick retries.
        with contextlib.suppress(OSError):
            replace_json(self.path, status)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _run(self) -> None:
        last: Mapping[str, object] | None = None
        written = 0.0
        while True:
            status = self._snapshot()
            now = time.monotonic()
            if status != last or now - written >= REFRESH_INTERVAL:
                self.write_now()
                last, written = status, now
            await asyncio.sleep(CHECK_INTERVAL)
