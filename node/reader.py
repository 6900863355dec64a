"""What a client's connection and a neighbour's link share: lines read into a backlog, and
reading paused while that backlog waits or our writes do not drain."""

from __future__ import annotations

import asyncio

from node.ingest import LineBacklog
from node.protocol import LineSplitter


class LineReader(asyncio.Protocol):
    """A connection that reads lines into `_backlog` and works them off in `_work`, a
    share per event-loop turn.

    It reads only while its backlog is empty and the other side takes what we write:
    a peer that sends faster than we handle, or does not read what we answer, is held by
    TCP flow control rather than by our memory.
    """

    transport: asyncio.Transport | None
    splitter: LineSplitter

    def __init__(self, *, read_paused: bool = False, write_paused: bool = False) -> None:
        self._backlog = LineBacklog()  # lines read but not yet handled
        self._read_paused = read_paused
        self._write_paused = write_paused
        self._resume_scheduled = False

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (or no longer ours); nothing is read or written."""
        raise NotImplementedError

    def _work(self) -> None:
        """Handle backlog lines, up to this turn's share."""
        raise NotImplementedError

    def _take(self, data: bytes) -> None:
        """Put the lines `data` completes into the backlog, and work them off."""
        lines = self.splitter.feed(data)
        if lines[1]:
            self._backlog.add(lines)
            self._work()

    def _take_last(self) -> None:
        """The other side closed its own: a last line without LF is a line too."""
        last = self.splitter.feed_eof()
        if last is not None:
            self._backlog.add((last, 1))
            self._work()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._set_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._set_reading()

    def _set_reading(self) -> None:
        """Read only while the backlog is empty and our writes drain."""
        t = self.transport
        if t is None or self.closed:
            return
        paused = self._write_paused or bool(self._backlog)
        if paused != self._read_paused:
            self._read_paused = paused
            if paused:
                t.pause_reading()
            else:
                t.resume_reading()

    def _schedule_resume(self) -> None:
        """Go on with the backlog on a later loop turn, once, so others get theirs."""
        if not self._resume_scheduled:
            self._resume_scheduled = True
            asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        self._resume_scheduled = False
        if not self.closed:
            self._work()
