"""The fault-injecting proxy itself, against an echo server: each fault does what it says."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.chaos.proxy import FaultProxy, ProxyThread
from tests.support import free_ports

QUIET = 0.2  # seconds a faulted connection must stay silent to count as "nothing arrived"
DEADLINE = 5.0

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def proxy(echo_port: int) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(echo_port)
    await p.start()
    yield p
    await p.close()


async def connect(proxy: FaultProxy) -> Conn:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def roundtrip(conn: Conn, data: bytes) -> bytes:
    reader, writer = conn
    writer.write(data)
    return await asyncio.wait_for(reader.readexactly(len(data)), DEADLINE)


async def stays_silent(conn: Conn) -> bool:
    """Nothing, not even EOF, arrives for QUIET seconds."""
    try:
        await asyncio.wait_for(conn[0].read(1), QUIET)
    except TimeoutError:
        return True
    return False


async def poll(predicate: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(DEADLINE):
        while not predicate():
            await asyncio.sleep(0.01)
    assert predicate(), what


async def test_pass_forwards_both_ways_and_the_half_close(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    assert await roundtrip(conn, b"hello\n") == b"hello\n"
    conn[1].write_eof()
    assert await asyncio.wait_for(conn[0].read(), DEADLINE) == b""  # the echo's EOF came back
    conn[1].close()
    await poll(lambda: proxy.stats.bytes_down == 6, "the echo counted")
    assert (proxy.stats.connections, proxy.stats.bytes_up, proxy.stats.faults) == (1, 6, 0)


async def test_delay_adds_latency_per_direction(proxy: FaultProxy) -> None:
    loop = asyncio.get_running_loop()
    conn = await connect(proxy)
    proxy.delay(100, "up")
    start = loop.time()
    assert await roundtrip(conn, b"a") == b"a"
    assert loop.time() - start >= 0.1
    proxy.delay(150, "down")  # stacks: now both ways
    start = loop.time()
    assert await roundtrip(conn, b"b") == b"b"
    assert loop.time() - start >= 0.25
    assert proxy.stats.delayed_chunks == 3
    assert proxy.stats.faults == 1
    proxy.heal()
    assert await roundtrip(conn, b"c") == b"c"  # the same connection, no harm done
    assert proxy.stats.delayed_chunks == 3
    conn[1].close()


async def test_drop_is_silent_and_heal_resets_the_broken_stream(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    assert await roundtrip(conn, b"before") == b"before"
    proxy.drop()
    conn[1].write(b"lost")
    assert await stays_silent(conn)  # no data and no close: the cut is invisible
    assert (proxy.stats.dropped_bytes, proxy.stats.dropped_chunks) == (4, 1)
    proxy.heal()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(conn[0].read(1), DEADLINE)
    assert proxy.stats.resets == 1
    fresh = await connect(proxy)
    assert await roundtrip(fresh, b"after") == b"after"
    fresh[1].close()


async def test_drop_one_direction_only(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    proxy.drop("down")
    conn[1].write(b"ping")
    await poll(lambda: proxy.stats.dropped_bytes == 4, "the echo to be dropped")
    assert proxy.stats.bytes_up == 4  # it reached the target
    assert await stays_silent(conn)
    conn[1].close()


async def test_blackhole_holds_connections_and_delivers_on_heal(proxy: FaultProxy) -> None:
    old = await connect(proxy)
    assert await roundtrip(old, b"x") == b"x"
    proxy.blackhole()
    old[1].write(b"held")
    new = await connect(proxy)  # accepted, held before the target
    new[1].write(b"new")
    assert await stays_silent(old)
    assert await stays_silent(new)
    assert proxy.stats.bytes_up == 1
    assert proxy.stats.held >= 2  # the old connection's chunk and the new connection
    proxy.heal()
    assert await asyncio.wait_for(old[0].readexactly(4), DEADLINE) == b"held"
    assert await asyncio.wait_for(new[0].readexactly(3), DEADLINE) == b"new"
    assert (proxy.stats.connections, proxy.stats.resets, proxy.stats.faults) == (2, 0, 1)
    old[1].close()
    new[1].close()


async def test_reset_aborts_open_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    assert await roundtrip(conn, b"x") == b"x"
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(conn[0].read(1), DEADLINE)
    refused = await connect(proxy)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(refused[0].read(1), DEADLINE)
    assert (proxy.stats.resets, proxy.stats.refused) == (1, 1)
    proxy.heal()
    fresh = await connect(proxy)
    assert await roundtrip(fresh, b"back") == b"back"
    assert proxy.stats.injected() == 3  # one switch, one reset, one refusal
    for c in (conn, refused, fresh):
        c[1].close()


async def test_a_dead_target_resets_the_client() -> None:
    (port,) = free_ports(1)
    proxy = FaultProxy(port)
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), DEADLINE)
        writer.close()
        assert proxy.stats.target_failures == 1
    finally:
        await proxy.close()


async def test_close_ends_held_connections(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    proxy.blackhole()
    conn[1].write(b"held")
    await proxy.close()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(conn[0].read(1), DEADLINE)


# -- the threaded wrapper, driven from synchronous code as the herd tests do ----------------


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass


@pytest.fixture
def sync_echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(DEADLINE)


def sync_roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        assert chunk, "closed early"
        got += chunk
    return got


def test_proxy_thread_switches_faults_from_another_thread(sync_echo_port: int) -> None:
    with ProxyThread(sync_echo_port) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE)
        assert sync_roundtrip(sock, b"one") == b"one"
        proxy.blackhole()
        assert proxy.mode == "blackhole"
        sock.sendall(b"two")
        sock.settimeout(QUIET)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.settimeout(DEADLINE)
        proxy.heal()
        assert sock.recv(3) == b"two"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
        sock.close()
        proxy.heal()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as again:
            assert sync_roundtrip(again, b"three") == b"three"
        stats = proxy.stats()
        assert (stats.connections, stats.resets, stats.faults) == (2, 1, 2)
        assert stats.bytes_up == stats.bytes_down == 11
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE).close()
