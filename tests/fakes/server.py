"""Stand-ins for driving a node's ClientConnection in process: a log that keeps its events, a
transport that keeps what is written, a connection on it, places that answer at once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

from node.client import ClientConnection
from node.logbook import LogBook, show
from node.places.base import success_response

if TYPE_CHECKING:
    from node.server import NodeServer


class CapturedLog(LogBook):
    """A LogBook that keeps the text of each event, in order, instead of writing it."""

    def __init__(self) -> None:
        super().__init__(None)
        self.events: list[str] = []

    def event(self, text: str) -> None:
        self.events.append(text)

    def raw_events(self, events: list[bytes]) -> None:
        self.events.extend(show(e) for e in events)

    def kinds(self) -> list[str]:
        return [e.split()[0] for e in self.events]


class FakeTransport:
    def __init__(self, protocol: asyncio.Protocol | None) -> None:
        self.out = b""
        self.closed = False
        self.protocol = protocol

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if key == "peername" else default

    def write(self, data: bytes) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def set_protocol(self, protocol: asyncio.Protocol) -> None:
        self.protocol = protocol  # a neighbour's link handed over after AUTH

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


async def turn_ends() -> None:
    """Let the event loop end its turn: the WHATSATs each connection read in it are answered
    then, and the replies each gathered are written (`node.turn_writes`)."""
    await asyncio.sleep(0)


def connected(node: NodeServer) -> tuple[ClientConnection, FakeTransport]:
    """A client connection of `node`, just accepted, on a transport that keeps its writes."""
    transport = FakeTransport(None)
    conn = ClientConnection(node)
    transport.protocol = conn
    conn.connection_made(cast(Any, transport))
    return conn, transport


class InstantPlaces:
    name = "instant"

    async def nearby(self, *args: Any) -> dict[str, Any]:
        return success_response([], [])

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
