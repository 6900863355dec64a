"""Shared helpers for the review tests: in-process nodes, gated fake places, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from node.client import ClientConnection
from node.config import HerdConfig, load_config
from node.handshake import Initiator
from node.logbook import LogBook
from node.places.base import success_response
from node.server import NodeServer
from tests.support import write_topology

SECRET = b"test-secret"
FAST_BACKOFF = {"peer_backoff_initial": 0.05, "peer_backoff_max": 0.5}


class GatedPlaces:
    """A provider that records calls and, when `gate` is set, waits for it before answering."""

    name = "fake"

    def __init__(self, result_size: int = 10, results: int = 20) -> None:
        self.calls: list[tuple[float, float, float, int]] = []
        self.gate: asyncio.Event | None = None
        self.result_size = result_size
        self.results = results

    async def nearby(self, lat: float, lng: float, radius_m: float, bound: int) -> dict[str, Any]:
        self.calls.append((lat, lng, radius_m, bound))
        if self.gate is not None:
            await self.gate.wait()
        return success_response(self.make_results(), [])

    def make_results(self) -> list[dict[str, Any]]:
        return [{"name": f"p{i}", "blob": "x" * self.result_size} for i in range(self.results)]

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def make_config(
    folder: Path,
    names: tuple[str, ...] = ("Solo",),
    links: Iterable[tuple[str, str]] | None = None,
    limits: dict[str, Any] | None = None,
) -> HerdConfig:
    if links is None:
        links = [(names[0], other) for other in names[1:]]
    extra = {"places": {"provider": "offline"}, "limits": {**FAST_BACKOFF, **(limits or {})}}
    return load_config(write_topology(folder, names, links, extra=extra))


@asynccontextmanager
async def node_running(
    config: HerdConfig,
    name: str,
    folder: Path,
    *,
    places: Any = None,
    port: int | None = 0,
) -> AsyncIterator[NodeServer]:
    """A NodeServer started in-process; `port=None` listens on the topology's port."""
    node = NodeServer(
        config,
        name,
        secret=SECRET,
        places=places if places is not None else GatedPlaces(),
        log=LogBook(folder / f"{name}.log"),
    )
    await node.start(port=port)
    try:
        yield node
    finally:
        await asyncio.wait_for(node.stop(), 30)
        node.log.close()


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `predicate` on the event loop until true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.01)


async def only_connection(node: NodeServer) -> ClientConnection:
    await eventually(lambda: len(node.connections) == 1, "exactly one connection")
    return next(iter(node.connections))


async def link_in(
    port: int, me: bytes, them: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open an authenticated inbound peer link to the node on `port`, as neighbour `me`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hs = Initiator(SECRET, me, them)
    writer.write(hs.hello())
    writer.write(hs.on_challenge((await asyncio.wait_for(reader.readline(), 10)).rstrip(b"\n")))
    hs.on_welcome((await asyncio.wait_for(reader.readline(), 10)).rstrip(b"\n"))
    return reader, writer


async def read_all(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    """Everything until EOF; a reset ends it too, keeping what arrived before the reset."""
    chunks: list[bytes] = []
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)
