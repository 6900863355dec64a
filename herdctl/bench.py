"""`herdctl bench`'s engine: an asyncio load generator and meter for a running herd.

`run_load` drives IAMAT and WHATSAT traffic over many pipelined connections, closed loop (each
connection keeps `pipeline` requests in flight) or open loop (`rate` requests per second on a
clock, whatever the replies, so latency includes queueing). `run_propagate` times how long an
IAMAT at one node takes to become visible to WHATSAT at another. Both return a LoadResult.

It is built not to be the bottleneck, and reports its own CPU use to show it: request bytes are
built ahead in blocks, each refill of a connection is one write, replies are framed with
bytes.count/find, and nothing per request creates a task or formats a string. It runs on the
caller's event loop; `loop_factory` picks uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import math
import os
import time
from array import array
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, cast

from herdctl.render import table

Address = tuple[str, int]
Progress = Callable[[float, int], None]
T = TypeVar("T")


class Mode(StrEnum):
    IAMAT = "iamat"
    WHATSAT = "whatsat"
    MIXED = "mixed"
    PROPAGATE = "propagate"


LOAD_MODES = frozenset({Mode.IAMAT, Mode.WHATSAT, Mode.MIXED})
WHATSAT_EVERY = 10  # mixed: every tenth request is a WHATSAT
WHATSAT_ARGS = b" 10 5\n"  # radius 10 km, at most 5 places
MIN_BLOCK = 4096  # requests built at a time, per connection
CONNECT_TIMEOUT = 5.0
DRAIN_TIMEOUT = 5.0  # seconds to wait, after the run, for replies still in flight
PROGRESS_EVERY = 0.1
MIN_TICK = 0.001  # open loop: the scheduler's shortest sleep; it sends what fell due meanwhile
POLL_DEPTH = 4  # propagate: WHATSATs kept in flight at the destination
POLL_ARGS = b" 0 1\n"
GIVE_UP_AFTER = 3  # propagate: stop after this many samples in a row are not seen in time
BACKGROUND_CONNS = 16
BACKGROUND_WARMUP = 0.5
QMARK, LF = ord("?"), ord("\n")
KIND_IAMAT, KIND_WHATSAT = b"I", b"W"
_W = KIND_WHATSAT[0]
_clock = time.perf_counter


class BenchError(Exception):
    """The run could not go on; str() says why. `reason` is set when `address` was unreachable."""

    def __init__(
        self, message: str, address: Address | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.address = address
        self.reason = reason


@dataclass
class LoadResult:
    """One run's figures: latencies in ms, throughput in replies/s, CPU in % of one core."""

    mode: str
    requests: int
    replies: int
    errors: int
    duration_s: float
    throughput: float  # replies per second
    latency_ms: dict[str, float]  # p50, p90, p99, max
    cpu_percent: float  # this generator's own CPU use over the measured window
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; a figure with no sample (NaN) becomes None."""
        plain: dict[str, Any] = _json_safe(asdict(self))
        return plain


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# --- the event loop --------------------------------------------------------------------------


def loop_factory(choice: str = "auto") -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """("uvloop", its factory) for "uvloop", or "auto" when importable; else plain asyncio."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"loop must be auto, uvloop or asyncio, not {choice!r}")
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise BenchError("uvloop is not installed (pip install 'herd[fast]')") from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def run_sync(main: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """Run a coroutine (run_load, run_propagate) to its end on a new uvloop or asyncio loop."""
    try:
        _, factory = loop_factory(loop)
    except BaseException:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


# --- request bytes, built ahead --------------------------------------------------------------

_last_ns = [0]


def _posix_time() -> bytes:
    """The current POSIX time as IAMAT's `time` field; strictly increasing across calls."""
    ns = max(time.time_ns(), _last_ns[0] + 1)
    _last_ns[0] = ns
    return b"%d.%09d" % divmod(ns, 1_000_000_000)


def _location(i: int) -> bytes:
    """A location in the Los Angeles basin, spread by client index."""
    return b"%+.6f%+.6f" % (33.7 + (i * 7919 % 1000) / 2000, -118.6 + (i * 104729 % 1000) / 1500)


class _Requests:
    """One connection's endless request stream for its own clients, built a block at a time.

    Each IAMAT round gives every client a newer time, so every IAMAT is stored and flooded.
    """

    def __init__(self, mode: Mode, names: list[bytes], first: int) -> None:
        self.mode = mode
        self.iamat = [
            b"IAMAT %s %s " % (name, _location(first + i)) for i, name in enumerate(names)
        ]
        self.whatsat = [b"WHATSAT " + name + WHATSAT_ARGS for name in names]
        self.rounds = -(-MIN_BLOCK // len(names))
        self.block, self.kinds, self.offsets = b"", b"", [0]
        self.pos = self.size = 0

    def seed(self) -> bytes:
        """One IAMAT per client, so that each is known before it is asked about."""
        stamp = _posix_time() + b"\n"
        return stamp.join(self.iamat) + stamp

    def _build(self) -> None:
        count = len(self.whatsat) * self.rounds
        kinds = bytearray(KIND_IAMAT * count)
        if self.mode == Mode.WHATSAT:
            lines = self.whatsat * self.rounds
            kinds[:] = KIND_WHATSAT * count
        else:
            lines = []
            for _ in range(self.rounds):
                stamp = _posix_time() + b"\n"
                lines += [prefix + stamp for prefix in self.iamat]
            if self.mode == Mode.MIXED:
                n = len(self.whatsat)
                for g in range(WHATSAT_EVERY - 1, count, WHATSAT_EVERY):
                    lines[g] = self.whatsat[g % n]
                    kinds[g] = _W
        self.block = b"".join(lines)
        self.kinds = bytes(kinds)
        self.offsets = list(itertools.accumulate(map(len, lines), initial=0))
        self.pos, self.size = 0, count

    def take(self, k: int) -> tuple[bytes, bytes]:
        """The next k request lines as one bytes object, and their kinds (b"I"/b"W" each)."""
        a = self.pos
        if a + k <= self.size:
            self.pos = b = a + k
            return self.block[self.offsets[a] : self.offsets[b]], self.kinds[a:b]
        parts, kinds = [], []
        while k:
            if self.pos == self.size:
                self._build()
            a = self.pos
            b = min(self.size, a + k)
            parts.append(self.block[self.offsets[a] : self.offsets[b]])
            kinds.append(self.kinds[a:b])
            self.pos, k = b, k - (b - a)
        return b"".join(parts), b"".join(kinds)


# --- one load connection ---------------------------------------------------------------------


class _Batch:
    """Requests sent in one write: when the first was (meant to be) sent, the spacing of the
    rest (open loop), how many still await a reply, and whether they fall in the window."""

    __slots__ = ("dt", "left", "measured", "t")

    def __init__(self, t: float, left: int, measured: bool, dt: float) -> None:
        self.t, self.left, self.measured, self.dt = t, left, measured, dt


class _Conn(asyncio.Protocol):
    """One load connection: sends from its _Requests, frames replies, records latencies."""

    def __init__(self, load: _Load, requests: _Requests) -> None:
        self.load = load
        self.requests = requests
        self.framed = requests.mode != Mode.IAMAT  # WHATSAT replies span lines
        self.transport: asyncio.Transport | None = None
        self.batches: deque[_Batch] = deque()
        self.latency = array("d")  # seconds, each standing for `weight` requests
        self.weight = array("q")
        self.sent = self.replies = self.errors = self.pending = 0  # within the window
        self.received = 0  # every reply, warm-up included, for the progress bar
        self.line_start = True
        self.buf = bytearray()
        self.kinds = bytearray()  # of the requests in flight, framed mode
        self.kpos = 0
        self.seeding = 0
        self.seeded: asyncio.Future[None] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.seeded is not None and not self.seeded.done():
            self.seeded.set_exception(BenchError("the node closed the connection while seeding"))
        self.load.conn_lost(self)

    def seed(self) -> asyncio.Future[None]:
        assert self.transport is not None
        self.seeded = asyncio.get_running_loop().create_future()
        self.seeding = len(self.requests.iamat)
        self.transport.write(self.requests.seed())
        return self.seeded

    def send(self, k: int, t: float, dt: float) -> None:
        """Write the next k requests; the first sent (or due, open loop) at t, then every dt."""
        load = self.load
        measured = load.warm_end <= t < load.end
        if measured:
            self.sent += k
        if self.lost:
            self.errors += k if measured else 0
            return
        data, kinds = self.requests.take(k)
        assert self.transport is not None
        self.transport.write(data)
        if self.framed:
            self.kinds += kinds
        self.batches.append(_Batch(t, k, measured, dt))
        if measured:
            self.pending += k

    def data_received(self, data: bytes) -> None:
        now = _clock()
        if self.seeding:
            self.seeding -= data.count(b"\n")
            if self.seeding <= 0 and self.seeded is not None and not self.seeded.done():
                self.seeded.set_result(None)
            return
        if self.framed:
            n, errors = self._frame(data)
        else:  # one line per reply; an error reply starts with "?"
            n = data.count(b"\n")
            errors = data.count(b"\n?") + (self.line_start and data[0] == QMARK)
            self.line_start = data[-1] == LF
        if errors and self.batches and self.batches[0].measured:
            self.errors += errors
            self.replies -= errors
        if not n:
            return
        self.received += n
        self._complete(n, now)
        load = self.load
        if load.closed_loop and now < load.end:
            self.send(n, now, 0.0)
        elif load.stopping and not self.pending:
            load.drained(self)

    def _frame(self, data: bytes) -> tuple[int, int]:
        """Count whole replies: a line, or for a WHATSAT an AT line + JSON up to a blank line."""
        buf = self.buf
        buf += data
        kinds, kp, nk = self.kinds, self.kpos, len(self.kinds)
        pos, size, n, errors = 0, len(buf), 0, 0
        while pos < size and kp < nk:
            error = buf[pos] == QMARK
            if kinds[kp] == _W and not error:
                end = buf.find(b"\n\n", pos)
                end = end + 1 if end >= 0 else end
            else:
                end = buf.find(b"\n", pos)
            if end < 0:
                break
            errors += error
            pos, n, kp = end + 1, n + 1, kp + 1
        del buf[:pos]
        if kp > 65536:
            del kinds[:kp]
            kp = 0
        self.kpos = kp
        return n, errors

    def _complete(self, n: int, now: float) -> None:
        """Match n replies to the oldest requests in flight (FIFO) and record their latency."""
        batches = self.batches
        while n and batches:
            batch = batches[0]
            take = min(batch.left, n)
            if batch.measured:
                # the mean latency of the `take` requests, spaced dt apart from batch.t
                self.latency.append(now - batch.t - (take - 1) * batch.dt * 0.5)
                self.weight.append(take)
                self.replies += take
                self.pending -= take
            n -= take
            if take == batch.left:
                batches.popleft()
            else:
                batch.left -= take
                batch.t += take * batch.dt


# --- a load: many connections, a window, a result -------------------------------------------


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return f"no connection within {CONNECT_TIMEOUT:g}s"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__


def _show(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


class _Load:
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
        self.conns: list[_Conn] = []
        self.lost = 0
        self.all_lost = asyncio.Event()
        self._waiting: set[_Conn] = set()
        self._drained = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None

    def _requests(self, j: int) -> _Requests:
        """Connection j's own slice of the clients (shared round-robin if too few)."""
        lo, hi = j * self.clients // self.conns_wanted, (j + 1) * self.clients // self.conns_wanted
        if lo == hi:
            lo, hi = j % self.clients, j % self.clients + 1
        names = [b"%s%d" % (self.prefix, i) for i in range(lo, hi)]
        return _Requests(self.mode, names, lo)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()

        async def open_one(j: int) -> _Conn:
            address = self.targets[j % len(self.targets)]
            conn = _Conn(self, self._requests(j))
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: conn, *address), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError) as e:
                why = _why(e)
                raise BenchError(f"cannot reach {_show(address)}: {why}", address, why) from None
            return conn

        opened = await asyncio.gather(
            *(open_one(j) for j in range(self.conns_wanted)), return_exceptions=True
        )
        self.conns = [c for c in opened if isinstance(c, _Conn)]
        failure = next((e for e in opened if isinstance(e, BaseException)), None)
        if failure is not None:
            self.close()
            raise failure

    async def seed(self) -> None:
        if self.mode != Mode.IAMAT:
            await asyncio.wait_for(asyncio.gather(*(c.seed() for c in self.conns)), 60.0)

    def start(self, warmup: float, duration: float) -> None:
        self.t0 = now = _clock()
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
        while (now := _clock()) < self.end:
            due = int((now - self.t0) * rate) + 1
            n = due - sent
            for j in range(min(n, c)):
                m = sent + j
                conns[m % c].send((n - j + c - 1) // c, self.t0 + m / rate, spacing)
            sent = due
            await asyncio.sleep(max(self.t0 + due / rate - _clock(), MIN_TICK))

    async def until(self, moment: float) -> None:
        """Sleep until `moment` (perf_counter); BenchError if every connection is lost."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_lost.wait(), max(0.0, moment - _clock()))
        if self.all_lost.is_set():
            where = ", ".join(map(_show, self.targets))
            raise BenchError(f"{where} closed every connection during the run", self.targets[0])

    def replies_so_far(self) -> int:
        return sum(conn.received for conn in self.conns)

    def conn_lost(self, conn: _Conn) -> None:
        if self.stopping:
            self.drained(conn)
            return
        self.lost += 1
        if self.lost == len(self.conns):
            self.all_lost.set()

    def drained(self, conn: _Conn) -> None:
        self._waiting.discard(conn)
        if self.stopping and not self._waiting:
            self._drained.set()

    async def stop(self) -> None:
        """Stop sending, wait (bounded) for the window's replies still in flight, close."""
        self.end = min(self.end, _clock())
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
            "loop": _loop_name(),
            "targets": [_show(t) for t in self.targets],
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
            latency_ms=_percentiles(latency, weight),
            cpu_percent=round(cpu_percent, 1),
            extra=extra,
        )


def _percentiles(values: Sequence[float], weights: Sequence[int]) -> dict[str, float]:
    """Nearest-rank p50/p90/p99 and the max of weighted samples in seconds, as ms."""
    total = sum(weights)
    out = dict.fromkeys(("p50", "p90", "p99", "max"), math.nan)
    if not total:
        return out
    marks = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)]
    cumulative, k = 0, 0
    for i in sorted(range(len(values)), key=values.__getitem__):
        cumulative += weights[i]
        while k < len(marks) and cumulative >= math.ceil(marks[k][1] * total):
            out[marks[k][0]] = round(values[i] * 1000, 3)
            k += 1
        if k == len(marks):
            break
    out["max"] = round(max(values) * 1000, 3)
    return out


class _CpuMeter:
    """This process's CPU time over a wall-clock window, as % of one core."""

    def __init__(self) -> None:
        self.cpu, self.wall = time.process_time(), _clock()

    def percent(self) -> float:
        wall = _clock() - self.wall
        return 100 * (time.process_time() - self.cpu) / wall if wall > 0 else 0.0


@contextlib.asynccontextmanager
async def _reporting(progress: Progress | None, count: Callable[[], int]) -> AsyncIterator[None]:
    """Call progress(elapsed, count()) every PROGRESS_EVERY seconds, and once at the end."""
    if progress is None:
        yield
        return
    started = _clock()

    async def tick() -> None:
        while True:
            progress(_clock() - started, count())
            await asyncio.sleep(PROGRESS_EVERY)

    task = asyncio.get_running_loop().create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        progress(_clock() - started, count())


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
    load = _Load(
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
        async with _reporting(progress, load.replies_so_far):
            await load.until(load.warm_end)
            meter = _CpuMeter()
            await load.until(load.end)
            cpu = meter.percent()
        await load.stop()
    finally:
        load.close()
    return load.result(cpu)


# --- propagation -----------------------------------------------------------------------------


class _Prober(asyncio.Protocol):
    """A persistent connection to the destination, polling one client with pipelined WHATSATs
    until its AT line shows up; `? ...` means not there yet."""

    def __init__(self) -> None:
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
        self.active_since = _clock()
        self._poll(POLL_DEPTH)
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
        now = _clock()
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
        self.end(_clock())
        if self.in_flight:
            self.idle = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.idle, timeout)
            except TimeoutError:
                raise BenchError(f"{_show(dest)} stopped answering WHATSAT", dest) from None


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
    bg: _Load | None = None
    if background or background_rate:
        bg = _Load(
            background or [source],
            Mode.IAMAT,
            conns=BACKGROUND_CONNS,
            pipeline=64,
            rate=background_rate,
            clients=10_000,
            prefix=b"bg-",
        )
        await bg.connect()
    prober = _Prober()
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            reader, out = await asyncio.wait_for(asyncio.open_connection(*source), CONNECT_TIMEOUT)
            writer = out
        except (OSError, TimeoutError) as e:
            why = _why(e)
            raise BenchError(f"cannot reach {_show(source)}: {why}", source, why) from None
        try:
            await asyncio.wait_for(loop.create_connection(lambda: prober, *dest), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            why = _why(e)
            raise BenchError(f"cannot reach {_show(dest)}: {why}", dest, why) from None
        if bg is not None:
            bg.start(BACKGROUND_WARMUP, math.inf)
            await bg.until(bg.warm_end)
        tag = b"%x" % (time.time_ns() ^ os.getpid())
        seen: list[float] = []
        errors = timeouts = mismatches = in_a_row = tried = 0
        stopped_early: str | None = None
        started = _clock()
        meter = _CpuMeter()
        async with _reporting(progress, lambda: len(seen) + errors):
            for i in range(samples):
                if in_a_row == GIVE_UP_AFTER:
                    stopped_early = f"{in_a_row} samples in a row unseen after {timeout:g}s"
                    break
                tried += 1
                name = b"prop-%s-%d" % (tag, i)
                hit = prober.begin(b"WHATSAT " + name + POLL_ARGS)
                line = b"IAMAT %s +34.068930-118.445127 %s\n" % (name, _posix_time())
                sent = _clock()
                out.write(line)
                try:
                    reply = (await asyncio.wait_for(reader.readline(), timeout)).rstrip(b"\n")
                    if not reply:
                        raise BenchError(f"{_show(source)} closed the connection")
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
        duration = _clock() - started
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
        "loop": _loop_name(),
        "from": _show(source),
        "to": _show(dest),
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
        latency_ms=_percentiles(seen, [1] * len(seen)),
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


# --- for the CLI -----------------------------------------------------------------------------


def progress_bar(elapsed: float, total: float, done: int, unit: str, width: int = 30) -> str:
    """A one-line bar: share of `total` (seconds, or samples when unit is "samples")."""
    share = min(1.0, (done if unit == "samples" else elapsed) / total) if total > 0 else 1.0
    filled = int(share * width)
    where = f"{done:,}/{int(total):,}" if unit == "samples" else f"{elapsed:.1f}/{total:.1f}s"
    return f"[{'#' * filled}{'.' * (width - filled)}] {where}  {done:,} {unit}"


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def summary(result: LoadResult, names: Mapping[str, str] | None = None) -> str:
    """The human report: what ran, then one table row of figures, then any warnings."""
    names = names or {}
    x = result.extra

    def who(address: str) -> str:
        return f"{names[address]} ({address})" if address in names else address

    if result.mode == Mode.PROPAGATE:
        head = (
            f"propagate {who(x['from'])} -> {who(x['to'])}: {result.requests} samples, "
            f"polled every {x['poll_interval_us']:.0f} us ({x['poll_depth']} WHATSATs in flight)"
            f", {x['loop']}"
        )
        bg = x["background"]
        if bg is not None:
            asked = "closed loop" if bg["rate"] is None else f"{bg['rate']:,.0f}/s asked"
            head += (
                f"\nbackground IAMAT into {', '.join(map(who, bg['targets']))}: {asked}, "
                f"{bg['throughput']:,.0f} replies/s, p99 {_ms(bg['latency_ms']['p99'])} ms"
                f", {bg['errors']:,} errors"
            )
        header = ["SAMPLES", "SEEN", "ERRORS"]
    else:
        how = (
            f"closed loop, {x['conns']} conns x {x['pipeline']} in flight"
            if x["closed_loop"]
            else f"open loop at {x['rate']:,.0f}/s over {x['conns']} conns"
        )
        head = (
            f"{result.mode} -> {', '.join(map(who, x['targets']))}: {how}, "
            f"{result.duration_s:.1f}s after {x['warmup_s']:.1f}s warm-up, {x['loop']}"
        )
        header = ["REQUESTS", "REPLIES", "ERRORS", "REPLIES/S"]
    lat = result.latency_ms
    header += ["P50(ms)", "P90(ms)", "P99(ms)", "MAX(ms)", "GEN CPU%"]
    row = [f"{result.requests:,}", f"{result.replies:,}", f"{result.errors:,}"]
    if result.mode != Mode.PROPAGATE:
        row.append(f"{result.throughput:,.0f}")
    row += [*(_ms(lat[k]) for k in ("p50", "p90", "p99", "max")), f"{result.cpu_percent:.1f}"]
    lines = [head, table(header, [row], frozenset(header))]
    if x.get("connections_lost"):
        lines.append(
            f"note: the node(s) closed {x['connections_lost']} of {x['conns']} connections during"
            f" the run; the {x['unanswered']:,} requests they left unanswered count as errors"
        )
    if x.get("stopped_early"):
        lines.append(f"stopped early: {x['stopped_early']}")
    if result.cpu_percent > 90:
        lines.append(
            f"note: the load generator used {result.cpu_percent:.0f}% of a core;"
            " it may have been the bottleneck"
        )
    return "\n".join(lines)
