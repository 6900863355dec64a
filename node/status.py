"""The node's status file: what a supervisor on this machine needs to know, kept fresh.

`run_dir/NAME.status.json` is replaced atomically (write a temp file, rename) whenever the
status changes, and at least every few seconds so a reader can tell a live node from a
stale file. A supervisor reads it; nothing here listens on a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.private import private_dir, replace_private

CHECK_INTERVAL = 0.25  # seconds between looks for a change
REFRESH_INTERVAL = 5.0  # seconds after which the file is rewritten even if unchanged


def status_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.status.json"


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace `path` with `status` as JSON, atomically; the file is 0600."""
    replace_private(path, (json.dumps(status, sort_keys=True) + "\n").encode())


class StatusFile:
    """Keeps the status file in step with `snapshot()` until stopped; removes it at the end."""

    def __init__(self, path: Path, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._snapshot = snapshot
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        private_dir(self.path.parent)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def write_now(self) -> None:
        status = self._snapshot()
        status["updated_at"] = time.time()
        # A full disk must not take the node down; the next tick retries.
        with contextlib.suppress(OSError):
            write_status(self.path, status)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _run(self) -> None:
        last: dict[str, Any] | None = None
        written = 0.0
        while True:
            status = self._snapshot()
            now = time.monotonic()
            if status != last or now - written >= REFRESH_INTERVAL:
                self.write_now()
                last, written = status, now
            await asyncio.sleep(CHECK_INTERVAL)
