"""The dashboard's event stream: one producer, fanned out to every open page.

While at least one page listens, `Hub.run` looks every `tick`: it sends the new log entries
as a `log` event, and a `state` event (a whole snapshot) every `every` seconds, or at once
when a node's state or pid changed (cheap to see: the manager's slots, no I/O), so a kill or
a button's effect shows within a tick. One look serves every page. A page that falls
`QUEUE` events behind is dropped (its browser reconnects and starts afresh) rather than
buffered without bound. With no page open it does nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from herdctl.dashboard.logfeed import LogFeed
from herdctl.dashboard.state import Snapshot

QUEUE = 64  # events a page may fall behind before it is dropped
TICK = 0.2  # seconds between looks for log lines and state changes
EVERY = 1.0  # seconds between state events when nothing changed

Stream = asyncio.Queue[bytes | None]  # SSE frames; None: the stream is over


def frame(event: str, data: object) -> bytes:
    """One server-sent event: its name and its data as one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Hub:
    """Looks at the herd while pages listen, and hands each page its events."""

    def __init__(
        self,
        look: Callable[[], Awaitable[Snapshot]],
        signature: Callable[[], object],
        logs: Callable[[], Mapping[str, Path]],
        *,
        log: Callable[[str], None] = lambda text: None,
        tick: float = TICK,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._look = look
        self._signature = signature
        self._logs = logs
        self._log = log
        self._tick = tick
        self._every = every
        self._clock = clock
        self._streams: set[Stream] = set()
        self._wanted = asyncio.Event()
        self._feed: LogFeed | None = None
        self._last: object = None
        self._next_state = 0.0
        self._last_error: str | None = None
        self.looks = 0  # snapshots taken for the streams (tests and figures)

    def subscribe(self) -> Stream:
        """A new page's stream; its first events are the caller's to send (a snapshot, the
        last log entries): every log line written from now on comes through the stream."""
        stream: Stream = asyncio.Queue(QUEUE)
        if not self._streams:  # follow the logs from here, not from when the last page left
            self._feed = LogFeed(self._logs())
        self._streams.add(stream)
        self._wanted.set()
        return stream

    def unsubscribe(self, stream: Stream) -> None:
        self._streams.discard(stream)

    @property
    def listeners(self) -> int:
        return len(self._streams)

    def close(self) -> None:
        """End every stream (the site is stopping)."""
        for stream in list(self._streams):
            self._end(stream)

    def _end(self, stream: Stream) -> None:
        self._streams.discard(stream)
        while not stream.empty():
            stream.get_nowait()
        stream.put_nowait(None)

    def publish(self, data: bytes) -> None:
        """Queue one frame for every page; a page too far behind is dropped."""
        for stream in list(self._streams):
            try:
                stream.put_nowait(data)
            except asyncio.QueueFull:
                self._end(stream)

    async def run(self) -> None:
        """Look every tick while any page listens; wait, doing nothing, while none does."""
        while True:
            if not self._streams:
                self._wanted.clear()
                await self._wanted.wait()
            try:
                await self.step()
            except Exception as e:  # one bad look must not end the stream for good
                self._error(f"{type(e).__name__}: {e}")
            await asyncio.sleep(self._tick)

    async def step(self) -> None:
        """One look: new log entries, then a snapshot if one is due or a node changed."""
        paths = self._logs()
        if self._feed is None:
            self._feed = LogFeed(paths)
        else:
            self._feed.retarget(paths)
        entries, skipped = self._feed.poll()
        if entries or skipped:
            self.publish(frame("log", {"entries": entries, "skipped": skipped}))
        now, signature = self._clock(), self._signature()
        if signature != self._last or now >= self._next_state:
            snapshot = await self._look()
            self.looks += 1
            self._last, self._next_state = signature, now + self._every
            self.publish(frame("state", snapshot))
        self._last_error = None

    def _error(self, text: str) -> None:
        if text != self._last_error:  # once per kind of failure, not once a tick
            self._log(f"DASHBOARD_ERROR error={text}")
        self._last_error = text
