"""Journal first, at every place a batch is drained: a record the journal refused is never
acknowledged, flooded or kept, and the node recovers by itself when the disk does.

In process: a real NodeServer and a real Journal whose writes fail on demand (ENOSPC, EIO,
a short write), fed through the plain-read shortcut, the general path and a neighbour's
inbound link.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from node.client import ClientConnection
from node.config import load_config
from node.journal import Journal
from node.peers import PeerConnection
from node.protocol import LineSplitter
from node.server import NodeServer
from node.store import ClientStore
from tests.fakes.server import CapturedLog, FakeTransport, InstantPlaces
from tests.node.disk import FlakyDisk
from tests.support import write_topology

NOW_NS = 1_795_000_000_123_456_789
MODES = ["ENOSPC", "EIO", "short"]
DEADLINE = 10.0


class EofTransport(FakeTransport):
    def __init__(self, protocol: asyncio.Protocol | None) -> None:
        super().__init__(protocol)
        self.eof = False
        self.reading = True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class Herd:
    """Node Solo, linked to Peer and Other, with its journal on a FlakyDisk."""

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "journal"
        config = load_config(
            write_topology(
                tmp_path,
                ("Solo", "Peer", "Other"),
                [("Solo", "Peer"), ("Solo", "Other")],
                extra={
                    "places": {"provider": "offline"},
                    "limits": {"peer_backoff_initial": 0.02, "peer_backoff_max": 0.1},
                },
            )
        )
        self.disk = FlakyDisk()
        self.log = CapturedLog()
        self.journal = Journal(self.folder, fsync="no", log=self.log.event, write=self.disk)
        self.node = NodeServer(
            config,
            "Solo",
            secret=b"s",
            places=InstantPlaces(),
            log=self.log,
            journal=self.journal,
            clock_ns=lambda: NOW_NS,
        )
        self.journal.open(self.node.store)
        self.floods: list[tuple[bytes, bytes | None]] = []
        self.node.peers.flood = lambda lines, origin: self.floods.append(  # type: ignore[method-assign]
            (b"".join(lines), origin)
        )

    def connect(self) -> tuple[ClientConnection, EofTransport]:
        conn = ClientConnection(self.node)
        transport = EofTransport(conn)
        conn.connection_made(transport)  # type: ignore[arg-type]
        return conn, transport

    def link_in(self, peer: bytes) -> tuple[PeerConnection, EofTransport]:
        """A neighbour's link as after a good AUTH (the handshake has its own tests)."""
        transport = EofTransport(None)
        link = PeerConnection(
            self.node,
            self.node.peers,
            transport,  # type: ignore[arg-type]
            peer=peer,
            conn_id=99,
            where="127.0.0.1:1",
            splitter=LineSplitter(),
            read_paused=False,
            write_paused=False,
        )
        transport.protocol = link
        self.node.peers.inbound[peer] = link
        return link, transport

    def journalled(self) -> dict[bytes, bytes]:
        store = ClientStore()
        Journal(self.folder).open(store)
        return dict(store.packed())

    def events(self, kind: str) -> list[str]:
        return [e for e in self.log.events if e.startswith(kind + " ")]


async def settle(condition: Callable[[], bool] = lambda: False, what: str = "") -> None:
    """A few loop turns, or until `condition` holds (failing after DEADLINE when asked)."""
    if not what:
        for _ in range(5):
            await asyncio.sleep(0)
        return
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def known(herd: Herd) -> None:
    conn, transport = herd.connect()
    conn.data_received(b"IAMAT known +34.068930-118.445127 1520023934.918963997\n")
    await settle()
    assert transport.out.startswith(b"AT Solo ")
    herd.floods.clear()


@pytest.mark.parametrize("mode", MODES)
async def test_plain_read_refused_by_the_journal_gets_no_at_and_keeps_nothing(
    tmp_path: Path, mode: str
) -> None:
    herd = Herd(tmp_path)
    await known(herd)
    before = dict(herd.node.store.packed())
    conn, transport = herd.connect()
    herd.disk.fail(mode)
    conn.data_received(
        b"IAMAT known +1+1 1720023934\nIAMAT fresh +2+2 1720023934\nIAMAT old +3+3 1\n"
    )
    await settle()
    assert transport.out == b""  # no AT for any line of the refused batch
    assert transport.eof  # closed after what was answered before
    assert dict(herd.node.store.packed()) == before  # nothing kept in memory...
    assert herd.floods == []  # ...or told to a neighbour
    assert herd.journalled() == before  # and nothing half-written on disk
    assert not [e for e in herd.events("IAMAT") if "conn=2 " in e]
    assert len(herd.events("JOURNAL_WRITE_FAILED")) == 1
    (cut,) = herd.events("CONN_CUT")
    assert "reason=journal write failed (ENOSPC)" in cut or "(EIO)" in cut
    counters, tally = herd.node.counters, herd.node.journal_tally
    assert (counters.iamat_refused, counters.iamat_kept, counters.conns_cut) == (3, 1, 1)
    assert (tally.write_failures, tally.writes) == (1, 1)  # `known`'s write went through

    herd.disk.heal()  # space is back: the next client is served, with no restart
    again, transport2 = herd.connect()
    again.data_received(b"IAMAT fresh +2+2 1720023934\n")
    await settle()
    assert transport2.out.startswith(b"AT Solo ") and b" fresh +2+2 1720023934\n" in transport2.out
    assert herd.node.store.get(b"fresh") is not None
    assert len(herd.floods) == 1 and herd.floods[0][0].startswith(b"CHANGELOC fresh +2+2 ")
    assert b"fresh" in herd.journalled()
    assert len(herd.events("JOURNAL_WRITE_RECOVERED")) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_pipelined_iamat_between_whatsats_is_not_acknowledged(
    tmp_path: Path, mode: str
) -> None:
    """The issue's reproduction: before, the second WHATSAT's flush found nothing pending
    (a link's flush had already dropped it) and the AT went out for a record on no disk."""
    herd = Herd(tmp_path)
    await known(herd)
    conn, transport = herd.connect()
    herd.disk.fail(mode)
    conn.data_received(
        b"WHATSAT known 10 5\nIAMAT acked0 +11.5-22.5 1720023934\nWHATSAT known 10 5\n"
    )
    await settle(lambda: transport.eof, "the connection to close")
    assert transport.out.startswith(b"AT Solo ") and transport.out.count(b"AT Solo ") == 1
    assert b"acked0" not in transport.out
    assert transport.out.endswith(b"}\n\n")  # the first WHATSAT's whole answer, then nothing
    assert herd.node.store.get(b"acked0") is None
    assert herd.floods == []
    assert b"acked0" not in herd.journalled()


@pytest.mark.parametrize("mode", MODES)
async def test_byte_by_byte_general_path_refused_the_same_way(tmp_path: Path, mode: str) -> None:
    herd = Herd(tmp_path)
    conn, transport = herd.connect()
    herd.disk.fail(mode)
    data = b"IAMAT a +1+1 5\nIAMAT b +1+1 5\n"
    for i in range(len(data)):
        conn.data_received(data[i : i + 1])
    await settle()
    assert transport.out == b"" and transport.eof
    assert len(herd.node.store) == 0 and herd.floods == []


async def test_a_refused_batch_puts_back_what_its_records_replaced(tmp_path: Path) -> None:
    herd = Herd(tmp_path)
    conn, _ = herd.connect()
    conn.data_received(b"IAMAT a +1+1 5\nIAMAT b +1+1 5\n")
    before = dict(herd.node.store.packed())
    herd.disk.fail("ENOSPC")
    conn2, _ = herd.connect()
    # The same client twice in one batch, a stale one and a new one: all undone.
    conn2.data_received(b"IAMAT a +2+2 6\nIAMAT a +3+3 7\nIAMAT b +1+1 1\nIAMAT c +1+1 1\n")
    assert dict(herd.node.store.packed()) == before


def changelocs(*clients: bytes, t: bytes = b"1720023934") -> bytes:
    return b"".join(b"CHANGELOC %s +5+5 %s 1720023935.000000000 Peer\n" % (c, t) for c in clients)


@pytest.mark.parametrize("spacing", ["block", "line by line"])
async def test_a_neighbours_batch_waits_for_the_journal_without_dropping_the_link(
    tmp_path: Path, spacing: str
) -> None:
    herd = Herd(tmp_path)
    conn, transport = herd.link_in(b"Peer")
    herd.disk.fail("ENOSPC")
    data = changelocs(b"p1", b"p2", b"p3") + b"SYNCED 3\n"
    if spacing != "block":
        data = data.replace(b"CHANGELOC p2 ", b"CHANGELOC  p2 ")  # not one regex block
    conn.data_received(data)
    await settle()
    assert len(herd.node.store) == 0 and herd.floods == []
    assert not transport.closed and not transport.reading  # held, not dropped
    assert b"Peer" not in herd.node.peers.synced_from  # SYNCED waits behind its records
    await settle(lambda: herd.disk.failures >= 4, "a few retries")
    assert len(herd.events("PEER_IN_PAUSED")) == 1  # once per episode, not per retry
    assert len(herd.events("JOURNAL_WRITE_FAILED")) == 1
    conn.heartbeat(time.monotonic() + 3600, timeout=10)  # a stalled link is not "silent"
    assert not transport.closed

    herd.disk.heal()
    await settle(lambda: len(herd.node.store) == 3, "the records to be applied")
    assert sorted(herd.journalled()) == [b"p1", b"p2", b"p3"]
    assert [exclude for _, exclude in herd.floods] == [b"Peer"]
    assert herd.floods[0][0].count(b"CHANGELOC") == 3
    assert b"Peer" in herd.node.peers.synced_from
    assert transport.reading
    assert len(herd.events("PEER_IN_RESUMED")) == 1


async def test_a_stalled_link_keeps_what_arrives_meanwhile_in_order(tmp_path: Path) -> None:
    herd = Herd(tmp_path)
    conn, _ = herd.link_in(b"Peer")
    herd.disk.fail("EIO")
    conn.data_received(changelocs(b"x", t=b"100"))
    conn.data_received(changelocs(b"x", t=b"200") + changelocs(b"y"))  # already in the pipe
    await settle()
    assert len(herd.node.store) == 0
    herd.disk.heal()
    await settle(lambda: len(herd.node.store) == 2, "both clients")
    assert herd.node.store.get(b"x").time_sent == b"200"  # type: ignore[union-attr]


async def test_records_from_a_failed_batch_never_reach_the_wire_of_a_link(
    tmp_path: Path,
) -> None:
    """With real links: Peer's outbound buffer never holds a record the journal refused."""
    herd = Herd(tmp_path)
    sent: list[bytes] = []

    class Link:
        up = True

        def send(self, lines: bytes, records: int) -> None:
            sent.append(lines)

    del herd.node.peers.flood  # back to the real flood, over a stand-in link
    herd.node.peers.links = {b"Other": Link()}  # type: ignore[dict-item]
    conn, _ = herd.connect()
    herd.disk.fail("short")
    conn.data_received(b"IAMAT a +1+1 5\n")
    await settle()
    assert sent == []
    herd.disk.heal()
    conn2, _ = herd.connect()
    conn2.data_received(b"IAMAT b +1+1 5\n")
    assert [line.split()[1] for line in b"".join(sent).splitlines()] == [b"b"]
