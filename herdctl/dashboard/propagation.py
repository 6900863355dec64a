"""The dashboard's propagation probe: an IAMAT at one node, and how long until each of the
others answers WHATSAT with it.

It is `herdctl bench --mode propagate` (herdctl.loadgen.propagate) at one sample and every
node at once: the same `Prober` keeps a WHATSAT for the probe's client in flight at each
other node (`? ...` until the record arrives), starting before the IAMAT is sent, and the
time of the first reply with its AT line is when that node had it. Each probe uses a new
client name, `herd-probe-...`, which stays in the herd's records as a bench's clients do.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Sequence
from typing import TypedDict

from herdctl.graph import adjacency, distances
from herdctl.loadgen.connection import CONNECT_TIMEOUT, posix_time, why_unreachable
from herdctl.loadgen.meter import clock
from herdctl.loadgen.propagate import POLL_ARGS, Prober
from herdctl.loadgen.result import BenchError
from node.config import HerdConfig

TIMEOUT = 5.0  # seconds a node may take to have the record before it counts as not seen
DEPTH = 1  # WHATSATs in flight at each node: the bench keeps 4 at one, a probe polls them all
LOCATION = b"+34.068930-118.445127"
_serial = itertools.count(1)


class ProbeError(Exception):
    """The probe could not start: the source is unknown, unreachable or refused the IAMAT."""


class NodeTime(TypedDict):
    """When one node had the probe's record: `ms` after the IAMAT was sent, or why not."""

    ms: float | None
    hops: int | None  # links from the source on the shortest path; None: not connected
    error: str | None


class ProbeResult(TypedDict):
    """A whole probe: where it started, each node's time, and when every node had it."""

    source: str
    client: str
    nodes: dict[str, NodeTime]  # every node, the source included (its time is its reply's)
    all_ms: float | None  # when the last node had it; None if one never did


def hops(config: HerdConfig, source: str) -> dict[str, int]:
    """Links on the shortest path from `source` to each node it reaches (breadth first)."""
    return distances(adjacency(config.nodes, config.links), source)


def client_name() -> bytes:
    """A client name no one has used: the probe must see its own record arrive."""
    return b"herd-probe-%x-%x-%d" % (time.time_ns(), os.getpid(), next(_serial))


async def probe(config: HerdConfig, source: str, *, timeout: float = TIMEOUT) -> ProbeResult:
    """Send an IAMAT for a new client to `source`; time its arrival at every other node."""
    if source not in config.nodes:
        raise ProbeError(f"unknown node {source!r} (known: {', '.join(config.nodes)})")
    distance = hops(config, source)
    spec = config.nodes[source]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(spec.host, spec.port), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError) as e:
        raise ProbeError(f"cannot reach {source}: {why_unreachable(e)}") from None
    others = [name for name in config.nodes if name != source]
    probers: dict[str, Prober] = {}
    times: dict[str, NodeTime] = {}
    try:
        reached = await asyncio.gather(*(_connect(config, name) for name in others))
        for name, got in zip(others, reached, strict=True):
            if isinstance(got, Prober):
                probers[name] = got
            else:
                times[name] = {"ms": None, "hops": distance.get(name), "error": got}
        client = client_name()
        hits = {name: p.begin(b"WHATSAT " + client + POLL_ARGS) for name, p in probers.items()}
        sent = clock()
        writer.write(b"IAMAT %s %s %s\n" % (client, LOCATION, posix_time()))
        try:
            reply = await asyncio.wait_for(reader.readline(), timeout)
        except (OSError, TimeoutError) as e:
            raise ProbeError(f"{source} did not answer the IAMAT: {why_unreachable(e)}") from None
        if not reply.startswith(b"AT "):
            said = reply.decode("utf-8", "replace").strip() or "nothing (connection closed)"
            raise ProbeError(f"{source} refused the IAMAT: {said}")
        times[source] = {"ms": _ms(clock() - sent), "hops": 0, "error": None}
        names = list(hits)
        arrivals = await asyncio.gather(*(_arrival(hits[name], timeout) for name in names))
        for name, arrival in zip(names, arrivals, strict=True):
            if isinstance(arrival, str):
                times[name] = {"ms": None, "hops": distance.get(name), "error": arrival}
            else:
                ms = _ms(arrival - sent)
                times[name] = {"ms": ms, "hops": distance.get(name), "error": None}
    finally:
        writer.close()
        for prober in probers.values():
            if prober.transport is not None:
                prober.transport.abort()
    ordered = {name: times[name] for name in config.nodes}
    seen = [t["ms"] for t in ordered.values()]
    return {
        "source": source,
        "client": client.decode(),
        "nodes": ordered,
        "all_ms": max(_known(seen)) if None not in seen else None,
    }


async def _connect(config: HerdConfig, name: str) -> Prober | str:
    """A Prober connected to node `name`, or why it could not be."""
    spec = config.nodes[name]
    prober = Prober(DEPTH)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: prober, spec.host, spec.port), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError) as e:
        return f"unreachable: {why_unreachable(e)}"
    return prober


async def _arrival(hit: asyncio.Future[tuple[float, bytes]], timeout: float) -> float | str:
    """When the hit came (the clock's time), or why it did not."""
    try:
        arrived, _line = await asyncio.wait_for(hit, timeout)
    except TimeoutError:
        return f"not seen within {timeout:g}s"
    except BenchError as e:
        return str(e)
    return arrived


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _known(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]
