"""The outbound half of a link: connect, handshake, stream the whole state, then flood;
reconnect with backoff.

When a link comes up the sender first streams its whole state, so a node that was down or
cut off catches up without any client resending.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from node.handshake import HandshakeError, Initiator, redact
from node.logbook import show
from node.protocol import CHANGELOC_LINE, PING_LINE, format_synced

if TYPE_CHECKING:
    from node.config import NodeSpec
    from node.peers.host import PeerHost

CONNECT_TIMEOUT = 3.0
HANDSHAKE_TIMEOUT = 5.0
SYNC_CHUNK = 5000  # records per write while streaming the whole state
# A link whose peer stops reading is dropped rather than buffered without bound; the full
# sync on reconnect makes up for whatever was in the buffer.
MAX_LINK_BUFFER = 64 * 1024 * 1024
# An update for a link that has not written for a whole FLOOD_WINDOW is written at once,
# inside the turn that brought it: no timer and no later turn between a lone update and the
# wire. One after a shorter pause (at least FLOOD_BURST_GAP: a load with a hiccup) goes at the
# end of this turn, so the turn's other reads are answered before the write that wakes the
# neighbour. One for a link that wrote less than FLOOD_BURST_GAP ago is part of a burst: it
# waits out a window after that write and shares the next one. The window grows by
# FLOOD_WINDOW_STEP with each write of the burst, up to FLOOD_WINDOW: a short burst goes
# out within a fraction of a millisecond, a continuous load writes once per FLOOD_WINDOW,
# which spares every node downstream a wakeup and a read per update. A write after a pause
# ends a burst that had not reached the whole window: a load that comes in batches, with
# pauses between them, writes after each batch rather than a window later. A burst that had
# reached it (a continuous load) only loses a step, so one hiccup does not cost it its
# window; a second pause in a row ends it too.
FLOOD_BURST_GAP = 0.00025  # seconds
FLOOD_WINDOW_STEP = 0.00025  # seconds
FLOOD_WINDOW = 0.002  # seconds
_WHOLE_WINDOW = round(FLOOD_WINDOW / FLOOD_WINDOW_STEP)  # a burst's writes to reach it
# How long a copy held back from a neighbour waits for that neighbour's own copy (see
# `Peers.hold_back_when_from`): longer than a busy neighbour's flood window, so that its
# copy usually comes first; if it does not (its link from the sender is down), ours goes.
HOLD_BACK = 0.005  # seconds


class PeerLink:
    """The outbound link from this node to one neighbour."""

    def __init__(self, node: PeerHost, spec: NodeSpec) -> None:
        self.node = node
        self.spec = spec
        self.name = spec.name
        self.name_bytes = spec.name.encode()
        self._writer: asyncio.StreamWriter | None = None
        self._outbox: list[bytes] = []
        self._send_scheduled = False
        # The flood window's clock: time.monotonic, not loop.time (uvloop's clock moves in
        # whole milliseconds); the tests put a clock of their own here.
        self.monotonic: Callable[[], float] = time.monotonic
        self._last_write = 0.0  # self.monotonic() of the last flood write
        self._burst_writes = 0  # the burst's window in FLOOD_WINDOW_STEPs (capped when used)
        self.held_back: dict[bytes, None] = {}  # flood lines the neighbour may send us first
        self._held_added = 0  # lines held back since the last release
        self._release: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.up = False
        self._stopping = False
        self.since = 0.0  # when `up` last changed (POSIX time)
        self.tally = node.counters.peer(spec.name)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link-{self.name}")

    async def stop(self) -> None:
        self._stopping = True  # belt and braces: a lost cancellation still ends the loop
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close_writer()

    def wake(self, *, resync: bool = False) -> None:
        """Reconnect now instead of waiting out the backoff (the neighbour just came back)."""
        self._wake.set()
        if resync and self.up and self._writer is not None:
            self._writer.transport.abort()  # the neighbour lost its state: send ours again

    def send(self, lines: bytes, records: int, read_at: float | None = None) -> None:
        """Send `records` lines to the neighbour: at once when the link is idle, at the end
        of this turn after a short pause, else with the rest of the burst when its window
        ends. The pause is counted to `read_at` when given: the records of a turn's client
        reads are flooded at its end (`node.turn_journal`), and measured from there a burst
        looked like pauses, each written at once, which woke the neighbours more often
        under 8x1."""
        if not self.up:
            return  # the full sync when the link comes back covers it
        self.tally.records_sent += records
        self._outbox.append(lines)
        if self._send_scheduled:
            return
        since = max(0.0, (self.monotonic() if read_at is None else read_at) - self._last_write)
        if since >= FLOOD_WINDOW:  # an idle link: at once, and any burst is over
            self._burst_writes = 0
            # The replies this turn gathered go first: the write below wakes the neighbour,
            # which may take our core before the turn ends.
            try:
                self.node.turn_writes.write_waiting()
            finally:  # a client's failing write must not cost the neighbour these records
                self._send_outbox()
            return
        self._send_scheduled = True
        loop = asyncio.get_running_loop()
        if since >= FLOOD_BURST_GAP:  # a pause within a load: with the rest of this turn
            if self._burst_writes >= _WHOLE_WINDOW:
                self._burst_writes -= 1  # a continuous load's hiccup: a step shorter
            else:
                self._burst_writes = 0  # a batch's burst is over
            loop.call_soon(self._send_outbox)
            return
        self._burst_writes += 1
        window = min(FLOOD_WINDOW, self._burst_writes * FLOOD_WINDOW_STEP)
        loop.call_later(window - since, self._send_outbox)

    def hold_back(self, lines: list[bytes]) -> None:
        """Send `lines` after HOLD_BACK, but for those the neighbour sends us meanwhile
        (`take_changelocs` takes them out of `held_back`)."""
        if not self.up:
            return  # the full sync when the link comes back covers it
        held = self.held_back
        before = len(held)
        if self._release is None:  # one timer at a time: lines held later share its release
            loop = asyncio.get_running_loop()
            self._release = loop.call_later(HOLD_BACK, self._release_held)
        held.update(dict.fromkeys(lines))
        self._held_added += len(held) - before

    def _release_held(self) -> None:
        self._release = None
        lines = list(self.held_back)
        self.held_back.clear()
        added, self._held_added = self._held_added, 0
        if not self.up:
            return  # the full sync when the link comes back covers them
        self.tally.records_spared += added - len(lines)
        if lines:
            self.send(b"".join(lines), len(lines))

    def _send_outbox(self) -> None:
        # Records that this turn's client reads left for its end were read before this write
        # and go with it (`node.turn_journal`), journalled first. Left for the turn's end,
        # which runs after the loop's timers, they would start a new burst right after it:
        # at 20,000/s the link then wrote once per whole window, and the propagation p50
        # was 1.7 times as long.
        self.node.settle_turn()
        self._send_scheduled = False
        self._last_write = self.monotonic()
        writer = self._writer
        # Closing: the neighbour reset the link this very turn, before our reader saw it (on
        # uvloop a write now raises). The full sync when the link comes back covers it.
        if not self._outbox or writer is None or writer.transport.is_closing():
            self._outbox.clear()
            return
        data = b"".join(self._outbox)
        self._outbox.clear()
        writer.write(data)
        if writer.transport.get_write_buffer_size() > MAX_LINK_BUFFER:
            self.node.log.event(f"LINK_OVERFLOW peer={self.name} buffered>{MAX_LINK_BUFFER}")
            writer.transport.abort()

    async def _run(self) -> None:
        limits = self.node.config.limits
        log = self.node.log
        delay = limits.peer_backoff_initial
        while not self._stopping:
            self._wake.clear()
            reason = "closed"
            try:
                await self._connect_and_serve()
            except HandshakeError as e:
                reason = f"handshake: {e}"
            except Exception as e:  # any failure drops the link; only cancellation ends it
                reason = str(e) or type(e).__name__
            finally:
                was_up = self.up
                self.up = False
                if was_up:
                    # Only a link that stayed up a while earns a fast reconnect; one that the
                    # neighbour drops at once must not resync the whole state in a tight loop.
                    if time.time() - self.since >= limits.peer_backoff_max:
                        delay = limits.peer_backoff_initial
                    self.since = time.time()
                self._close_writer()
            if was_up:
                self.tally.link_downs += 1
                log.event(f"LINK_DOWN peer={self.name} reason={reason}")
            else:
                log.event(f"LINK_FAILED peer={self.name} retry_in={delay:.2f}s reason={reason}")
            # Jitter keeps five restarted nodes from reconnecting in lockstep.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay * random.uniform(0.5, 1.0)):
                    await self._wake.wait()
            delay = min(delay * 2, limits.peer_backoff_max)

    async def _connect_and_serve(self) -> None:
        node = self.node
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                self.spec.host, self.spec.port, limit=node.limits.max_line_bytes + 2
            )
        self._writer = writer
        hs = Initiator(node.secret, node.name_bytes, self.name_bytes)
        writer.write(hs.hello())
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            challenge = await reader.readline()
            writer.write(hs.on_challenge(_strip(challenge)))
            welcome = await reader.readline()
            hs.on_welcome(_strip(welcome))
        self.up = True
        self.since = time.time()
        node.log.event(f"LINK_UP peer={self.name} addr={self.spec.host}:{self.spec.port}")
        pinger = asyncio.get_running_loop().create_task(self._ping(writer))
        try:
            await self._send_state(writer)
            await self._listen(reader)
        finally:
            pinger.cancel()

    async def _ping(self, writer: asyncio.StreamWriter) -> None:
        """Tell the neighbour we are alive, so it can tell a dead link from a quiet one."""
        interval = self.node.limits.peer_heartbeat
        while True:
            await asyncio.sleep(interval)
            writer.write(PING_LINE)

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        """After WELCOME the neighbour sends only PINGs; silence past the timeout is a dead link."""
        timeout = self.node.limits.peer_timeout
        while True:
            try:
                async with asyncio.timeout(timeout):
                    line = await reader.readline()
            except TimeoutError:
                raise ConnectionError(f"peer silent for {timeout:g}s") from None
            if not line:
                return  # closed
            if line != PING_LINE:
                raise ConnectionError(f"unexpected data from peer: {show(redact(line)[:80])}")

    async def _send_state(self, writer: asyncio.StreamWriter) -> None:
        records = self.node.sync_state()
        for i in range(0, len(records), SYNC_CHUNK):
            chunk = records[i : i + SYNC_CHUNK]
            writer.write(b"".join([CHANGELOC_LINE % record for record in chunk]))
            await writer.drain()
        writer.write(format_synced(len(records)))
        self.tally.syncs_sent += 1
        self.tally.sync_records_sent += len(records)
        self.node.log.event(f"LINK_SYNC_SENT peer={self.name} records={len(records)}")

    def buffered(self) -> int:
        """Bytes written to the link but not yet sent: how far the neighbour lags behind us."""
        writer = self._writer
        if writer is None or not self.up:
            return 0
        return writer.transport.get_write_buffer_size() + sum(map(len, self._outbox))

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        self._outbox.clear()
        self.held_back.clear()  # as the outbox: the full sync on reconnect covers them
        self._held_added = 0
        if self._release is not None:
            self._release.cancel()
            self._release = None
        if writer is not None:
            writer.transport.abort()


def _strip(line: bytes) -> bytes:
    if not line.endswith(b"\n"):
        raise HandshakeError("connection closed during handshake")
    return line.rstrip(b"\r\n")
