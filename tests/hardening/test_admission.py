"""Clients that fill a node never keep its neighbours out (in-process nodes, real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import node.client
from tests.hardening.harness import eventually, link_in, make_config, node_running, read_all
from tests.support import exchange

CAP = 3


@contextlib.asynccontextmanager
async def clients(
    port: int, count: int, *, register: bool
) -> AsyncIterator[list[asyncio.StreamWriter]]:
    """`count` open client connections; with `register`, each has been answered once."""
    writers: list[asyncio.StreamWriter] = []
    try:
        for i in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
            if register:
                writer.write(b"IAMAT held%d +1+1 1\n" % i)
                assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"AT ")
        yield writers
    finally:
        for writer in writers:
            writer.close()


async def test_a_client_over_the_cap_is_refused_at_its_first_line(tmp_path: Path) -> None:
    config = make_config(tmp_path, ("Solo",), limits={"max_connections": CAP})
    async with (
        node_running(config, "Solo", tmp_path) as solo,
        clients(solo.port, CAP, register=True),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", solo.port)
        writer.write(b"IAMAT extra +1+1 1\n")
        assert await read_all(reader) == b""
        writer.close()
        await eventually(
            lambda: any("CONN_REFUSED" in e for e in _events(tmp_path)), "the refusal logged"
        )
        assert solo.store.get(b"extra") is None
        assert solo.admission.clients == CAP


async def test_a_neighbour_links_in_past_a_full_client_cap(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, ("Solo", "Buddy"), limits={"max_connections": CAP, "max_connections_total": CAP}
    )
    async with (
        node_running(config, "Solo", tmp_path, port=None) as solo,
        clients(solo.port, CAP, register=True),
        # Idle connections on probation, more than the pool holds: the oldest make room.
        clients(solo.port, 3 * solo.admission.reserve, register=False),
    ):
        await eventually(
            lambda: len(solo.admission.probation) == solo.admission.reserve, "a full pool"
        )
        async with node_running(config, "Buddy", tmp_path, port=None) as buddy:
            await eventually(
                lambda: b"Buddy" in solo.peers.inbound and buddy.peers.links[b"Solo"].up,
                "Buddy's link into Solo",
            )
            assert solo.admission.clients == CAP  # the neighbour took no client slot
            reply = await exchange("127.0.0.1", buddy.port, b"IAMAT via +2+2 5\n")
            assert reply.startswith(b"AT Buddy ")
            await eventually(lambda: solo.store.get(b"via") is not None, "the flood")


async def test_a_connection_on_probation_must_finish_its_handshake_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node.client, "PROBATION_DEADLINE", 0.2)
    config = make_config(tmp_path, ("Solo", "Buddy"), limits={"max_connections": 1})
    async with node_running(config, "Solo", tmp_path) as solo, clients(solo.port, 1, register=True):
        reader, writer = await asyncio.open_connection("127.0.0.1", solo.port)
        assert await read_all(reader) == b""  # said nothing: reset at the deadline
        writer.close()
        # A real neighbour's handshake is quick enough, and it stays.
        _, link = await link_in(solo.port, b"Buddy", b"Solo")
        await asyncio.sleep(0.4)  # past the deadline, which must no longer apply
        assert b"Buddy" in solo.peers.inbound
        link.close()


async def test_a_failed_handshake_on_probation_gets_no_second_try(tmp_path: Path) -> None:
    config = make_config(tmp_path, ("Solo", "Buddy"), limits={"max_connections": 1})
    async with node_running(config, "Solo", tmp_path) as solo, clients(solo.port, 1, register=True):
        reader, writer = await asyncio.open_connection("127.0.0.1", solo.port)
        writer.write(b"HELLO Mallory Solo 00\nHELLO Buddy Solo 00\nIAMAT x +1+1 1\n")
        got = await read_all(reader)
        assert got == b"? HELLO Mallory Solo 00\n"
        writer.close()
        assert solo.store.get(b"x") is None


def _events(folder: Path) -> list[str]:
    path = folder / "Solo.log"
    return path.read_text().splitlines() if path.exists() else []


async def test_accept_errors_reach_the_log_once_a_second_with_a_count(tmp_path: Path) -> None:
    config = make_config(tmp_path, ("Solo",))
    async with node_running(config, "Solo", tmp_path) as solo:
        loop = asyncio.get_running_loop()
        handler = loop.get_exception_handler()
        assert handler is not None  # the node's, not asyncio's print to stderr
        for _ in range(1000):
            handler(
                loop,
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                },
            )
        solo.loop_errors._windows["LOOP_ERROR"][0] -= 1.0  # the second is over
        solo.loop_errors.report_ended()
        solo.log.flush()
        lines = [e for e in _events(tmp_path) if "LOOP_ERROR" in e]
        assert len(lines) == 2, lines
        assert "message='socket.accept() out of system resource'" in lines[0]
        assert lines[1].endswith("LOOP_ERROR_SUPPRESSED count=999 seconds=1")
