"""A provider whose answers are fixed is asked once per (spot, radius, bound); the reply
stays exactly what asking again would give, and what cannot be kept is not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from node.client import ClientConnection
from node.places.base import failure_response, success_response
from node.places.memo import PlacesMemo
from node.server import NodeServer
from tests.fakes.server import FakeTransport, connected, turn_ends
from tests.node.test_server import FakePlaces, running_node


class FixedPlaces(FakePlaces):
    """Answers at once, the same for the same query, and says so; counts its queries."""

    name = "fixed"
    answers_are_fixed = True

    def __init__(self) -> None:
        super().__init__()
        self.status = "OK"

    def nearby_now(
        self, lat: float, lng: float, radius_m: float, bound: int
    ) -> dict[str, Any] | None:
        self.calls.append((lat, lng, radius_m, bound))
        if self.status == "RAISE":
            raise RuntimeError("boom")
        if self.status != "OK":
            return failure_response(self.status, "no")
        places = [{"name": f"near {lat:g},{lng:g} #{i}"} for i in range(3)]
        return success_response(places, [])

    async def nearby(self, lat: float, lng: float, radius_m: float, bound: int) -> dict[str, Any]:
        raise AssertionError("answered at once, never awaited")


@asynccontextmanager
async def node_with(
    tmp_path: Path, places: FixedPlaces
) -> AsyncIterator[tuple[NodeServer, ClientConnection, FakeTransport]]:
    """A running node answering from `places`, and a client connection to it."""
    async with running_node(tmp_path) as node:
        node.places = places
        conn, out = connected(node)
        try:
            yield node, conn, out
        finally:
            conn.abort("test over")


async def ask(conn: ClientConnection, transport: FakeTransport, lines: bytes) -> bytes:
    transport.out = b""
    conn.data_received(lines)
    await turn_ends()
    return bytes(transport.out)


async def test_the_same_query_is_asked_once_and_answered_alike(tmp_path: Path) -> None:
    fixed = FixedPlaces()
    async with node_with(tmp_path, fixed) as (node, conn, out):
        await ask(conn, out, b"IAMAT a +1+2 1520023935\nIAMAT b +1+2 1520023936\n")
        first = await ask(conn, out, b"WHATSAT a 5 2\n")
        assert await ask(conn, out, b"WHATSAT a 5 2\nWHATSAT a 5 2\n") == first * 2
        assert len(fixed.calls) == 1
        # Another client at the same spot: the kept body, under its own AT line.
        other = await ask(conn, out, b"WHATSAT b 5 2\n")
        assert len(fixed.calls) == 1
        assert other.partition(b"\n")[2] == first.partition(b"\n")[2]
        assert other.partition(b"\n")[0].endswith(b" b +1+2 1520023936")
        # Another radius, another bound, another spot: asked each time.
        await ask(conn, out, b"WHATSAT a 6 2\nWHATSAT a 5 3\n")
        await ask(conn, out, b"IAMAT a +3+4 1520023937\nWHATSAT a 5 2\n")
        assert fixed.calls[1:] == [
            (1.0, 2.0, 6000.0, 2),
            (1.0, 2.0, 5000.0, 3),
            (3.0, 4.0, 5000.0, 2),
        ]
        # Every answer is counted as the provider's, kept or not.
        assert node.counters.places_of("fixed").outcomes == {"OK": 7}


async def test_a_fresh_at_line_goes_with_a_kept_body(tmp_path: Path) -> None:
    async with node_with(tmp_path, FixedPlaces()) as (_, conn, out):
        await ask(conn, out, b"IAMAT a +1+2 1520023935\n")
        before = await ask(conn, out, b"WHATSAT a 5 2\n")
        await ask(conn, out, b"IAMAT a +1+2 1520023999\n")  # same spot, later
        after = await ask(conn, out, b"WHATSAT a 5 2\n")
        assert after.partition(b"\n")[0].endswith(b" a +1+2 1520023999")
        assert after.partition(b"\n")[2] == before.partition(b"\n")[2]


async def test_failures_are_not_kept(tmp_path: Path) -> None:
    fixed = FixedPlaces()
    async with node_with(tmp_path, fixed) as (_, conn, out):
        await ask(conn, out, b"IAMAT a +1+2 1520023935\n")
        for status in ("UNKNOWN_ERROR", "RAISE"):
            fixed.status = status
            assert b'"status" : "UNKNOWN_ERROR"' in await ask(conn, out, b"WHATSAT a 5 2\n")
        fixed.status = "OK"
        assert b'"status" : "OK"' in await ask(conn, out, b"WHATSAT a 5 2\n")
        assert len(fixed.calls) == 3


async def test_a_provider_that_does_not_say_its_answers_are_fixed_is_asked_every_time(
    tmp_path: Path,
) -> None:
    changing = FixedPlaces()
    changing.answers_are_fixed = False
    async with node_with(tmp_path, changing) as (node, conn, out):
        await ask(conn, out, b"IAMAT a +1+2 1520023935\n")
        await ask(conn, out, b"WHATSAT a 5 2\nWHATSAT a 5 2\n")
        assert len(changing.calls) == 2
        # A new provider starts with nothing kept.
        fixed = FixedPlaces()
        node.places = fixed
        await ask(conn, out, b"WHATSAT a 5 2\nWHATSAT a 5 2\n")
        assert len(fixed.calls) == 1


def test_the_memo_drops_its_oldest_answer_when_full() -> None:
    memo = PlacesMemo(provider=None, size=2)
    memo.keep((b"+1+1", 1.0, 1), (b"one", "OK"))
    memo.keep((b"+2+2", 1.0, 1), (b"two", "OK"))
    memo.keep((b"+3+3", 1.0, 1), (b"three", "OK"))
    assert len(memo) == 2
    assert memo.get((b"+1+1", 1.0, 1)) is None
    assert memo.get((b"+3+3", 1.0, 1)) == (b"three", "OK")
