"""The asyncio layer in-process on port 0: framing, ordering, limits, WHATSAT, handshake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from node.config import load_config
from node.handshake import Initiator
from node.logbook import LogBook
from node.places.base import failure_response, success_response
from node.server import NodeServer
from tests.fakes.server import connected, turn_ends
from tests.hardening.harness import eventually
from tests.support import exchange, write_topology

SECRET = b"test-secret"
RECEIVED_NS = 1_520_023_935_182_837_383  # what the fake clock says


class FakePlaces:
    """A provider that answers from a canned list, optionally after an event."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, float, int]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def nearby(self, lat: float, lng: float, radius_m: float, bound: int) -> dict[str, Any]:
        self.calls.append((lat, lng, radius_m, bound))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("boom")
        results = [{"name": f"place {i}", "vicinity": "line\nbreak"} for i in range(25)]
        return success_response(results, ["attribution"])

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


@asynccontextmanager
async def running_node(
    tmp_path: Path, limits: dict[str, Any] | None = None, names: tuple[str, ...] = ("Solo",)
) -> AsyncIterator[NodeServer]:
    extra: dict[str, Any] = {"places": {"provider": "offline"}}
    if limits:
        extra["limits"] = limits
    links = [(names[0], other) for other in names[1:]]
    config = load_config(write_topology(tmp_path, names, links, extra=extra))
    node = NodeServer(
        config,
        names[0],
        secret=SECRET,
        places=FakePlaces(),
        log=LogBook(tmp_path / "node.log"),
        clock_ns=lambda: RECEIVED_NS,
    )
    await node.start(port=0)
    try:
        yield node
    finally:
        await node.stop()
        node.log.close()


async def talk(node: NodeServer, data: bytes) -> bytes:
    return await exchange("127.0.0.1", node.port, data, timeout=10)


async def test_iamat_reply_is_exact(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        reply = await talk(
            node, b"IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997\n"
        )
    assert reply == (
        b"AT Solo +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997\n"
    )


async def test_many_lines_crlf_blank_and_last_line_without_lf(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        reply = await talk(
            node,
            b"\n   \r\nBOGUS 1 2 3 4\r\nIAMAT a +1+2 1520023935.182837383\n\t\nWHATSAT zz 1 1",
        )
    assert reply == (
        b"? BOGUS 1 2 3 4\nAT Solo +0.000000000 a +1+2 1520023935.182837383\n? WHATSAT zz 1 1\n"
    )


async def test_lines_split_across_packets(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        for byte in b"IAMAT b -1.5+2.5 1520023936\nFOO\n":
            writer.write(bytes([byte]))
            await writer.drain()
        writer.write_eof()
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert reply == b"AT Solo -0.817162617 b -1.5+2.5 1520023936\n? FOO\n"


async def test_whatsat_framing_order_and_bound(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        places = node.places
        assert isinstance(places, FakePlaces)
        places.gate = asyncio.Event()
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(b"IAMAT c +34.068930-118.445127 1520023934.918963997\n")
        writer.write(b"WHATSAT c 10 3\nIAMAT d +0+0 1520023935.182837383\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readline(), 10)
        assert first.startswith(b"AT Solo +0.263873386 c ")
        # The WHATSAT is still waiting on its provider: the IAMAT after it must wait too.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readline(), 0.2)
        places.gate.set()
        writer.write_eof()
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert places.calls == [(34.06893, -118.445127, 10000.0, 3)]
    at_line, _, tail = rest.partition(b"\n")
    assert at_line == first.rstrip(b"\n")
    body, sep, after = tail.partition(b"}\n\n")
    assert sep and after == b"AT Solo +0.000000000 d +0+0 1520023935.182837383\n"
    obj = json.loads(body + b"}")
    assert [r["name"] for r in obj["results"]] == ["place 0", "place 1", "place 2"]
    assert obj["status"] == "OK"
    assert b"\n\n" not in body
    assert b'\n   "html_attributions" : [' in body  # Google's own layout


class ReadyPlaces(FakePlaces):
    """A provider that can answer without waiting, as the offline one once loaded."""

    def nearby_now(
        self, lat: float, lng: float, radius_m: float, bound: int
    ) -> dict[str, Any] | None:
        self.calls.append((lat, lng, radius_m, bound))
        if self.fail:
            raise RuntimeError("boom")
        return success_response([{"name": "here", "vicinity": "x"}], [])


async def test_a_provider_that_needs_no_wait_is_answered_in_the_same_turn(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path) as node:
        ready = ReadyPlaces()
        node.places = ready
        conn, transport = connected(node)
        conn.data_received(b"IAMAT n +1+1 1520023935\nWHATSAT n 5 2\nIAMAT m +2+2 1520023935\n")
        await turn_ends()
        # This turn's end, no task's: the WHATSAT's reply, and the IAMAT after it, are out.
        at_n, at_line, rest = transport.out.split(b"\n", 2)
        assert at_n.startswith(b"AT Solo ") and at_line == at_n
        body, sep, after = rest.partition(b"}\n\n")
        assert sep and json.loads(body + b"}")["results"][0]["name"] == "here"
        assert after.startswith(b"AT Solo ") and b" m +2+2 " in after
        assert ready.calls == [(1.0, 1.0, 5000.0, 2)]
        ready.fail = True  # a provider bug must still produce a reply
        conn.data_received(b"WHATSAT n 5 2\n")
        await turn_ends()
        assert b'"status" : "UNKNOWN_ERROR"' in transport.out
        conn.abort("test over")


async def test_a_reads_first_places_answer_goes_out_before_its_other_lines_are_answered(
    tmp_path: Path,
) -> None:
    """Written ahead, before the read's other lines are answered; the rest when they are,
    in one write; every reply in line order."""
    async with running_node(tmp_path) as node:
        node.places = ReadyPlaces()
        conn, transport = connected(node)
        writes: list[bytes] = []
        transport.write = writes.append  # type: ignore[method-assign,assignment]
        conn.data_received(b"IAMAT n +1+1 1520023935\n")
        await turn_ends()
        writes.clear()
        conn.data_received(b"WHATSAT zz 1 1\nWHATSAT n 5 2\nIAMAT m +2+2 1520023935\n" * 2)
        assert writes == []  # the read's WHATSATs are answered at the turn's end
        await turn_ends()
        assert len(writes) == 2  # the first answer (and the miss before it), then the rest
        answer = writes[0].partition(b"? WHATSAT zz 1 1\n")[2]
        assert answer.startswith(b"AT Solo ") and answer.endswith(b"}\n\n")
        at_m = writes[1].partition(b"\n")[0] + b"\n"
        assert at_m.startswith(b"AT Solo ") and b" m +2+2 " in at_m
        assert writes[1] == at_m + b"? WHATSAT zz 1 1\n" + answer + at_m
        await turn_ends()
        assert len(writes) == 2  # nothing left for the turn's end
        # A read that ends with its answer has nothing to write it ahead of: one write.
        writes.clear()
        conn.data_received(b"WHATSAT zz 1 1\nWHATSAT n 5 2\n")
        await turn_ends()
        assert writes == [b"? WHATSAT zz 1 1\n" + answer]
        conn.abort("test over")


async def test_a_whatsats_reply_latency_counts_from_its_read(tmp_path: Path) -> None:
    """Held to the turn's end, or waiting on the provider: the histogram starts at the read,
    for an answer made at once and for one made by a task alike."""
    async with running_node(tmp_path) as node:
        latency = node.counters.reply_latency["WHATSAT"]
        conn, transport = connected(node)
        conn.data_received(b"IAMAT n +1+1 1520023935\n")
        await turn_ends()
        node.places = ReadyPlaces()
        conn.data_received(b"WHATSAT n 5 2\n")
        conn._last_activity -= 1.0  # as if the turn had taken a second since the read
        await turn_ends()
        assert transport.out.endswith(b"}\n\n") and latency.count == 1
        assert 1.0 <= latency.total < 2.0
        slow = FakePlaces()
        slow.gate = asyncio.Event()
        node.places = slow
        conn.data_received(b"WHATSAT n 5 2\n")
        await turn_ends()
        conn._last_activity -= 5.0  # a later read must not move this query's start
        slow.gate.set()
        await eventually(lambda: latency.count == 2, "the provider's answer")
        assert 1.0 <= latency.total < 3.0, latency.total
        conn.abort("test over")


async def test_whatsat_provider_crash_still_replies(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        assert isinstance(node.places, FakePlaces)
        node.places.fail = True
        reply = await talk(node, b"IAMAT e +1+1 1520023935\nWHATSAT e 5 2\n")
    body = reply.split(b"\n", 2)[2]
    assert body.endswith(b"}\n\n")
    obj = json.loads(body)
    assert obj["results"] == [] and obj["status"] == "UNKNOWN_ERROR" and obj["error_message"]


async def test_unknown_client_and_forged_changeloc_are_invalid(tmp_path: Path) -> None:
    line = b"CHANGELOC evil +1+1 1520023935 1520023935.000000000 Solo"
    async with running_node(tmp_path) as node:
        reply = await talk(node, line + b"\nWHATSAT evil 1 1\n")
        assert node.store.get(b"evil") is None
    assert reply == b"? " + line + b"\n? WHATSAT evil 1 1\n"


async def test_overlong_line_closes_only_that_connection(tmp_path: Path) -> None:
    async with running_node(tmp_path, {"max_line_bytes": 100}) as node:
        other_r, other_w = await asyncio.open_connection("127.0.0.1", node.port)
        reply = await talk(node, b"IAMAT ok +1+1 1\n" + b"X" * 500)
        assert reply.startswith(b"AT Solo ")
        assert reply.endswith(b"\n? " + b"X" * 100 + b"\n")
        other_w.write(b"IAMAT f +1+1 1520023935\n")
        assert (await asyncio.wait_for(other_r.readline(), 10)).startswith(b"AT Solo ")
        other_w.close()


async def test_connection_cap_refuses_excess(tmp_path: Path) -> None:
    async with running_node(tmp_path, {"max_connections": 2}) as node:
        held = [await asyncio.open_connection("127.0.0.1", node.port) for _ in range(2)]
        for r, w in held:  # make sure both are registered before the third arrives
            w.write(b"IAMAT g +1+1 1\n")
            await asyncio.wait_for(r.readline(), 10)
        r3, w3 = await asyncio.open_connection("127.0.0.1", node.port)
        assert await asyncio.wait_for(r3.read(), 10) == b""
        w3.close()
        for _, w in held:
            w.close()
    assert "CONN_REFUSED" in (tmp_path / "node.log").read_text()


async def test_handshake_then_changeloc_is_applied(tmp_path: Path) -> None:
    async with running_node(tmp_path, names=("Solo", "Buddy")) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        hs = Initiator(SECRET, b"Buddy", b"Solo")
        writer.write(hs.hello())
        writer.write(hs.on_challenge((await reader.readline()).rstrip(b"\n")))
        hs.on_welcome((await reader.readline()).rstrip(b"\n"))
        writer.write(b"CHANGELOC h +2+2 1520023930.5 1520023931.000000000 Buddy\n")
        await writer.drain()
        r2 = await talk(node, b"WHATSAT h 1 1\n")
        writer.close()
    assert r2.startswith(b"AT Buddy +0.500000000 h +2+2 1520023930.5\n{")


async def test_wrong_secret_is_refused(tmp_path: Path) -> None:
    async with running_node(tmp_path, names=("Solo", "Buddy")) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        hs = Initiator(b"wrong", b"Buddy", b"Solo")
        writer.write(hs.hello())
        challenge = (await reader.readline()).rstrip(b"\n")
        with pytest.raises(Exception, match="does not know"):
            hs.on_challenge(challenge)
        writer.write(b"AUTH " + b"0" * 64 + b"\n")
        assert await asyncio.wait_for(reader.read(), 10) == b"? AUTH " + b"0" * 64 + b"\n"
        writer.write_eof()
        writer.close()
        r2 = await talk(node, b"CHANGELOC x +1+1 1 1.000000000 Buddy\n")
    assert r2.startswith(b"? CHANGELOC")


async def test_stop_finishes_inflight_replies(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        assert isinstance(node.places, FakePlaces)
        node.places.gate = asyncio.Event()
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(b"IAMAT s +1+1 1\nWHATSAT s 1 1\n")
        await writer.drain()
        await reader.readline()
        stopping = asyncio.create_task(node.stop())
        await asyncio.sleep(0)
        node.places.gate.set()
        await stopping
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert rest.endswith(b"}\n\n")


def test_failure_response_shape() -> None:
    assert failure_response("REQUEST_DENIED", "no")["results"] == []


async def test_status_file_tracks_clients_and_is_removed_at_stop(tmp_path: Path) -> None:
    async with running_node(tmp_path, names=("Solo", "Buddy")) as node:
        path = node.status_file.path
        await talk(node, b"IAMAT st +1+1 1\n")
        deadline = asyncio.get_running_loop().time() + 10
        status: dict[str, Any] = {}
        while status.get("clients") != 1:
            assert asyncio.get_running_loop().time() < deadline, status
            await asyncio.sleep(0.05)
            if path.exists():
                status = json.loads(path.read_text())
        assert status["name"] == "Solo" and status["port"] == node.port
        assert status["state"] == "running"
        assert status["links"]["Buddy"]["out"] is False  # Buddy is not running
        assert set(status["links"]["Buddy"]) == {"out", "out_since", "in", "synced", "buffered"}
    assert not path.exists()
