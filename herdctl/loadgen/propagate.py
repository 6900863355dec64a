"""Propagation: how long an IAMAT at one node takes to become visible to WHATSAT at another,
alone or under a background IAMAT load."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from typing import Any, cast

from herdctl.loadgen.connection import (
    CONNECT_TIMEOUT,
    QMARK,
    posix_time,
    show,
    why_unreachable,
)
from herdctl.loadgen.load import Load
from herdctl.loadgen.loop import loop_name
from herdctl.loadgen.meter import CpuMeter, clock, percentiles, reporting
from herdctl.loadgen.result import Address, BenchError, LoadResult, Mode

POLL_DEPTH = 4  # propagate: WHATSATs kept in flight at the destination
POLL_ARGS = b" 0 1\n"
GIVE_UP_AFTER = 3  # propagate: stop after this many samples in a row are not seen in time
BACKGROUND_CONNS = 16
BACKGROUND_WARMUP = 0.5


class Prober(asyncio.Protocol):
    """A persistent connection to the destination, polling one client with pipelined WHATSATs
    until its AT line shows up; `? ...` means not there yet. `depth` polls are kept in flight
    (the dashboard's probe, herdctl.dashboard, keeps one)."""

    def __init__(self, depth: int = POLL_DEPTH) -> None:
        self.depth = depth
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.line = b""
        self.hit: asyncio.Future[tuple[float, bytes]] | None = None
        self.idle: asyncio.Future[None] | None = None
        self.in_flight = self.polls = self.active_replies = 0
        self.active_since: float | None = None
        self.active_s = 0.0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for waiter in (self.hit, self.idle):
            if waiter is not None and not waiter.done():
                waiter.set_exception(BenchError("the destination closed the connection"))

    def begin(self, line: bytes) -> asyncio.Future[tuple[float, bytes]]:
        """Poll with `line` until a reply is not `? ...`: (arrival time, its AT line)."""
        self.line = line
        self.hit = asyncio.get_running_loop().create_future()
        self.active_since = clock()
        self._poll(self.depth)
        return self.hit

    def end(self, now: float) -> None:
        if self.active_since is not None:
            self.active_s += now - self.active_since
            self.active_since = None

    def _poll(self, k: int) -> None:
        assert self.transport is not None
        self.transport.write(self.line * k)
        self.in_flight += k
        self.polls += k

    def data_received(self, data: bytes) -> None:
        now = clock()
        buf = self.buf
        buf += data
        pos, size, n = 0, len(buf), 0
        while pos < size:
            miss = buf[pos] == QMARK
            end = buf.find(b"\n", pos) if miss else buf.find(b"\n\n", pos)
            if end < 0:
                break
            if not miss and self.active_since is not None:
                self.end(now)
                if self.hit is not None and not self.hit.done():
                    self.hit.set_result((now, bytes(buf[pos : buf.find(b"\n", pos)])))
            pos, n = end + (1 if miss else 2), n + 1
        del buf[:pos]
        self.in_flight -= n
        if self.active_since is not None:
            self.active_replies += n
            if n:
                self._poll(n)
        elif not self.in_flight and self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    async def settle(self, timeout: float, dest: Address) -> None:
        """Stop polling and wait until every poll in flight is answered."""
        self.end(clock())
        if self.in_flight:
            self.idle = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.idle, timeout)
            except TimeoutError:
                raise BenchError(f"{show(dest)} stopped answering WHATSAT", dest) from None


async def run_propagate(
    source: tuple[str, int],
    dest: tuple[str, int],
    *,
    samples: int = 200,
    background: list[tuple[str, int]] | None = None,
    background_rate: float | None = None,
    timeout: float = 5.0,
    progress: Callable[[float, int], None] | None = None,
) -> LoadResult:
    """Time from sending an IAMAT at `source` until a WHATSAT at `dest` sees its AT line.

    Each sample uses a fresh client; `dest` is polled with POLL_DEPTH WHATSATs in flight,
    one more per reply, so the resolution is the poll interval reported in extra. With
    `background` (or `background_rate`: into `source` by default), an IAMAT load runs
    meanwhile, open loop at `background_rate` or closed loop without one.
    """
    if samples < 1 or timeout <= 0:
        raise ValueError("need at least one sample and a positive timeout")
    loop = asyncio.get_running_loop()
    bg: Load | None = None
    if background or background_rate:
        bg = Load(
            background or [source],
            Mode.IAMAT,
            conns=BACKGROUND_CONNS,
            pipeline=64,
            rate=background_rate,
            clients=10_000,
            prefix=b"bg-",
        )
        await bg.connect()
    prober = Prober()
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            reader, out = await asyncio.wait_for(asyncio.open_connection(*source), CONNECT_TIMEOUT)
            writer = out
        except (OSError, TimeoutError) as e:
            why = why_unreachable(e)
            raise BenchError(f"cannot reach {show(source)}: {why}", source, why) from None
        try:
            await asyncio.wait_for(loop.create_connection(lambda: prober, *dest), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            why = why_unreachable(e)
            raise BenchError(f"cannot reach {show(dest)}: {why}", dest, why) from None
        if bg is not None:
            bg.start(BACKGROUND_WARMUP, math.inf)
            await bg.until(bg.warm_end)
        tag = b"%x" % (time.time_ns() ^ os.getpid())
        seen: list[float] = []
        errors = timeouts = mismatches = in_a_row = tried = 0
        stopped_early: str | None = None
        started = clock()
        meter = CpuMeter()
        async with reporting(progress, lambda: len(seen) + errors):
            for i in range(samples):
                if in_a_row == GIVE_UP_AFTER:
                    stopped_early = f"{in_a_row} samples in a row unseen after {timeout:g}s"
                    break
                tried += 1
                name = b"prop-%s-%d" % (tag, i)
                hit = prober.begin(b"WHATSAT " + name + POLL_ARGS)
                line = b"IAMAT %s +34.068930-118.445127 %s\n" % (name, posix_time())
                sent = clock()
                out.write(line)
                try:
                    reply = (await asyncio.wait_for(reader.readline(), timeout)).rstrip(b"\n")
                    if not reply:
                        raise BenchError(f"{show(source)} closed the connection")
                    if reply.startswith(b"?"):
                        errors += 1
                        continue
                    arrived, at_line = await asyncio.wait_for(hit, timeout)
                except TimeoutError:
                    errors, timeouts, in_a_row = errors + 1, timeouts + 1, in_a_row + 1
                    continue
                finally:
                    await prober.settle(timeout, dest)
                seen.append(arrived - sent)
                in_a_row = 0
                if at_line != reply:
                    errors, mismatches = errors + 1, mismatches + 1
        cpu = meter.percent()
        duration = clock() - started
        if bg is not None:
            await bg.stop()
    finally:
        if writer is not None:
            writer.close()
        if prober.transport is not None:
            prober.transport.abort()
        if bg is not None:
            bg.close()
    extra: dict[str, Any] = {
        "loop": loop_name(),
        "from": show(source),
        "to": show(dest),
        "poll_depth": POLL_DEPTH,
        "polls": prober.polls,
        "poll_interval_us": round(1e6 * prober.active_s / max(prober.active_replies, 1), 1),
        "timeouts": timeouts,
        "mismatches": mismatches,
        "stopped_early": stopped_early,
        "background": None if bg is None else _background(bg.result(cpu)),
    }
    return LoadResult(
        mode=str(Mode.PROPAGATE),
        requests=tried,
        replies=len(seen),
        errors=errors,
        duration_s=round(duration, 6),
        throughput=round(len(seen) / duration, 1) if duration > 0 else 0.0,
        latency_ms=percentiles(seen, [1] * len(seen)),
        cpu_percent=round(cpu, 1),
        extra=extra,
    )


def _background(result: LoadResult) -> dict[str, Any]:
    keep = ("targets", "conns", "rate", "sent_per_s")
    return {
        "requests": result.requests,
        "replies": result.replies,
        "errors": result.errors,
        "throughput": result.throughput,
        "latency_ms": result.latency_ms,
        **{k: result.extra[k] for k in keep},
    }
