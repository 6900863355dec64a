"""Reaching a node, and one load connection: the requests it sends, built ahead a block at a
time, and its replies, framed and matched to their requests to time them."""

from __future__ import annotations

import asyncio
import itertools
import time
from array import array
from collections import deque
from typing import Protocol, cast

from herdctl.loadgen.meter import clock
from herdctl.loadgen.result import Address, BenchError, Mode


class Owner(Protocol):
    """What a connection needs of the run that owns it (`load.Load` is one)."""

    closed_loop: bool
    warm_end: float
    end: float
    stopping: bool

    def conn_lost(self, conn: Conn) -> None: ...

    def drained(self, conn: Conn) -> None: ...


WHATSAT_EVERY = 10  # mixed: every tenth request is a WHATSAT
WHATSAT_ARGS = b" 10 5\n"  # radius 10 km, at most 5 places
MIN_BLOCK = 4096  # requests built at a time, per connection
CONNECT_TIMEOUT = 5.0
QMARK, LF = ord("?"), ord("\n")
KIND_IAMAT, KIND_WHATSAT = b"I", b"W"
_W = KIND_WHATSAT[0]


# --- reaching a node -------------------------------------------------------------------------


def why_unreachable(e: BaseException) -> str:
    """Why a node could not be reached, in a few words for a BenchError."""
    if isinstance(e, TimeoutError):
        return f"no connection within {CONNECT_TIMEOUT:g}s"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__


def show(address: Address) -> str:
    """An address as host:port."""
    return f"{address[0]}:{address[1]}"


# --- request bytes, built ahead --------------------------------------------------------------

_last_ns = [0]


def posix_time() -> bytes:
    """The current POSIX time as IAMAT's `time` field; strictly increasing across calls."""
    ns = max(time.time_ns(), _last_ns[0] + 1)
    _last_ns[0] = ns
    return b"%d.%09d" % divmod(ns, 1_000_000_000)


def _location(i: int) -> bytes:
    """A location in the Los Angeles basin, spread by client index."""
    return b"%+.6f%+.6f" % (33.7 + (i * 7919 % 1000) / 2000, -118.6 + (i * 104729 % 1000) / 1500)


class Requests:
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
        stamp = posix_time() + b"\n"
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
                stamp = posix_time() + b"\n"
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


class Conn(asyncio.Protocol):
    """One load connection: sends from its Requests, frames replies, records latencies."""

    def __init__(self, load: Owner, requests: Requests) -> None:
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
        now = clock()
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
