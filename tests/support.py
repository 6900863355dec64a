"""Shared test helpers: temp topologies, free ports, a line client, real node processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import yaml

NAMES = ("Goloman", "Hands", "Holiday", "Welsh", "Wilkes")
LINKS = (
    ("Goloman", "Hands"),
    ("Goloman", "Holiday"),
    ("Goloman", "Wilkes"),
    ("Hands", "Wilkes"),
    ("Holiday", "Welsh"),
    ("Holiday", "Wilkes"),
)
DEADLINE = 30.0  # seconds: generous, for a loaded 2-core machine


def free_ports(n: int) -> list[int]:
    """n distinct ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_topology(
    folder: Path,
    names: Iterable[str] = NAMES,
    links: Iterable[tuple[str, str]] = LINKS,
    *,
    ports: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """A topology file in `folder` on free loopback ports; returns its path."""
    names = list(names)
    ports = dict(ports or zip(names, free_ports(len(names)), strict=True))
    doc: dict[str, Any] = {
        "nodes": {n: {"host": "127.0.0.1", "port": ports[n]} for n in names},
        "links": [list(link) for link in links],
        "places": {"provider": "offline"},
        "limits": {"peer_backoff_initial": 0.05, "peer_backoff_max": 0.5},
    }
    doc.update(extra or {})
    path = folder / "topology.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def exchange(host: str, port: int, data: bytes, *, timeout: float = DEADLINE) -> bytes:
    """Send `data`, half-close, and read every byte until the node closes."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def exchange_sync(port: int, data: bytes, *, timeout: float = DEADLINE) -> bytes:
    """Blocking `exchange` for tests outside an event loop."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block (and any process it starts) under `mask`, then restore the old one."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    """The permission bits of `path`, e.g. 0o600."""
    return stat.S_IMODE(path.stat().st_mode)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll `predicate` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class NodeProcess:
    """One real `python -m node NAME -c CONFIG` process."""

    def __init__(self, name: str, config: Path, port: int, env: Mapping[str, str] | None = None):
        self.name = name
        self.config = config
        self.port = port
        # The environment as given (so a test can leave a variable out), else ours.
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.config.parent / "logs" / f"{self.name}.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node", self.name, "-c", str(self.config)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"{self.name} exited {self.proc.returncode}: {err}")
            return port_open(self.port)

        wait_until(ready, f"{self.name} to accept connections")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"{self.name} did not stop within {timeout:g}s") from None
        finally:
            if self.proc.stderr:
                self.proc.stderr.close()


class Herd:
    """Real node processes for a temp topology; use as a context manager."""

    def __init__(self, config: Path, env: Mapping[str, str] | None = None):
        doc = yaml.safe_load(config.read_text())
        self.config = config
        self.links = [tuple(link) for link in doc.get("links") or []]
        self.nodes = {
            name: NodeProcess(name, config, spec["port"], env)
            for name, spec in doc["nodes"].items()
        }

    def neighbours(self, name: str) -> list[str]:
        return sorted(
            {b for a, b in self.links if a == name} | {a for a, b in self.links if b == name}
        )

    def start(self, *names: str) -> None:
        for name in names or tuple(self.nodes):
            self.nodes[name].start()
        for name in names or tuple(self.nodes):
            self.nodes[name].wait_ready()

    def wait_links_up(self, *names: str) -> None:
        """Wait until each named node's outbound links to running neighbours are up."""
        for name in names or tuple(self.nodes):
            node = self.nodes[name]
            for peer in self.neighbours(name):
                wait_until(partial(_link_is_up, node, peer), f"link {name} -> {peer}")

    def stop(self, *names: str, sig: int = signal.SIGTERM) -> None:
        for name in names or tuple(self.nodes):
            self.nodes[name].stop(sig)

    def __enter__(self) -> Herd:
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(AssertionError):
                node.stop()


def _link_is_up(node: NodeProcess, peer: str) -> bool:
    return _last_link_state(node.log_text(), peer) == "UP"


def _last_link_state(log: str, peer: str) -> str | None:
    state = None
    for line in log.splitlines():
        if f"peer={peer} " not in line and not line.endswith(f"peer={peer}"):
            continue
        if " LINK_UP " in line:
            state = "UP"
        elif " LINK_DOWN " in line or " LINK_FAILED " in line:
            state = "DOWN"
    return state
