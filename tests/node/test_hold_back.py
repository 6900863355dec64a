"""Holding a copy back from a neighbour that links to the sender too: one copy crosses such a
pair, not two, and a held copy still goes when the neighbour's own does not come."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from node.config import load_config
from node.counters import NodeCounters
from node.ingest import Batch, LineBacklog, take_changelocs
from node.peers import HOLD_BACK, Peers
from node.protocol import CHANGELOC_LINE
from node.store import ClientStore
from node.turn_writes import TurnWrites
from tests.node.test_flood_window import FakeWriter, up_link
from tests.support import write_topology

LINE_A = CHANGELOC_LINE % (
    b"kiwi",
    b"+34.068930-118.445127 1700000000.500000000 1700000000.600000000 Welsh",
)
LINE_B = CHANGELOC_LINE % (
    b"plum",
    b"+34.068930-118.445127 1700000001.500000000 1700000001.600000000 Welsh",
)


def peers_of(
    tmp_path: Path, me: str, names: tuple[str, ...], links: list[tuple[str, str]]
) -> Peers:
    """`me`'s Peers on this topology, its links made but not started."""
    config = load_config(write_topology(tmp_path, names, links))
    node = SimpleNamespace(
        name=me,
        config=config,
        log=SimpleNamespace(event=lambda text: None),
        counters=NodeCounters(),
        turn_writes=TurnWrites(),
        settle_turn=lambda: True,
    )
    peers = Peers(cast(Any, node))
    peers.start()  # makes the links and the hold-back sets...
    for link in peers.links.values():
        assert link._task is not None
        link._task.cancel()  # ...but no connecting
    return peers


async def test_held_back_only_from_a_later_named_neighbour_of_the_sender(tmp_path: Path) -> None:
    # Welsh is linked to Alpha, Beta and Zulu; the sender, Sender, links to Alpha and Zulu.
    names = ("Alpha", "Beta", "Sender", "Welsh", "Zulu")
    links = [("Welsh", n) for n in ("Alpha", "Beta", "Sender", "Zulu")]
    links += [("Sender", "Alpha"), ("Sender", "Zulu")]
    peers = peers_of(tmp_path, "Welsh", names, links)
    # Alpha sorts before Welsh: Alpha holds back from Welsh, so Welsh sends to Alpha at once.
    assert peers.hold_back_when_from[b"Sender"] == frozenset({b"Zulu"})
    assert peers.hold_back_when_from[b"Alpha"] == frozenset()  # Alpha links to no other of ours
    writers: dict[bytes, FakeWriter] = {}
    for name, link in peers.links.items():
        writers[name] = FakeWriter()
        link._writer = cast(Any, writers[name])
        link.up = True
    peers.flood([LINE_A], b"Sender")
    assert [data for _, data in writers[b"Alpha"].writes] == [LINE_A]
    assert [data for _, data in writers[b"Beta"].writes] == [LINE_A]
    assert writers[b"Sender"].writes == [] and writers[b"Zulu"].writes == []
    assert list(peers.links[b"Zulu"].held_back) == [LINE_A]
    peers.flood([LINE_B], None)  # our own client's record: held back from nobody
    assert [data for _, data in writers[b"Zulu"].writes] == [LINE_B]


async def test_a_held_line_the_neighbour_sends_us_is_spared_and_the_rest_goes() -> None:
    link, writer = up_link()
    link.hold_back([LINE_A, LINE_B])
    assert writer.writes == []
    # The neighbour's own copy of kiwi's record arrives, by the block path or line by line.
    backlog = LineBacklog()
    backlog.add((LINE_A[:-1], 1))
    taken = take_changelocs(backlog, 10, ClientStore(), {b"Welsh"}, Batch(), link.held_back)
    assert taken == 1 and list(link.held_back) == [LINE_B]
    await asyncio.sleep(HOLD_BACK * 3)
    assert [data for _, data in writer.writes] == [LINE_B]
    assert link.tally.records_spared == 1 and link.tally.records_sent == 1
    assert not link.held_back


async def test_lines_held_while_the_link_goes_down_are_dropped_for_the_resync() -> None:
    link, writer = up_link()
    link.hold_back([LINE_A])
    link.up = False
    link._close_writer()
    assert not link.held_back
    await asyncio.sleep(HOLD_BACK * 3)
    assert writer.writes == [] and link.tally.records_spared == 0


async def test_a_link_that_is_down_holds_nothing_back() -> None:
    link, _writer = up_link()
    link.up = False
    link.hold_back([LINE_A])
    assert not link.held_back


async def test_lines_held_after_the_rest_were_spared_share_the_one_release() -> None:
    link, writer = up_link()
    link.hold_back([LINE_A])
    first = link._release
    link.held_back.pop(LINE_A)  # the neighbour's copy came
    link.hold_back([LINE_B])
    assert link._release is first  # no second timer
    await asyncio.sleep(HOLD_BACK * 3)
    assert [data for _, data in writer.writes] == [LINE_B]  # one release, one write
    assert link.tally.records_spared == 1 and link._release is None
