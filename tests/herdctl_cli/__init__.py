"""Tests of the herdctl CLI; shared helpers to run the real `herdctl` binary and clean up."""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

BIN = Path(sys.executable).parent / "herdctl"
TIMEOUT = 90.0  # seconds for one herdctl command on a loaded machine


def short_tempdir() -> Path:
    """A temp folder with a short path: Unix socket paths must stay under ~107 bytes."""
    return Path(tempfile.mkdtemp(prefix="hc", dir="/tmp"))


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A short temp folder for tests that start no herd; removed at the end."""
    path = short_tempdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def herdctl(
    *args: str,
    config: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run `herdctl [-c CONFIG] ARGS...` to completion; output captured as text."""
    command = [str(BIN), *(["-c", str(config)] if config else []), *args]
    full_env = {k: v for k, v in os.environ.items() if k not in ("HERD_CONFIG", "HERD_SECRET")}
    full_env.update(env or {})
    return subprocess.run(
        command,
        cwd=cwd or (config.parent if config else None),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def no_traceback(result: subprocess.CompletedProcess[Any]) -> None:
    assert "Traceback" not in str(result.stderr), result.stderr


def read_lines_until(
    stream: IO[bytes], want: int, timeout: float, seen: list[str] | None = None
) -> list[str]:
    """Read lines from a pipe until `want` lines in all have arrived or `timeout` passes."""
    seen = [] if seen is None else seen
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while len(seen) < want:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise AssertionError(f"timed out after {timeout:g}s; got {seen!r}")
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"stream closed; got {seen!r}")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            seen.extend(line.decode() for line in lines)
    return seen


def processes_under(folder: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions `folder` (the temp topology's home)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("status") == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        if any(str(folder) in part for part in cmdline):
            found.append(proc)
    return found


def kill_all(procs: Iterable[psutil.Process]) -> None:
    """SIGKILL each process and its group (children of a node included); ignore the gone."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.kill()


def pids_of(nodes: Sequence[Mapping[str, Any]]) -> dict[str, int | None]:
    return {node["name"]: node["pid"] for node in nodes}


@contextlib.contextmanager
def herd_folder() -> Iterator[Path]:
    """A short temp folder for a herd; whatever herd ran there is taken down at the end, and
    every process left under it killed, even when the test failed."""
    path = short_tempdir()
    try:
        yield path
    finally:
        try:
            if (path / "topology.yaml").exists():
                herdctl("down", config=path / "topology.yaml", timeout=60)
        finally:
            kill_all(processes_under(path))
            shutil.rmtree(path, ignore_errors=True)
