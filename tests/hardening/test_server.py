"""Review findings in node/server.py: client connections (in-process, port 0)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

from node.places.base import success_response
from tests.hardening.harness import (
    GatedPlaces,
    eventually,
    make_config,
    node_running,
    only_connection,
    read_all,
)
from tests.support import exchange


class LoneSurrogatePlaces(GatedPlaces):
    """A provider whose JSON holds a lone surrogate, as json.loads makes of `"\\ud83d"`."""

    async def nearby(self, lat: float, lng: float, radius_m: float, bound: int) -> dict[str, Any]:
        return success_response([{"name": "broken emoji \ud83d"}], [])


async def test_whatsat_reply_that_cannot_be_encoded_still_answers(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with node_running(config, "Solo", tmp_path, places=LoneSurrogatePlaces()) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        try:
            writer.write(b"IAMAT c +1+1 1\nWHATSAT c 1 1\nIAMAT d +1+1 1\n")
            writer.write_eof()
            reply = await read_all(reader, timeout=5)
        finally:
            writer.close()
            await eventually(lambda: not node.connections, "the connection to go")
    assert reply.startswith(b"AT Solo ")
    assert b"}\n\nAT Solo " in reply and reply.endswith(b" d +1+1 1\n")


async def test_pipelined_whatsats_are_bounded_while_head_is_pending(tmp_path: Path) -> None:
    places = GatedPlaces()
    places.gate = asyncio.Event()
    config = make_config(tmp_path)
    async with node_running(config, "Solo", tmp_path, places=places) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        try:
            writer.write(b"IAMAT c +1+1 1\n")
            await asyncio.wait_for(reader.readline(), 10)
            writer.write(b"WHATSAT c 1 1\n" * 20_000)  # 280 KB, not awaited on purpose
            conn = await only_connection(node)
            transport = conn.transport
            assert transport is not None
            await eventually(
                lambda: not transport.is_reading() or len(places.calls) >= 20_000,
                "the node to stop reading, or to start every call",
            )
            assert len(places.calls) <= 5_000, "pending replies/provider calls are unbounded"
        finally:
            writer.close()
            places.gate.set()


async def test_overlong_line_answered_once_even_with_pending_reply(tmp_path: Path) -> None:
    places = GatedPlaces()
    places.gate = asyncio.Event()
    config = make_config(tmp_path, limits={"max_line_bytes": 100})
    async with node_running(config, "Solo", tmp_path, places=places) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        try:
            writer.write(b"IAMAT c +1+1 1\nWHATSAT c 1 1\n" + b"X" * 200)
            conn = await only_connection(node)
            await eventually(lambda: conn.splitter.overlong is not None, "the overlong line")
            transport = conn.transport
            assert transport is not None
            seen = conn._last_activity
            writer.write(b"more\n")  # the rest of the client's stream keeps arriving
            await eventually(
                lambda: not transport.is_reading() or conn._last_activity != seen,
                "the node to read the rest, or to have stopped reading",
            )
            places.gate.set()
            reply = await read_all(reader)
        finally:
            writer.close()
    assert reply.count(b"? " + b"X" * 100 + b"\n") == 1


async def test_half_closed_non_reading_client_is_still_cut_off(tmp_path: Path) -> None:
    places = GatedPlaces(result_size=5000)  # ~100 KB per WHATSAT reply
    places.gate = asyncio.Event()
    config = make_config(tmp_path)
    loop = asyncio.get_running_loop()
    async with node_running(config, "Solo", tmp_path, places=places) as node:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", node.port))
            await loop.sock_sendall(sock, b"IAMAT c +1+1 1\n" + b"WHATSAT c 1 20\n" * 150)
            sock.shutdown(socket.SHUT_WR)  # half-close, and never read a byte
            conn = await only_connection(node)
            await eventually(lambda: conn._eof, "the node to see EOF")
            places.gate.set()
            transport = conn.transport
            assert transport is not None
            await eventually(
                lambda: transport.is_closing() and transport.get_write_buffer_size() > 0,
                "15 MB of replies stuck in the write buffer",
            )
            # The sweeper's check, as if the idle timeout had long passed.
            conn.check_deadlines(time.monotonic() + 10_000, 30.0, 600.0)
            await eventually(lambda: conn not in node.connections, "the idle client to be cut", 5)
        finally:
            sock.close()


async def test_connection_cap_does_not_lock_out_other_clients(tmp_path: Path) -> None:
    config = make_config(tmp_path, limits={"max_connections": 2})
    async with node_running(config, "Solo", tmp_path) as node:
        hog = [await asyncio.open_connection("127.0.0.1", node.port) for _ in range(2)]
        try:
            for r, w in hog:
                w.write(b"IAMAT hog +1+1 1\n")
                await asyncio.wait_for(r.readline(), 10)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", node.port, local_addr=("127.0.0.2", 0)
            )
            try:
                with contextlib.suppress(OSError):
                    writer.write(b"IAMAT other +1+1 1\n")
                    writer.write_eof()
                reply = await read_all(reader)
            finally:
                writer.close()
        finally:
            for _, w in hog:
                w.close()
    assert reply.startswith(b"AT Solo ")


async def test_eof_ends_the_half_line_deadline(tmp_path: Path) -> None:
    places = GatedPlaces()
    places.gate = asyncio.Event()
    config = make_config(tmp_path)
    async with node_running(config, "Solo", tmp_path, places=places) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        try:
            writer.write(b"IAMAT c +1+1 1\n")
            await asyncio.wait_for(reader.readline(), 10)
            conn = await only_connection(node)
            writer.write(b"WHATSAT c 1 1")  # the last line, without LF ...
            await eventually(lambda: conn.splitter.pending > 0, "the half line")
            writer.write_eof()  # ... then EOF: it is a complete message now
            await eventually(lambda: conn._eof, "the node to see EOF")
            conn.check_deadlines(time.monotonic() + 3600, 30.0, 0.0)  # a later sweep
            places.gate.set()
            reply = await read_all(reader)
        finally:
            writer.close()
    assert reply.endswith(b"}\n\n")


async def test_exchange_helper_still_works(tmp_path: Path) -> None:
    """Sanity check of the harness: a plain exchange with an in-process node."""
    config = make_config(tmp_path)
    async with node_running(config, "Solo", tmp_path) as node:
        reply = await exchange("127.0.0.1", node.port, b"IAMAT a +1+1 1\nWHATSAT a 1 2\n")
    assert reply.startswith(b"AT Solo ") and reply.endswith(b"}\n\n")


async def test_overlong_line_reply_reaches_a_send_then_read_client(tmp_path: Path) -> None:
    config = make_config(tmp_path, limits={"max_line_bytes": 1000})
    async with node_running(config, "Solo", tmp_path) as node:
        try:
            reply = await exchange("127.0.0.1", node.port, b"Y" * 200_000 + b"\n", timeout=10)
        except ConnectionResetError:
            reply = b""
    assert reply == b"? " + b"Y" * 1000 + b"\n"
