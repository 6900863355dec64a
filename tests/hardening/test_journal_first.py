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
        self.node.peers.flood = lambda lines, origin, read_at=None: self.floods.append(  # type: ignore[method-assign]
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
    await settle()
    before = dict(herd.node.store.packed())
    herd.disk.fail("ENOSPC")
    conn2, _ = herd.connect()
    # The same client twice in one batch, a stale one and a new one: all undone.
    conn2.data_received(b"IAMAT a +2+2 6\nIAMAT a +3+3 7\nIAMAT b +1+1 1\nIAMAT c +1+1 1\n")
    await settle()
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

        def send(self, lines: bytes, records: int, read_at: float | None = None) -> None:
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
    await settle()
    assert [line.split()[1] for line in b"".join(sent).splitlines()] == [b"b"]


# -- the turn's journal write (node.turn_journal) ---------------------------------------


def under_load(herd: Herd) -> None:
    """As after turns of several reads each: a turn's first read waits for its end too."""
    herd.node.turn_grouping.grouping = True


@pytest.mark.parametrize("loaded", [False, True])
async def test_a_turns_client_reads_share_one_journal_write(tmp_path: Path, loaded: bool) -> None:
    herd = Herd(tmp_path)
    if loaded:
        under_load(herd)
    clients = [herd.connect() for _ in range(3)]
    for i, (conn, _) in enumerate(clients):
        conn.data_received(b"IAMAT c%d +1+1 5\n" % i)
    # Idle, the first read is committed at once, as a lone update's must be.
    assert herd.node.journal_tally.writes == (0 if loaded else 1)
    assert len(herd.floods) == (0 if loaded else 1)
    await settle()
    assert herd.node.journal_tally.writes == (1 if loaded else 2)
    assert sorted(herd.journalled()) == [b"c0", b"c1", b"c2"]
    assert all(transport.out.startswith(b"AT Solo ") for _, transport in clients)
    assert b"".join(lines for lines, _ in herd.floods).count(b"CHANGELOC") == 3
    assert len(herd.floods) == herd.node.journal_tally.writes  # one flood per write


@pytest.mark.parametrize("mode", MODES)
async def test_a_refused_turn_refuses_every_read_in_it_and_puts_back_the_store(
    tmp_path: Path, mode: str
) -> None:
    """The second read's IAMAT is older than the first's: judged stale against a record the
    journal then refuses, it must not be acknowledged either."""
    herd = Herd(tmp_path)
    await known(herd)
    before = dict(herd.node.store.packed())
    under_load(herd)
    herd.disk.fail(mode)
    (first, out1), (second, out2) = herd.connect(), herd.connect()
    first.data_received(b"IAMAT known +2+2 1720023999\nIAMAT new +2+2 5\n")
    second.data_received(b"IAMAT known +3+3 1720023990\n")  # stale next to the first's
    await settle()
    assert out1.out == out2.out == b"" and out1.eof and out2.eof
    assert dict(herd.node.store.packed()) == before
    assert herd.journalled() == before and herd.floods == []
    assert len(herd.events("CONN_CUT")) == 2
    assert herd.node.counters.iamat_refused == 3
    assert not [e for e in herd.events("IAMAT") if "conn=2 " in e or "conn=3 " in e]

    herd.disk.heal()
    again, out3 = herd.connect()
    again.data_received(b"IAMAT known +3+3 1720023990\n")
    await settle()
    assert out3.out.startswith(b"AT Solo ")
    assert herd.node.store.get(b"known").location == b"+3+3"  # type: ignore[union-attr]


async def test_a_neighbours_record_is_judged_after_the_turns_write(tmp_path: Path) -> None:
    """A read's IAMAT waits for the turn's end; a neighbour's older record of the same
    client arrives meanwhile. The journal refuses the IAMAT: the neighbour's record must
    still be kept, not dropped as older than a record that is then undone."""
    herd = Herd(tmp_path)
    link, _ = herd.link_in(b"Peer")
    conn, transport = herd.connect()
    under_load(herd)
    herd.disk.fail("ENOSPC", times=1)  # the turn's write only
    conn.data_received(b"IAMAT x +1+1 1720023999\n")
    link.data_received(changelocs(b"x", t=b"1720023934"))
    await settle(lambda: herd.node.store.get(b"x") is not None, "the neighbour's record")
    assert transport.out == b"" and transport.eof  # the client's IAMAT: refused
    held = herd.node.store.get(b"x")
    assert held is not None and held.time_sent == b"1720023934"
    assert herd.journalled() == {b"x": dict(herd.node.store.packed())[b"x"]}


async def test_lines_after_a_deferred_iamat_keep_their_order(tmp_path: Path) -> None:
    herd = Herd(tmp_path)
    conn, transport = herd.connect()
    under_load(herd)
    conn.data_received(b"IAMAT a +1+1 5\nHELLO\nIAMAT b +1+1 5\n")
    conn.data_received(b"BOGUS\n")  # a second read of the same turn
    await settle()
    replies = transport.out.splitlines()
    assert [r.split()[0] for r in replies] == [b"AT", b"?", b"AT", b"?"], replies
    assert b" a " in replies[0] and b" b " in replies[2] and replies[3] == b"? BOGUS"


async def test_a_query_answered_outside_its_read_sees_journalled_records_only(
    tmp_path: Path,
) -> None:
    """A last line without LF is handled at EOF, outside its read: the turn is settled
    first, so a record the journal refuses is not in its answer."""
    herd = Herd(tmp_path)
    writer, _ = herd.connect()
    asker, answer = herd.connect()
    under_load(herd)
    herd.disk.fail("EIO")
    writer.data_received(b"IAMAT hidden +1+1 5\n")
    asker.data_received(b"WHATSAT hidden 10 5")
    asker.eof_received()
    await settle()
    assert answer.out == b"? WHATSAT hidden 10 5\n"
    assert herd.node.store.get(b"hidden") is None


async def test_a_compaction_snapshot_holds_no_record_the_turns_write_refuses(
    tmp_path: Path,
) -> None:
    herd = Herd(tmp_path)
    await known(herd)
    conn, transport = herd.connect()
    under_load(herd)
    herd.disk.fail("ENOSPC")
    conn.data_received(b"IAMAT pending +1+1 5\n")  # in the store, left for the turn's end
    await herd.journal._compact(herd.node.store)  # a snapshot taken before the turn's end
    await settle()
    assert transport.out == b""
    assert b"pending" not in herd.journalled() and b"known" in herd.journalled()
    assert herd.events("JOURNAL_COMPACTED")


async def test_a_full_sync_sends_journalled_records_only(tmp_path: Path) -> None:
    herd = Herd(tmp_path)
    conn, _ = herd.connect()
    under_load(herd)
    herd.disk.fail("ENOSPC")
    conn.data_received(b"IAMAT pending +1+1 5\n")
    assert herd.node.sync_state() == []
    herd.disk.heal()
    conn2, _ = herd.connect()
    conn2.data_received(b"IAMAT kept +1+1 5\n")
    assert [client for client, _ in herd.node.sync_state()] == [b"kept"]


async def test_replies_waiting_for_the_turns_write_are_dropped_if_the_client_goes(
    tmp_path: Path,
) -> None:
    herd = Herd(tmp_path)
    conn, transport = herd.connect()
    under_load(herd)
    conn.data_received(b"IAMAT a +1+1 5\nIAMAT b +1+1 5\n")
    conn.connection_lost(ConnectionResetError())
    await settle()
    assert transport.out == b""
    assert any("REPLIES_DROPPED" in e and "count=2" in e for e in herd.log.events)
    assert sorted(herd.journalled()) == [b"a", b"b"]  # kept: the journal took them
