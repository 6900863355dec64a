"""What a connection logs, in the order it happened, when lines are batched.

A ClientConnection is driven in process with a fake transport; the log keeps each event's text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from node import handshake
from node.client import ClientConnection
from node.config import load_config
from node.places.base import success_response
from node.server import NodeServer
from tests.fakes.server import CapturedLog, FakeTransport, turn_ends
from tests.hardening.harness import eventually
from tests.support import write_topology

SECRET = b"test-secret"


class GatedPlaces:
    """A places provider whose answers wait for `gate`."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def nearby(self, *args: Any) -> dict[str, Any]:
        await self.gate.wait()
        return success_response([], [])

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class AtOncePlaces(GatedPlaces):
    """A provider that answers in the same turn, as the offline one does."""

    name = "at-once"

    def nearby_now(self, *args: Any) -> dict[str, Any]:
        return success_response([], [])


def connect(
    tmp_path: Path, max_line: int = 65536, places: Any = None
) -> tuple[ClientConnection, FakeTransport, CapturedLog]:
    config = load_config(
        write_topology(
            tmp_path,
            ("Solo", "Peer"),
            [("Solo", "Peer")],
            extra={"places": {"provider": "offline"}, "limits": {"max_line_bytes": max_line}},
        )
    )
    log = CapturedLog()
    provider = GatedPlaces() if places is None else places
    node = NodeServer(config, "Solo", secret=SECRET, places=provider, log=log)
    conn = ClientConnection(node)
    transport = FakeTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, log


async def test_the_reply_to_an_overlong_line_is_logged_as_out(tmp_path: Path) -> None:
    conn, transport, log = connect(tmp_path, max_line=40)
    conn.data_received(b"X" * 100 + b"\n")
    assert transport.out == b"? " + b"X" * 40 + b"\n"
    assert f"OUT conn=1 ? {'X' * 40}" in log.events, log.events


async def test_replies_made_but_never_written_are_logged_as_dropped(tmp_path: Path) -> None:
    conn, transport, log = connect(tmp_path)
    # The WHATSAT waits on places, so the reply to BOGUS queues behind it.
    conn.data_received(b"IAMAT a +1+2 1\nWHATSAT a 1 1\nBOGUS\n")
    await turn_ends()
    assert transport.out.startswith(b"AT Solo ")
    conn.connection_lost(ConnectionResetError())  # the client goes away
    await asyncio.sleep(0)
    assert b"? BOGUS" not in transport.out
    assert "REPLIES_DROPPED conn=1 count=2" in log.events, log.events
    assert log.kinds().index("REPLIES_DROPPED") < log.kinds().index("CONN_CLOSE")


async def test_an_iamat_is_one_event_in_line_order(tmp_path: Path) -> None:
    conn, transport, log = connect(tmp_path)
    conn.data_received(b"BOGUS\nIAMAT a +1+2 1.5\nIAMAT a +1+2 1.25\nALSO BOGUS\n")
    await turn_ends()
    assert log.kinds()[1:] == ["IN", "OUT", "IAMAT", "IAMAT", "IN", "OUT"], log.events
    iamats = [e for e in log.events if e.startswith("IAMAT")]
    assert iamats[0].startswith("IAMAT conn=1 client=a location=+1+2 sent=1.5 diff=+")
    assert iamats[0].endswith(" kept=yes")
    assert iamats[1].endswith(" kept=no")  # older than the one before it
    assert transport.out.count(b"\n") == 4


def json_bytes(answer: bytes) -> int:
    """The size of the JSON in one WHATSAT answer: `AT ...` LF, the JSON, LF LF."""
    return len(answer.split(b"\n", 1)[1].rstrip(b"\n"))


async def test_a_whatsat_answered_at_once_is_one_event(tmp_path: Path) -> None:
    conn, transport, log = connect(tmp_path, places=AtOncePlaces())
    conn.data_received(b"WHATSAT nobody 1 1\nIAMAT a\x01b +1+2 1\nWHATSAT a\x01b 10.5 05\n")
    await turn_ends()
    assert log.kinds()[1:] == ["WHATSAT", "IAMAT", "WHATSAT"], log.events
    assert log.events[1] == "WHATSAT conn=1 client=nobody radius=1 bound=1 known=no"
    answer = transport.out.split(b"\n", 2)[2]  # after the miss and the IAMAT's reply
    assert answer.startswith(b"AT Solo ")
    # The fields as the client sent them; a control byte shown escaped, as in any event.
    assert log.events[3] == (
        f"WHATSAT conn=1 client=a\\x01b radius=10.5 bound=05 known=yes"
        f" json_bytes={json_bytes(answer)}"
    )


async def test_a_whatsat_that_waits_for_places_is_logged_when_answered(tmp_path: Path) -> None:
    places = GatedPlaces()
    conn, transport, log = connect(tmp_path, places=places)
    conn.data_received(b"IAMAT a +1+2 1\nWHATSAT a 10 5\nWHATSAT b 1 1\n")
    await turn_ends()
    # Only the miss is answered yet (its reply waits behind the WHATSAT in line order).
    assert log.kinds()[1:] == ["IAMAT", "WHATSAT"], log.events
    assert log.events[-1].endswith(" client=b radius=1 bound=1 known=no")
    places.gate.set()
    await eventually(lambda: b"\n\n" in transport.out, "the WHATSAT's answer written")
    answer = transport.out.split(b"\n", 1)[1]
    assert answer.startswith(b"AT Solo ")
    answer = answer[: answer.index(b"\n\n") + 2]
    assert log.events[-1] == (
        f"WHATSAT conn=1 client=a radius=10 bound=5 known=yes json_bytes={json_bytes(answer)}"
    )
    assert "IN" not in log.kinds() and "OUT" not in log.kinds()


async def test_a_whatsat_cut_off_by_its_client_going_is_logged_as_cancelled(
    tmp_path: Path,
) -> None:
    conn, _transport, log = connect(tmp_path)
    conn.data_received(b"IAMAT a +1+2 1\nWHATSAT a 10 5\n")
    await turn_ends()
    conn.connection_lost(ConnectionResetError())
    await eventually(lambda: "WHATSAT" in log.kinds(), "the cancelled WHATSAT logged")
    assert "WHATSAT conn=1 client=a radius=10 bound=5 known=yes cancelled=yes" in log.events
    assert "REPLIES_DROPPED conn=1 count=1" in log.events, log.events


async def test_a_peer_batch_logs_unknown_servers_before_the_line_that_drops_the_link(
    tmp_path: Path,
) -> None:
    conn, transport, log = connect(tmp_path, max_line=200)
    initiator = handshake.Initiator(SECRET, b"Peer", b"Solo", nonce=b"1" * 32)
    conn.data_received(initiator.hello())
    await turn_ends()
    auth = initiator.on_challenge(transport.out.split(b"\n")[0])
    conn.data_received(
        auth + b"CHANGELOC a +1+2 1 1.000000000 Nobody\nCHANGELOC b +1+2 1 1.5 Peer\n"
    )
    await asyncio.sleep(0)
    kinds = log.kinds()
    assert kinds.index("PEER_UNKNOWN_SERVER") < kinds.index("PEER_BAD_LINE"), log.events
    assert "PEER_IN peer=Peer changelocs=2 applied=0 duplicates=0" in log.events, log.events
    assert transport.closed
