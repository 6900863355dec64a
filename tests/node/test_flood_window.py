"""A link's flood writes: a lone update goes out at once, inside the turn that brought it; a
burst shares one write per window, a window that grows with the burst up to FLOOD_WINDOW; a
pause in the load ends a burst, or takes a step off one that has reached the whole window."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from node.counters import NodeCounters
from node.peers.outbound import FLOOD_BURST_GAP, FLOOD_WINDOW, FLOOD_WINDOW_STEP, PeerLink
from node.turn_writes import TurnWrites

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
    node = SimpleNamespace(
        log=SimpleNamespace(event=lambda text: None),
        counters=NodeCounters(),
        turn_writes=TurnWrites(),
        settle_turn=lambda: True,
    )
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


async def test_a_lone_update_is_written_inside_send() -> None:
    link, writer = up_link()
    link.send(b"CHANGELOC a\n", 1)
    assert [data for _, data in writer.writes] == [b"CHANGELOC a\n"]  # no timer, no turn


async def test_a_lone_update_goes_after_the_replies_this_turn_gathered() -> None:
    """The flood write wakes the neighbour, which may take our core: the client's reply,
    made before the flood, must not wait for the turn's end behind it."""
    link, writer = up_link()
    order: list[str] = []

    class Client:
        def write_out(self) -> None:
            order.append(f"reply after {len(writer.writes)} flood writes")

    link.node.turn_writes.add(Client())
    link.send(b"CHANGELOC a\n", 1)
    assert order == ["reply after 0 flood writes"] and len(writer.writes) == 1


async def test_a_link_closing_under_a_write_drops_it_quietly() -> None:
    """The neighbour reset the link in the turn the write was due, before the reader saw it:
    uvloop raises on a write to the closed transport; the sync on reconnect covers it."""
    link, writer = up_link()
    writer.transport.closing = True
    link.send(b"CHANGELOC a\n", 1)
    assert writer.writes == [] and not link._outbox


async def test_a_link_closing_under_a_queued_write_drops_it_quietly() -> None:
    link, writer = up_link()
    link.send(b"CHANGELOC a\n", 1)
    link.send(b"CHANGELOC b\n", 1)  # right after a write: queued for the burst's window
    writer.transport.closing = True
    await asyncio.sleep(FLOOD_WINDOW * 2)  # the queued write runs, and must not write
    assert len(writer.writes) == 1 and not link._outbox


async def test_the_rest_of_a_turn_shares_the_next_write() -> None:
    link, writer = up_link()
    for name in (b"a", b"b", b"c"):
        link.send(b"CHANGELOC %s\n" % name, 1)
    await writes_reach(writer, 2)
    assert [data for _, data in writer.writes] == [
        b"CHANGELOC a\n",
        b"CHANGELOC b\nCHANGELOC c\n",
    ]


class FakeClock:
    """The link's flood window clock, moved by hand; timers still run on the real loop."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def fake_clock(link: PeerLink) -> FakeClock:
    clock = FakeClock()
    link.monotonic = clock.monotonic
    return clock


async def test_a_burst_waits_for_the_window_and_shares_its_write() -> None:
    link, writer = up_link()
    clock = fake_clock(link)
    link.send(b"CHANGELOC a\n", 1)
    clock.now += FLOOD_BURST_GAP / 2  # right after that write: a burst
    # Read before the send that arms the timer: read after it, a preemption between the
    # two (a loaded machine) would make the wait look shorter than the timer's delay.
    held_at = time.monotonic()
    link.send(b"CHANGELOC b\n", 1)
    await asyncio.sleep(0)
    link.send(b"CHANGELOC c\n", 1)
    await writes_reach(writer, 2)
    written_at, data = writer.writes[1]
    assert data == b"CHANGELOC b\nCHANGELOC c\n"
    # held for the rest of the burst's first window
    assert written_at - held_at >= (FLOOD_WINDOW_STEP - FLOOD_BURST_GAP / 2) * 0.9


class TimerSpy:
    """Takes the link's call_later: notes each delay and runs the callback when told."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.due: list[Any] = []

    def call_later(self, delay: float, callback: Any) -> None:
        self.delays.append(delay)
        self.due.append(callback)

    def run_due(self) -> None:
        due, self.due = self.due, []
        for callback in due:
            callback()


def bursting_link(monkeypatch: Any) -> tuple[PeerLink, FakeWriter, Any, TimerSpy]:
    """A link on a fake clock, whose windows `TimerSpy` takes, after one idle write."""
    spy = TimerSpy()
    monkeypatch.setattr(asyncio.get_running_loop(), "call_later", spy.call_later)
    link, writer = up_link()
    clock = fake_clock(link)
    link.send(b"CHANGELOC 0\n", 1)  # idle: at once
    return link, writer, clock, spy


async def test_the_window_grows_with_the_burst_up_to_flood_window(monkeypatch: Any) -> None:
    link, writer, clock, spy = bursting_link(monkeypatch)
    gap = FLOOD_BURST_GAP / 2
    for i in range(1, 13):
        clock.now += gap
        link.send(b"CHANGELOC %d\n" % i, 1)
        link.send(b"CHANGELOC %d+\n" % i, 1)  # shares the queued write: no second timer
        spy.run_due()
    expected = [min(k * FLOOD_WINDOW_STEP, FLOOD_WINDOW) - gap for k in range(1, 13)]
    assert spy.delays == pytest.approx(expected)
    assert len(writer.writes) == 13
    clock.now += FLOOD_BURST_GAP * 2  # a hiccup in the load: end of turn, the burst goes on
    link.send(b"CHANGELOC h\n", 1)
    assert len(writer.writes) == 13
    await asyncio.sleep(0)
    assert len(writer.writes) == 14 and len(spy.delays) == 12
    clock.now += gap
    link.send(b"CHANGELOC i\n", 1)
    assert spy.delays[-1] == pytest.approx(FLOOD_WINDOW - gap)
    spy.run_due()
    clock.now += FLOOD_WINDOW * 1.5  # quiet for a whole window: at once, a new burst after
    link.send(b"CHANGELOC q\n", 1)
    assert len(writer.writes) == 16 and len(spy.delays) == 13
    clock.now += gap
    link.send(b"CHANGELOC r\n", 1)
    assert spy.delays[-1] == pytest.approx(FLOOD_WINDOW_STEP - gap)


async def test_a_client_whose_write_fails_does_not_cost_the_neighbour_its_records() -> None:
    link, writer = up_link()

    class BrokenClient:
        def write_out(self) -> None:
            raise RuntimeError("a bug in one connection's write")

    link.node.turn_writes.add(BrokenClient())
    with pytest.raises(RuntimeError):
        link.send(b"CHANGELOC a\n", 1)
    assert [data for _, data in writer.writes] == [b"CHANGELOC a\n"]


async def test_a_windows_write_takes_the_records_read_before_it(monkeypatch: Any) -> None:
    """Records that the turn's client reads left for its end (`node.turn_journal`) are
    journalled and go with a window's write that comes first: left to the turn's end, which
    the loop runs after its timers, they would open a new window right after the write."""
    link, writer, clock, spy = bursting_link(monkeypatch)
    clock.now += FLOOD_BURST_GAP / 2
    link.send(b"CHANGELOC a\n", 1)  # a burst: waits for its window
    left: list[bytes] = [b"CHANGELOC late\n"]

    def settle_turn() -> bool:
        while left:
            link.send(left.pop(), 1)
        return True

    cast(Any, link.node).settle_turn = settle_turn
    spy.run_due()  # the window ends
    assert [data for _, data in writer.writes][1:] == [b"CHANGELOC a\nCHANGELOC late\n"]
    assert len(spy.delays) == 1 and not link._send_scheduled  # no window opened after it


async def test_a_turns_flood_counts_its_pause_to_when_its_records_were_read(
    monkeypatch: Any,
) -> None:
    """Flooded at the turn's end, records read right after a write are still a burst: the
    pause is counted to their read, not to the flood (`node.turn_journal`)."""
    link, writer, clock, spy = bursting_link(monkeypatch)
    read_at = clock.now + FLOOD_BURST_GAP / 2  # right after the write
    clock.now += FLOOD_BURST_GAP * 2  # flooded at the turn's end, later
    link.send(b"CHANGELOC a\n", 1, read_at)
    assert spy.delays == [pytest.approx(FLOOD_WINDOW_STEP - FLOOD_BURST_GAP / 2)]
    await asyncio.sleep(0)
    assert len(writer.writes) == 1  # waits for the window, not for the turn's end


def grow_burst(link: PeerLink, clock: Any, spy: TimerSpy, writes: int, gap: float) -> None:
    """`writes` windowed writes, each `gap` after the last write: a continuous burst."""
    for i in range(writes):
        clock.now += gap
        link.send(b"CHANGELOC %d\n" % i, 1)
        spy.run_due()


async def pause(link: PeerLink, clock: Any) -> None:
    """A write after a pause in the load: at the end of its turn."""
    clock.now += FLOOD_BURST_GAP * 2
    link.send(b"CHANGELOC p\n", 1)
    await asyncio.sleep(0)


async def test_a_pause_ends_a_burst_short_of_the_whole_window(monkeypatch: Any) -> None:
    """A load that comes in batches writes after each batch, not a growing window later."""
    link, writer, clock, spy = bursting_link(monkeypatch)
    gap = FLOOD_BURST_GAP / 2
    grow_burst(link, clock, spy, 3, gap)
    assert spy.delays[-1] == pytest.approx(3 * FLOOD_WINDOW_STEP - gap)
    await pause(link, clock)
    grow_burst(link, clock, spy, 1, gap)  # the next batch's tail: a new burst
    assert spy.delays[-1] == pytest.approx(FLOOD_WINDOW_STEP - gap)
    assert len(writer.writes) == 6


async def test_a_continuous_load_loses_a_step_per_hiccup_and_its_burst_at_two(
    monkeypatch: Any,
) -> None:
    link, _writer, clock, spy = bursting_link(monkeypatch)
    gap = FLOOD_BURST_GAP / 2
    steps = round(FLOOD_WINDOW / FLOOD_WINDOW_STEP)
    grow_burst(link, clock, spy, steps, gap)  # up to the whole window
    await pause(link, clock)
    grow_burst(link, clock, spy, 1, gap)  # a step off, and the step back: still whole
    assert spy.delays[-1] == pytest.approx(FLOOD_WINDOW - gap)
    await pause(link, clock)
    await pause(link, clock)  # two pauses in a row: the load is not continuous
    grow_burst(link, clock, spy, 1, gap)
    assert spy.delays[-1] == pytest.approx(FLOOD_WINDOW_STEP - gap)


async def test_after_a_quiet_window_an_update_goes_out_at_once_again() -> None:
    link, writer = up_link()
    clock = fake_clock(link)
    link.send(b"CHANGELOC a\n", 1)
    clock.now += FLOOD_WINDOW * 1.5
    link.send(b"CHANGELOC b\n", 1)
    assert [data for _, data in writer.writes] == [b"CHANGELOC a\n", b"CHANGELOC b\n"]


async def test_after_a_short_pause_the_rest_of_the_turn_shares_one_write() -> None:
    """A load with a hiccup: the turn's other reads are handled before the write."""
    link, writer = up_link()
    clock = fake_clock(link)
    link.send(b"CHANGELOC a\n", 1)
    clock.now += FLOOD_BURST_GAP * 2
    link.send(b"CHANGELOC b\n", 1)
    link.send(b"CHANGELOC c\n", 1)
    assert len(writer.writes) == 1
    await asyncio.sleep(0)
    assert [data for _, data in writer.writes] == [
        b"CHANGELOC a\n",
        b"CHANGELOC b\nCHANGELOC c\n",
    ]


async def test_a_link_that_is_down_queues_nothing() -> None:
    link, writer = up_link()
    link.up = False
    link.send(b"CHANGELOC a\n", 1)
    await asyncio.sleep(0.01)
    assert writer.writes == []
    assert link.buffered() == 0
