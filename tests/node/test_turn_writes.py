"""A turn's replies go out together at its end, each after its journal write; what a
connection gathered is written before it closes, and counted as dropped if the client goes
first."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from node.client import ClientConnection
from node.config import load_config
from node.journal import NullJournal
from node.places.base import success_response
from node.server import NodeServer
from node.turn_writes import TurnWrites
from tests.fakes.server import CapturedLog, FakeTransport, turn_ends
from tests.support import write_topology


class Noted(NullJournal):
    """A journal that notes each write, with its clients, in the shared `seen`."""

    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    def write(self, entries: list[bytes]) -> None:
        self.seen.append("journal " + " ".join(entry.split()[1].decode() for entry in entries))


class NotedTransport(FakeTransport):
    """A transport that notes its writes and its close in the shared `seen`."""

    def __init__(self, seen: list[str], name: str) -> None:
        super().__init__(None)
        self.seen = seen
        self.name = name

    def write(self, data: bytes) -> None:
        super().write(data)
        lines = data.count(b"\n")
        self.seen.append(f"write {self.name} {lines} lines")

    def close(self) -> None:
        self.seen.append(f"close {self.name}")
        super().close()

    def pause_reading(self) -> None:
        self.seen.append(f"pause {self.name}")

    def resume_reading(self) -> None:
        self.seen.append(f"resume {self.name}")


class NoPlaces:
    """A provider that answers at once, with nothing near."""

    name = "none"

    def nearby_now(self, *_query: float) -> dict[str, Any]:
        return success_response([], [])


class Stub:
    """A connection as `TurnWrites` sees it: notes each call in `done`; the one named
    "broken" raises instead, at its `broken` step."""

    def __init__(self, done: list[str], name: str, *, broken: str = "") -> None:
        self.done = done
        self.name = name
        self.broken = broken

    def answer_held(self) -> None:
        self._step("answer")

    def write_out(self) -> None:
        self._step("write")

    def _step(self, step: str) -> None:
        if self.name == "broken" and step == self.broken:
            raise RuntimeError(f"a bug in one connection's {step}")
        self.done.append(f"{step} {self.name}")


def node_on(tmp_path: Path, seen: list[str]) -> tuple[NodeServer, CapturedLog]:
    config = load_config(write_topology(tmp_path, ("Solo", "Peer"), [("Solo", "Peer")]))
    log = CapturedLog()
    node = NodeServer(
        config, "Solo", secret=b"s", places=cast(Any, NoPlaces()), log=log, journal=Noted(seen)
    )
    return node, log


def client(node: NodeServer, seen: list[str], name: str) -> tuple[ClientConnection, FakeTransport]:
    conn = ClientConnection(node)
    transport = NotedTransport(seen, name)
    transport.protocol = conn
    conn.connection_made(cast(Any, transport))
    return conn, transport


def two_clients(
    tmp_path: Path,
) -> tuple[list[str], CapturedLog, list[tuple[ClientConnection, FakeTransport]]]:
    """A node's noted journal writes and transport writes, its log, and clients a and b."""
    seen: list[str] = []
    node, log = node_on(tmp_path, seen)
    return seen, log, [client(node, seen, name) for name in ("a", "b")]


def one_client(
    tmp_path: Path,
) -> tuple[list[str], CapturedLog, ClientConnection, FakeTransport]:
    seen, log, ((conn, transport), _) = two_clients(tmp_path)
    return seen, log, conn, transport


async def test_a_turns_replies_go_out_together_when_it_ends_each_after_its_journal(
    tmp_path: Path,
) -> None:
    seen, _log, ((a, _), (b, _)) = two_clients(tmp_path)
    a.data_received(b"IAMAT ka +1+2 1\n")
    b.data_received(b"IAMAT kb +1+2 1\nIAMAT kc +1+2 1\n")
    a.data_received(b"IAMAT kd +1+2 1\n")  # a second read of a's in the same turn
    # The turn's first read is journalled at once; the others wait for the turn's end.
    assert seen == ["journal ka"]  # nothing written
    await turn_ends()
    # The rest in one journal write, then one write per connection.
    assert seen[1:] == ["journal kb kc kd", "write a 2 lines", "write b 2 lines"]
    await turn_ends()
    assert len(seen) == 4  # and nothing more


async def test_under_a_steady_load_the_turns_first_read_waits_too(tmp_path: Path) -> None:
    seen, _log, ((a, _), (b, _)) = two_clients(tmp_path)
    for turn in range(12):  # two reads a turn, turn after turn
        a.data_received(b"IAMAT ka +1+2 %d\n" % turn)
        b.data_received(b"IAMAT kb +1+2 %d\n" % turn)
        await turn_ends()
    seen.clear()
    a.data_received(b"IAMAT ka +1+2 99\n")
    b.data_received(b"IAMAT kb +1+2 99\n")
    assert seen == []
    await turn_ends()
    assert seen == ["journal ka kb", "write a 1 lines", "write b 1 lines"]


async def test_a_whatsat_is_answered_at_the_turns_end_first_with_what_was_gathered(
    tmp_path: Path,
) -> None:
    """A read's WHATSAT waits for the turn's end, and is then answered before the gathered
    replies are written: the IAMAT replies gathered before it go with it, in one write."""
    seen, _log, ((a, transport), (b, _)) = two_clients(tmp_path)
    a.data_received(b"IAMAT ka +1+2 1\n")
    b.data_received(b"IAMAT kb +1+2 1\n")
    a.data_received(b"WHATSAT nobody 1 1\n")
    assert seen == ["journal ka"]  # nothing answered yet
    await turn_ends()
    assert seen[1:] == ["journal kb", "write a 2 lines", "write b 1 lines"]
    assert transport.out.startswith(b"AT Solo ") and transport.out.endswith(
        b"? WHATSAT nobody 1 1\n"
    )
    await turn_ends()
    assert len(seen) == 4


async def test_a_whatsat_sees_a_record_that_a_later_read_of_its_turn_applied(
    tmp_path: Path,
) -> None:
    """The query's read comes first in the turn, the client's IAMAT (from anyone: here
    another connection, as a neighbour's CHANGELOC would) after it: the answer has it."""
    seen, _log, ((a, asker), (b, _)) = two_clients(tmp_path)
    a.data_received(b"WHATSAT kb 1 1\n")
    b.data_received(b"IAMAT kb +1+2 1\n")
    await turn_ends()
    assert asker.out.startswith(b"AT Solo ") and b" kb +1+2 1\n" in asker.out
    assert asker.out.endswith(b"}\n\n"), asker.out
    assert seen == ["journal kb", "write a 7 lines", "write b 1 lines"]  # AT, then JSON


async def test_lines_after_a_whatsat_wait_with_it_and_keep_their_order(tmp_path: Path) -> None:
    seen, _log, a, transport = one_client(tmp_path)
    a.data_received(b"IAMAT ka +1+2 1\nWHATSAT ka 1 1\nIAMAT kz +1+2 1\n")
    assert seen == ["journal ka"]  # the IAMAT after the WHATSAT is not taken yet
    await turn_ends()
    # ka's reply and the answer (AT and JSON) go before kz is taken: a read's first places
    # answer is written as soon as it is made.
    assert seen[1:] == ["write a 8 lines", "journal kz", "write a 1 lines"]
    replies = transport.out.split(b"\n")
    assert replies[0].startswith(b"AT Solo ") and b" ka " in replies[0]
    assert replies[1].startswith(b"AT Solo ") and b" ka " in replies[1]  # the answer's AT
    assert replies[-2].startswith(b"AT Solo ") and b" kz " in replies[-2]


async def test_a_held_whatsat_is_answered_before_a_close_in_the_same_turn(
    tmp_path: Path,
) -> None:
    seen, _log, a, transport = one_client(tmp_path)
    a.data_received(b"WHATSAT nobody 1 1\n")
    a.eof_received()  # the client is done: answer what it asked, then close
    await turn_ends()
    assert seen == ["write a 1 lines", "close a"]
    assert transport.out == b"? WHATSAT nobody 1 1\n"
    await turn_ends()
    assert seen[2:] == []


async def test_a_second_read_in_the_turn_pauses_reading_until_the_answers(
    tmp_path: Path,
) -> None:
    """A held query does not pause reading; a client that streams more before the turn
    ends is paused, so the backlog cannot grow beyond what one turn read."""
    seen, _log, a, _transport = one_client(tmp_path)
    a.data_received(b"WHATSAT x 1 1\n")
    assert seen == []
    a.data_received(b"WHATSAT y 1 1\n")
    assert seen == ["pause a"]
    await turn_ends()
    assert seen[1:] == ["resume a", "write a 2 lines"]


async def test_one_connection_failing_to_answer_does_not_strand_the_others() -> None:
    done: list[str] = []
    turn = TurnWrites()
    turn.add(Stub(done, "gathered"))
    for name in ("first", "broken", "last"):
        turn.hold(Stub(done, name, broken="answer"))
    with pytest.raises(RuntimeError):
        turn.end_turn()
    assert done == ["answer first"]
    await turn_ends()  # the rest, and the turn's writes, on the next turn
    assert done == ["answer first", "answer last", "write gathered"]


async def test_a_closing_connection_writes_what_it_gathered_before_it_closes(
    tmp_path: Path,
) -> None:
    seen, _log, a, transport = one_client(tmp_path)
    a.data_received(b"IAMAT ka +1+2 1\n")
    a.eof_received()  # the client is done: answer, then close
    assert seen == ["journal ka", "write a 1 lines", "close a"]
    await turn_ends()
    assert seen[3:] == [] and transport.out.startswith(b"AT Solo ")


async def test_a_closing_connection_waits_for_the_turns_journal_write(tmp_path: Path) -> None:
    seen, _log, a, transport = one_client(tmp_path)
    node = cast(NodeServer, a.node)
    node.turn_grouping.grouping = True  # as under a steady load: the first read waits too
    a.data_received(b"IAMAT ka +1+2 1\n")
    a.eof_received()
    assert seen == []  # not before the turn's journal write
    await turn_ends()
    assert seen == ["journal ka", "write a 1 lines", "close a"]
    assert transport.out.startswith(b"AT Solo ")


async def test_replies_gathered_when_the_client_goes_are_counted_as_dropped(
    tmp_path: Path,
) -> None:
    _seen, log, a, transport = one_client(tmp_path)
    a.data_received(b"IAMAT ka +1+2 1\nIAMAT kb +1+2 1\n")
    a.connection_lost(ConnectionResetError())
    await turn_ends()
    assert transport.out == b""
    assert "REPLIES_DROPPED conn=1 count=2" in log.events, log.events


async def test_a_client_reset_within_the_turn_costs_the_others_nothing(tmp_path: Path) -> None:
    seen, log, ((a, gone), (b, _)) = two_clients(tmp_path)
    a.data_received(b"IAMAT ka +1+2 1\n")
    b.data_received(b"IAMAT kb +1+2 1\n")
    gone.closed = True  # the loop saw a's reset; its connection_lost is still to come
    await turn_ends()
    assert seen[2:] == ["write b 1 lines"] and gone.out == b""
    a.connection_lost(ConnectionResetError())
    assert "REPLIES_DROPPED conn=1 count=1" in log.events, log.events


async def test_one_connection_failing_to_write_does_not_strand_the_others() -> None:
    done: list[str] = []
    turn = TurnWrites()
    for name in ("first", "broken", "last"):
        turn.add(Stub(done, name, broken="write"))
    with pytest.raises(RuntimeError):
        turn.write_waiting()
    assert done == ["write first"]
    await turn_ends()  # the rest went back on the list, for the end of the next turn
    assert done == ["write first", "write last"]
