"""Stand-ins for driving a node's ClientConnection in process: a log that keeps its events, a
transport that keeps what is written, places that answer at once."""

from __future__ import annotations

import asyncio
from typing import Any

from node.logbook import LogBook, show
from node.places.base import success_response


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


class InstantPlaces:
    name = "instant"

    async def nearby(self, *args: Any) -> dict[str, Any]:
        return success_response([], [])

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
