"""A load: many connections round-robin over the targets, closed or open loop, measured in a
window after a warm-up; `run_load` runs one and returns its LoadResult."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from herdctl.loadgen.connection import (
    CONNECT_TIMEOUT,
    WHATSAT_EVERY,
    Conn,
    Requests,
    show,
    why_unreachable,
)
from herdctl.loadgen.loop import loop_name
from herdctl.loadgen.meter import CpuMeter, clock, percentiles, reporting
from herdctl.loadgen.result import LOAD_MODES, Address, BenchError, LoadResult, Mode

DRAIN_TIMEOUT = 5.0  # seconds to wait, after the run, for replies still in flight
MIN_TICK = 0.001  # open loop: the scheduler's shortest sleep; it sends what fell due meanwhile


# --- a load: many connections, a window, a result -------------------------------------------


class Load:
    """The connections of one run_load and the window they are measured in."""

    def __init__(
        self,
        targets: Sequence[Address],
        mode: Mode,
        *,
        conns: int,
        pipeline: int,
        rate: float | None,
        clients: int,
        prefix: bytes,
    ) -> None:
        if mode not in LOAD_MODES:
            raise ValueError(f"mode must be iamat, whatsat or mixed, not {mode!r}")
        if not targets or conns < 1 or pipeline < 1 or clients < 1:
            raise ValueError("need at least one target, connection, request in flight, client")
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.targets = [(str(host), int(port)) for host, port in targets]
        self.mode, self.conns_wanted, self.pipeline = mode, conns, pipeline
        self.rate, self.clients, self.prefix = rate, clients, prefix
        self.closed_loop = rate is None
        self.t0 = self.warm_end = self.end = math.inf
        self.stopping = False
        self.conns: list[Conn] = []
        self.lost = 0
        self.all_lost = asyncio.Event()
        self._waiting: set[Conn] = set()
        self._drained = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None

    def _requests(self, j: int) -> Requests:
        """Connection j's own slice of the clients (shared round-robin if too few)."""
        lo, hi = j * self.clients // self.conns_wanted, (j + 1) * self.clients // self.conns_wanted
        if lo == hi:
            lo, hi = j % self.clients, j % self.clients + 1
        names = [b"%s%d" % (self.prefix, i) for i in range(lo, hi)]
        return Requests(self.mode, names, lo)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()

        async def open_one(j: int) -> Conn:
            address = self.targets[j % len(self.targets)]
            conn = Conn(self, self._requests(j))
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: conn, *address), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError) as e:
                why = why_unreachable(e)
                raise BenchError(f"cannot reach {show(address)}: {why}", address, why) from None
            return conn

        opened = await asyncio.gather(
            *(open_one(j) for j in range(self.conns_wanted)), return_exceptions=True
        )
        self.conns = [c for c in opened if isinstance(c, Conn)]
        failure = next((e for e in opened if isinstance(e, BaseException)), None)
        if failure is not None:
            self.close()
            raise failure

    async def seed(self) -> None:
        if self.mode != Mode.IAMAT:
            await asyncio.wait_for(asyncio.gather(*(c.seed() for c in self.conns)), 60.0)

    def start(self, warmup: float, duration: float) -> None:
        self.t0 = now = clock()
        self.warm_end = now + warmup
        self.end = self.warm_end + duration
        if self.closed_loop:
            for conn in self.conns:
                conn.send(self.pipeline, now, 0.0)
        else:
            self._scheduler = asyncio.get_running_loop().create_task(self._schedule())

    async def _schedule(self) -> None:
        """Open loop: request m is due at t0 + m/rate on connection m % conns, sent or not."""
        assert self.rate is not None
        rate, conns, sent = self.rate, self.conns, 0
        c = len(conns)
        spacing = c / rate
        while (now := clock()) < self.end:
            due = int((now - self.t0) * rate) + 1
            n = due - sent
            for j in range(min(n, c)):
                m = sent + j
                conns[m % c].send((n - j + c - 1) // c, self.t0 + m / rate, spacing)
            sent = due
            await asyncio.sleep(max(self.t0 + due / rate - clock(), MIN_TICK))

    async def until(self, moment: float) -> None:
        """Sleep until `moment` (perf_counter); BenchError if every connection is lost."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_lost.wait(), max(0.0, moment - clock()))
        if self.all_lost.is_set():
            where = ", ".join(map(show, self.targets))
            raise BenchError(f"{where} closed every connection during the run", self.targets[0])

    def replies_so_far(self) -> int:
        return sum(conn.received for conn in self.conns)

    def conn_lost(self, conn: Conn) -> None:
        if self.stopping:
            self.drained(conn)
            return
        self.lost += 1
        if self.lost == len(self.conns):
            self.all_lost.set()

    def drained(self, conn: Conn) -> None:
        self._waiting.discard(conn)
        if self.stopping and not self._waiting:
            self._drained.set()

    async def stop(self) -> None:
        """Stop sending, wait (bounded) for the window's replies still in flight, close."""
        self.end = min(self.end, clock())
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        self._waiting = {c for c in self.conns if c.pending and not c.lost}
        self.stopping = True  # from here on, each connection reports when it has drained
        if self._waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), DRAIN_TIMEOUT)
        self.close()

    def close(self) -> None:
        """Drop every connection now (also on failure or cancellation: no draining)."""
        self.stopping = True
        if self._scheduler is not None:
            self._scheduler.cancel()
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.abort()

    def result(self, cpu_percent: float) -> LoadResult:
        conns = self.conns
        requests = sum(c.sent for c in conns)
        unanswered = sum(c.pending for c in conns)
        error_replies = sum(c.errors for c in conns)
        replies = sum(c.replies for c in conns)
        duration = max(self.end - self.warm_end, 1e-9)
        latency = list(itertools.chain.from_iterable(c.latency for c in conns))
        weight = list(itertools.chain.from_iterable(c.weight for c in conns))
        extra: dict[str, Any] = {
            "loop": loop_name(),
            "targets": [show(t) for t in self.targets],
            "conns": len(conns),
            "closed_loop": self.closed_loop,
            "pipeline": self.pipeline if self.closed_loop else None,
            "rate": self.rate,
            "sent_per_s": round(requests / duration, 1),
            "clients": self.clients,
            "warmup_s": round(self.warm_end - self.t0, 3),
            "error_replies": error_replies,
            "unanswered": unanswered,
            "connections_lost": self.lost,
        }
        if self.mode == Mode.MIXED:
            extra["whatsat_share"] = 1 / WHATSAT_EVERY
        return LoadResult(
            mode=str(self.mode),
            requests=requests,
            replies=replies,
            errors=error_replies + unanswered,
            duration_s=round(duration, 6),
            throughput=round(replies / duration, 1),
            latency_ms=percentiles(latency, weight),
            cpu_percent=round(cpu_percent, 1),
            extra=extra,
        )


async def run_load(
    targets: list[tuple[str, int]],
    *,
    mode: str = "iamat",
    conns: int = 32,
    pipeline: int = 64,
    duration: float = 5.0,
    rate: float | None = None,
    clients: int = 10_000,
    warmup: float = 0.5,
    progress: Callable[[float, int], None] | None = None,
) -> LoadResult:
    """Load the targets (connections round-robin over them) and measure the replies.

    mode iamat, whatsat (clients seeded first) or mixed (one WHATSAT in ten). Closed loop:
    each connection keeps `pipeline` requests in flight. Open loop (`rate` requests/s over
    all connections): requests go out on schedule, and latency counts from when each was
    due. Only requests due after `warmup` and before its end count; their replies are
    awaited up to DRAIN_TIMEOUT, and those that never come are errors.
    """
    load = Load(
        targets,
        Mode(mode),
        conns=conns,
        pipeline=pipeline,
        rate=rate,
        clients=clients,
        prefix=b"bench-",
    )
    await load.connect()
    try:
        await load.seed()
        load.start(warmup, duration)
        async with reporting(progress, load.replies_so_far):
            await load.until(load.warm_end)
            meter = CpuMeter()
            await load.until(load.end)
            cpu = meter.percent()
        await load.stop()
    finally:
        load.close()
    return load.result(cpu)
