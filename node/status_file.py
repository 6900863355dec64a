"""The node's side of its status file: kept in step with the node while it runs.

The file (a `status.NodeStatus`) is replaced atomically (write a temp file, rename) whenever
the status changes, and at least every few seconds so a reader can tell a live node from a
stale file; it is removed when the node stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from node.private import private_dir, replace_json
from node.status import NodeStatus

CHECK_INTERVAL = 0.25  # seconds between looks for a change
REFRESH_INTERVAL = 5.0  # seconds after which the file is rewritten even if unchanged


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
