"""A link's flood writes: a lone update goes out at once, a burst shares one write per window."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

from node.counters import NodeCounters
from node.peers.outbound import FLOOD_BURST_GAP, FLOOD_WINDOW, PeerLink

DEADLINE = 5.0  # seconds: generous for a loaded machine; the assertions bound from below


class FakeTransport:
    closing = False

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        pass


class FakeWriter:
    """Records each write with its time."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, bytes]] = []
        self.transport = FakeTransport()

    def write(self, data: bytes) -> None:
        self.writes.append((time.monotonic(), data))


def up_link() -> tuple[PeerLink, FakeWriter]:
    node = SimpleNamespace(log=SimpleNamespace(event=lambda text: None), counters=NodeCounters())
    link = PeerLink(cast(Any, node), cast(Any, SimpleNamespace(name="Hands")))
    writer = FakeWriter()
    link._writer = cast(Any, writer)
    link.up = True
    return link, writer


async def writes_reach(writer: FakeWriter, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while len(writer.writes) < count:
        assert time.monotonic() < deadline, f"only {len(writer.writes)} writes of {count}"
        await asyncio.sleep(0.0002)


async def test_a_lone_update_is_written_on_the_next_loop_turn() -> None:
    link, writer = up_link()
    link.send(b"CHANGELOC a\n", 1)
    assert writer.writes == []  # not inside send: lines of this turn share the write
    await asyncio.sleep(0)
    assert [data for _, data in writer.writes] == [b"CHANGELOC a\n"]


async def test_a_link_closing_under_a_queued_write_drops_it_quietly() -> None:
    """The neighbour reset the link in the turn the write was due, before the reader saw it:
    uvloop raises on a write to the closed transport; the sync on reconnect covers it."""
    link, writer = up_link()
    link.send(b"CHANGELOC a\n", 1)
    writer.transport.closing = True
    await asyncio.sleep(0)  # the scheduled write runs, and must not write
    assert writer.writes == [] and not link._outbox


async def test_lines_queued_in_one_turn_share_one_write() -> None:
    link, writer = up_link()
    for name in (b"a", b"b", b"c"):
        link.send(b"CHANGELOC %s\n" % name, 1)
    await writes_reach(writer, 1)
    assert [data for _, data in writer.writes] == [b"CHANGELOC a\nCHANGELOC b\nCHANGELOC c\n"]


class FakeClock:
    """The link's view of time.monotonic, moved by hand; timers still run on the real loop."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def fake_clock(monkeypatch: Any) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(
        "node.peers.outbound.time", SimpleNamespace(monotonic=clock.monotonic, time=time.time)
    )
    return clock


async def test_a_burst_waits_for_the_window_and_shares_its_write(monkeypatch: Any) -> None:
    clock = fake_clock(monkeypatch)
    link, writer = up_link()
    link.send(b"CHANGELOC a\n", 1)
    await writes_reach(writer, 1)
    clock.now += FLOOD_BURST_GAP / 2  # right after that write: a burst
    link.send(b"CHANGELOC b\n", 1)
    held_at = time.monotonic()
    await asyncio.sleep(0)
    link.send(b"CHANGELOC c\n", 1)
    await asyncio.sleep(0)
    assert len(writer.writes) == 1 or time.monotonic() - held_at > FLOOD_WINDOW / 2
    await writes_reach(writer, 2)
    written_at, data = writer.writes[1]
    assert data == b"CHANGELOC b\nCHANGELOC c\n"
    assert written_at - held_at >= FLOOD_WINDOW / 4  # held for the rest of the window


async def test_after_a_quiet_gap_an_update_goes_out_at_once_again(monkeypatch: Any) -> None:
    clock = fake_clock(monkeypatch)
    link, writer = up_link()
    link.send(b"CHANGELOC a\n", 1)
    await writes_reach(writer, 1)
    clock.now += FLOOD_BURST_GAP * 2
    link.send(b"CHANGELOC b\n", 1)
    await asyncio.sleep(0)
    assert [data for _, data in writer.writes] == [b"CHANGELOC a\n", b"CHANGELOC b\n"]


async def test_a_link_that_is_down_queues_nothing() -> None:
    link, writer = up_link()
    link.up = False
    link.send(b"CHANGELOC a\n", 1)
    await asyncio.sleep(0.01)
    assert writer.writes == []
    assert link.buffered() == 0
