"""The inbound half of a link: a neighbour's connection once its handshake is done.

The client side (`node.client`) answers HELLO and AUTH like any line; after WELCOME it
hands the transport over to a `PeerConnection`, which from then on applies the neighbour's
CHANGELOCs (a backlog of nothing else as one block), floods what is new to our other
neighbours, notes its SYNCED, and exchanges PINGs. A malformed line drops the link (the
neighbour reconnects and resyncs). When the journal refuses a batch, the link is held, not
dropped: its records wait at the head of the backlog and are retried with backoff.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

from node.handshake import redact
from node.ingest import Batch, LineBacklog, take_changelocs
from node.logbook import show
from node.protocol import PING_LINE, LineSplitter, Ping, Synced, parse_line
from node.reader import LineReader

if TYPE_CHECKING:
    from node.peers import Peers
    from node.peers.host import PeerHost

PEER_LINES_PER_TURN = 8192  # per link per event-loop turn: the flood never queues behind clients


class PeerConnection(LineReader):
    """A neighbour's authenticated inbound link."""

    def __init__(
        self,
        host: PeerHost,
        peers: Peers,
        transport: asyncio.BaseTransport,
        *,
        peer: bytes,
        conn_id: int,
        where: str,
        splitter: LineSplitter,
        read_paused: bool,
        write_paused: bool,
    ) -> None:
        super().__init__(read_paused=read_paused, write_paused=write_paused)
        self.host = host
        self.peers = peers
        # uvloop's transports are not asyncio.Transport subclasses, but speak the same API.
        self._link = cast(asyncio.Transport, transport)
        self.transport = self._link  # LineReader's, typed optional (a client's is None at first)
        self.peer = peer
        self.id = conn_id
        self._where = where
        # A CHANGELOC is longer than the IAMAT it came from (time_received, server name).
        splitter.max_line = host.limits.max_line_bytes + 64 + max(map(len, host.known_servers))
        self.splitter = splitter
        self._batch = Batch()
        self._sift = False  # whether its blocks are sifted for copies first (take_changelocs)
        self._stalled: asyncio.TimerHandle | None = None  # a batch waits for the journal
        self._stall_delay = 0.0  # its current retry delay; 0 while the journal takes ours
        self._closed = False
        self._last_activity = time.monotonic()
        self.tally = host.counters.peer(peer.decode())

    @property
    def closed(self) -> bool:
        return self._closed

    def take_over(self, backlog: LineBacklog) -> None:
        """Take the connection over from the client side, after its WELCOME went out: the
        transport, and the lines read after AUTH; handle those, then read on."""
        self._link.set_protocol(self)
        self.host.log.event(
            f"PEER_IN_UP conn={self.id} peer={self.peer.decode()} from={self._where}"
        )
        self.peers.inbound_up(self.peer, self)
        self._backlog = backlog
        self._work()
        self._set_reading()

    # -- asyncio callbacks --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        splitter = self.splitter
        self._take(data)
        if splitter.overlong is not None and not self._closed:
            self.host.log.event(f"LINE_TOO_LONG conn={self.id} limit={splitter.max_line}")
            self.abort("line too long")

    def eof_received(self) -> bool:
        self._take_last()
        return False  # nothing to answer: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        self._closed = True
        reason = f" error={exc}" if exc else ""
        self.host.log.event(f"CONN_CLOSE conn={self.id} peer={self.peer.decode()}{reason}")
        self.peers.inbound_lost(self.peer, self)

    # -- the neighbour's lines ----------------------------------------------------------

    def _work(self) -> None:
        """Apply the neighbour's lines, logging one summary per batch rather than per line.

        A read of nothing but CHANGELOCs, which is what a neighbour sends between two
        PINGs, is taken as one block (`ingest.take_changelocs`). A link gets a bigger
        share of each turn than any one client, so the flood does not queue behind client
        traffic.
        """
        if self._stalled is not None or self._closed:
            return  # the journal refused our records: `_retry_stalled` goes on
        host = self.host
        host.settle_turn()  # our records are judged against the journal's state only
        store = host.store
        known = host.known_servers
        backlog = self._backlog
        budget = PEER_LINES_PER_TURN
        batch = self._batch
        batch.received = batch.applied = batch.duplicates = 0
        held_back = self.peers.held_back_from(self.peer)
        while backlog:
            if budget <= 0:
                self._schedule_resume()
                break
            taken = take_changelocs(backlog, budget, store, known, batch, held_back, self._sift)
            if taken:
                budget -= taken
                continue
            if not self._commit(batch):  # its events go before this line's
                return
            budget -= 1
            line = backlog.popleft()
            fields = line.split()
            if len(fields) == 6 and fields[0] == b"CHANGELOC":
                batch.received += 1  # a malformed one: counted, then it drops the link
            if not self._handle_line(line):
                backlog.clear()  # the link was dropped for a bad line
                break
        if not self._commit(batch):
            return
        if self._stall_delay:
            self._stall_delay = 0.0
            host.log.event(f"PEER_IN_RESUMED peer={self.peer.decode()} conn={self.id}")
        if batch.received:
            # A link whose records mostly came first by another way sends mostly copies.
            self._sift = batch.duplicates * 2 > batch.received
            tally = self.tally
            tally.records_received += batch.received
            tally.records_applied += batch.applied
            tally.records_duplicate += batch.duplicates
            host.log.event(
                f"PEER_IN peer={self.peer.decode()} changelocs={batch.received}"
                f" applied={batch.applied} duplicates={batch.duplicates}"
            )
        self._set_reading()

    def _handle_line(self, line: bytes) -> bool:
        """A line that is not a good CHANGELOC: PING, SYNCED, nothing, or a bad line that
        drops the link (the neighbour will reconnect and resync); False when dropped."""
        msg = parse_line(line, peer=True)
        if msg is None or isinstance(msg, Ping):
            return True  # its arrival already counted as activity
        if isinstance(msg, Synced):
            self.tally.syncs_received += 1
            self.host.log.event(f"PEER_SYNCED peer={self.peer.decode()} records={msg.count}")
            self.peers.inbound_synced(self.peer, self)
            return True
        self.host.log.event(
            f"PEER_BAD_LINE peer={self.peer.decode()} conn={self.id} {show(redact(line))}"
        )
        self.abort("bad peer line")
        return False

    def _commit(self, batch: Batch) -> bool:
        """Commit a batch; when the journal refuses it, put its records back at the head of
        the backlog and stop reading until a retry with backoff.

        The link stays up (we keep sending PINGs and do not time it out): dropping it would
        make the neighbour resend its whole state in a loop while the disk is full.
        """
        if self.host.commit(batch, None, self.peer):
            return True
        self._backlog.put_back(line[:-1] for line in batch.refused)
        records = len(batch.refused)
        batch.refused.clear()
        limits = self.host.limits
        first = not self._stall_delay
        self._stall_delay = min(
            limits.peer_backoff_max, self._stall_delay * 2 or limits.peer_backoff_initial
        )
        if first:  # once per episode: the journal logged the error itself
            self.host.log.event(
                f"PEER_IN_PAUSED peer={self.peer.decode()} conn={self.id} records={records}"
                " reason=journal write failed (retrying with backoff)"
            )
        self._stalled = asyncio.get_running_loop().call_later(
            self._stall_delay, self._retry_stalled
        )
        self._set_reading()
        return False

    def _retry_stalled(self) -> None:
        self._stalled = None
        self._work()

    # -- lifecycle --------------------------------------------------------------------

    def heartbeat(self, now: float, timeout: float) -> None:
        """Drop the link if it was silent too long, else send our PING."""
        if self._closed:
            return
        if self._stalled is not None:
            self._last_activity = now  # we stopped reading it, so its silence says nothing
        if now - self._last_activity > timeout:
            self.abort(f"peer silent for {timeout:g}s")
        else:
            self._link.write(PING_LINE)

    def abort(self, reason: str) -> None:
        """Drop the link now, logging why; `connection_lost` follows."""
        if self._closed:
            return
        self._closed = True
        self.host.log.event(f"CONN_CUT conn={self.id} from={self._where} reason={reason}")
        self._link.abort()
        self.peers.inbound_lost(self.peer, self)
