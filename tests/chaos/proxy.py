"""A fault-injecting TCP proxy for the chaos tests: pass, delay, drop, blackhole, reset.

`FaultProxy` lives on one asyncio loop: it listens on a loopback port and forwards every
connection to a target, chunk by chunk in each direction, through a fault that the test
switches at run time:

- `pass`: forward everything as it comes.
- `delay(ms, direction)`: every chunk is held `ms` milliseconds before it goes on (a delay
  line: throughput is kept, only latency grows), per direction.
- `drop(direction)`: chunks vanish silently and the connection stays open. The stream now
  has a hole, which TCP never delivers: the connection is dead and nobody knows yet, which is
  what a cut link looks like. `heal()` resets such connections (as TCP's retransmission
  timeout would in the end), so no stream with a hole ever carries data again.
- `blackhole()`: connections are accepted and kept, nothing is read or forwarded, nothing is
  closed. What was sent waits in the kernel's buffers and flows on `heal()`, as TCP's
  retransmissions deliver it when a path comes back.
- `reset()`: every open connection is aborted with an RST, and new ones are reset at once.
- `heal()`: back to `pass`; new connections go through.

`ProxyThread` runs a `FaultProxy` on its own loop in a daemon thread, so a synchronous test
can switch faults while real node processes talk through it; its methods return once the
switch is in force.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import socket
import struct
import threading
from collections.abc import Callable
from functools import partial
from typing import Literal, TypeVar

Direction = Literal["up", "down"]  # up: client -> target; down: target -> client
Which = Literal["up", "down", "both"]
Mode = Literal["pass", "delay", "drop", "blackhole", "reset"]

CHUNK = 65536
QUEUE_CHUNKS = 64  # chunks in flight per direction before the proxy stops reading
CONNECT_TIMEOUT = 3.0
CLOSE_TIMEOUT = 5.0

T = TypeVar("T")


@dataclasses.dataclass
class ProxyStats:
    """What went through the proxy and what it did to it."""

    connections: int = 0  # accepted and forwarded (or held)
    target_failures: int = 0  # the target refused or did not answer: the client was reset
    bytes_up: int = 0  # forwarded client -> target
    bytes_down: int = 0  # forwarded target -> client
    dropped_bytes: int = 0
    dropped_chunks: int = 0
    delayed_chunks: int = 0
    held: int = 0  # times a connection or a chunk was stopped by a blackhole
    resets: int = 0  # open connections aborted with an RST
    refused: int = 0  # new connections reset at once (reset mode)
    faults: int = 0  # fault modes switched on

    def injected(self) -> int:
        """Fault events: switches, chunks dropped or delayed, stops by a blackhole, RSTs."""
        return (
            self.faults
            + self.dropped_chunks
            + self.delayed_chunks
            + self.held
            + self.resets
            + self.refused
        )


def _directions(which: Which) -> tuple[Direction, ...]:
    if which == "both":
        return ("up", "down")
    return (which,)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN: linger on, timeout zero, then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Pipe:
    """One proxied connection: the client's end and, once connected, the target's."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.broken = False  # bytes were dropped: the stream has a hole
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True
        _rst(self.client)
        if self.target is not None:
            _rst(self.target)

    def close(self) -> None:
        self.client.close()
        if self.target is not None:
            self.target.close()


class FaultProxy:
    """A TCP proxy on the running loop whose fault is switched by the test; see the module."""

    def __init__(
        self,
        target_port: int,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        target_host: str = "127.0.0.1",
    ) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self._port = port
        self.stats = ProxyStats()
        self.mode: Mode = "pass"
        self._delays: dict[Direction, float] = {"up": 0.0, "down": 0.0}
        self._dropping: set[Direction] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._pipes: set[_Pipe] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._closing = False

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, abort every connection, wait (bounded) for the handlers to end."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.abort()
        self._flowing.set()  # release anything held by a blackhole
        if self._handlers:
            _, pending = await asyncio.wait(set(self._handlers), timeout=CLOSE_TIMEOUT)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT)

    # -- faults: call on the proxy's loop (ProxyThread does it for other threads) ----------

    def delay(self, ms: float, direction: Which = "both") -> None:
        """Hold every chunk `ms` milliseconds in `direction` (stacks with other directions)."""
        if self.mode != "delay":
            self._switch("delay")
        for d in _directions(direction):
            self._delays[d] = ms / 1000.0

    def drop(self, direction: Which = "both") -> None:
        """Silently discard what goes `direction`; the connections stay open."""
        if self.mode != "drop":
            self._switch("drop")
        self._dropping.update(_directions(direction))

    def blackhole(self) -> None:
        """Keep every connection, accept new ones, forward nothing, close nothing."""
        self._switch("blackhole")
        self._flowing.clear()

    def reset(self) -> None:
        """Abort every open connection with an RST; reset new ones as they arrive."""
        self._switch("reset")
        for pipe in list(self._pipes):
            self.stats.resets += 1
            pipe.abort()

    def heal(self) -> None:
        """Back to pass. Connections that lost bytes to a drop are reset: they cannot recover."""
        self.mode = "pass"
        self._delays = {"up": 0.0, "down": 0.0}
        self._dropping.clear()
        self._flowing.set()
        for pipe in list(self._pipes):
            if pipe.broken and not pipe.aborted:
                self.stats.resets += 1
                pipe.abort()

    def _switch(self, mode: Mode) -> None:
        self.mode = mode
        self.stats.faults += 1
        self._delays = {"up": 0.0, "down": 0.0}
        self._dropping.clear()
        self._flowing.set()

    # -- forwarding ---------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "reset" or self._closing:
            self.stats.refused += 1
            _rst(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.stats.connections += 1
        pipe = _Pipe(writer)
        self._pipes.add(pipe)
        try:
            await self._serve(pipe, reader)
        finally:
            self._pipes.discard(pipe)
            pipe.close()
            self._handlers.discard(task)

    async def _serve(self, pipe: _Pipe, reader: asyncio.StreamReader) -> None:
        await self._through_blackhole()  # a new connection is held before the target
        if pipe.aborted or self._closing:
            return
        try:
            target_reader, target_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            self.stats.target_failures += 1
            pipe.abort()  # as the target would have: refused
            return
        pipe.target = target_writer
        if pipe.aborted:  # reset while we were connecting
            _rst(target_writer)
            return
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pump(pipe, reader, target_writer, "up"))
                tg.create_task(self._pump(pipe, target_reader, pipe.client, "down"))
        except* OSError:
            pipe.abort()  # one end was reset: so is the other

    async def _pump(
        self,
        pipe: _Pipe,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        direction: Direction,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._read_side(pipe, src, queue, direction))
            tg.create_task(self._write_side(pipe, dst, queue, direction))

    async def _read_side(
        self,
        pipe: _Pipe,
        src: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        direction: Direction,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._through_blackhole()
            data = await src.read(CHUNK)
            if not data:
                await queue.put(None)
                return
            if self._drops(pipe, data, direction):
                continue
            delay = self._delays[direction]
            if delay > 0:
                self.stats.delayed_chunks += 1
            await queue.put((loop.time() + delay, data))

    async def _write_side(
        self,
        pipe: _Pipe,
        dst: asyncio.StreamWriter,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        direction: Direction,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            if item is None:
                if not dst.transport.is_closing() and dst.can_write_eof():
                    dst.write_eof()
                return
            due, data = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            await self._through_blackhole()
            if self._drops(pipe, data, direction):  # the fault changed while it was queued
                continue
            dst.write(data)
            if direction == "up":
                self.stats.bytes_up += len(data)
            else:
                self.stats.bytes_down += len(data)
            await dst.drain()

    async def _through_blackhole(self) -> None:
        if not self._flowing.is_set():
            self.stats.held += 1
            await self._flowing.wait()

    def _drops(self, pipe: _Pipe, data: bytes, direction: Direction) -> bool:
        if direction not in self._dropping:
            return False
        self.stats.dropped_bytes += len(data)
        self.stats.dropped_chunks += 1
        pipe.broken = True
        return True


class ProxyThread:
    """A FaultProxy on its own loop in a daemon thread; every method is thread-safe and
    returns once its effect is in force. Use as a context manager."""

    def __init__(self, target_port: int, *, port: int = 0, target_host: str = "127.0.0.1") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        # No asyncio object binds to a loop before its first use, so building it here is safe.
        self._proxy = FaultProxy(target_port, port=port, target_host=target_host)
        self._running = False

    @property
    def port(self) -> int:
        return self._proxy.port

    @property
    def mode(self) -> Mode:
        return self._proxy.mode

    def start(self) -> ProxyThread:
        self._thread.start()
        self._running = True
        asyncio.run_coroutine_threadsafe(self._proxy.start(), self._loop).result(CLOSE_TIMEOUT)
        return self

    def close(self) -> None:
        if not self._running:
            return
        self._running = False
        try:
            future = asyncio.run_coroutine_threadsafe(self._proxy.close(), self._loop)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                future.result(3 * CLOSE_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CLOSE_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def delay(self, ms: float, direction: Which = "both") -> None:
        self._call(partial(self._proxy.delay, ms, direction))

    def drop(self, direction: Which = "both") -> None:
        self._call(partial(self._proxy.drop, direction))

    def blackhole(self) -> None:
        self._call(self._proxy.blackhole)

    def reset(self) -> None:
        self._call(self._proxy.reset)

    def heal(self) -> None:
        self._call(self._proxy.heal)

    def stats(self) -> ProxyStats:
        """A copy of the counters, taken on the proxy's loop."""
        return self._call(partial(dataclasses.replace, self._proxy.stats))

    def _call(self, fn: Callable[[], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as e:  # hand it to the caller's thread
                future.set_exception(e)

        self._loop.call_soon_threadsafe(run)
        return future.result(CLOSE_TIMEOUT)
