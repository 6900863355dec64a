"""A client's connection: lines in, replies out in the same order, as few writes as possible.

Each read's lines are answered in line order, a share per event-loop turn: runs of IAMATs
through `node.ingest` and `NodeServer.commit` (journal, then replies, flood and log), every
other line through `protocol.parse_line`. A neighbour's connection starts here too, and
after its HELLO and AUTH is handed over to `peers.PeerConnection`.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import time
from typing import cast

from node.admission import PROBATION_DEADLINE
from node.client_host import ClientHost
from node.handshake import HandshakeError, Responder, redact
from node.ingest import Batch, LineBacklog, take_iamats
from node.logbook import show
from node.peers import PeerConnection
from node.protocol import (
    LineSplitter,
    Message,
    PeerLine,
    WhatsAt,
    format_invalid,
    parse_line,
)
from node.reader import LineReader
from node.replies import ReplyQueue

_LF = b"\n"
_WHATSAT = b"WHATSAT"
_HANDSHAKE = (b"HELLO ", b"AUTH ")  # the only lines a connection on probation may send
MAX_PENDING_REPLIES = 1000  # per connection; beyond it the node stops reading that client
LINES_PER_TURN = 256  # per connection per event-loop turn, so one bulk client cannot stall others


def json_size(answer: bytes) -> bytes:
    """A WHATSAT answer's outcome for the log: `AT ...` LF, the JSON, LF LF."""
    return b"known=yes json_bytes=%d" % (len(answer) - answer.index(_LF) - 3)


class Phase(enum.Enum):
    """A client connection's life. It only moves down this list, and any phase may go
    straight to CLOSED:

    OPEN       reads, and answers every line in order.
    CLOSING    answers the lines it has, drops what it reads; entered on the client's EOF,
               an overlong line, a failed AUTH, a refusing journal, or shutdown. When the
               last reply is written: close (the client sent EOF) or half-close -> LINGERING.
    LINGERING  half-closed by us; waits for the client's EOF (at most `line_deadline`), so
               the client reads every reply before the connection goes.
    CLOSED     gone: closed, cut, refused, or handed over to the peer side.
    """

    OPEN = "open"
    CLOSING = "closing"
    LINGERING = "lingering"
    CLOSED = "closed"


_ENDING = (Phase.CLOSING, Phase.LINGERING)


class ClientConnection(LineReader):
    """One accepted TCP connection as a client's; a neighbour's, after its HELLO and AUTH,
    is handed over to `peers.PeerConnection`."""

    def __init__(self, node: ClientHost) -> None:
        super().__init__()
        self.node = node
        self.id = node.next_conn_id()
        self.transport: asyncio.Transport | None = None
        self.splitter = LineSplitter(node.limits.max_line_bytes)
        self._authenticated: bytes | None = None  # a neighbour's name, after a good AUTH
        self._responder: Responder | None = None
        self._queue = ReplyQueue()
        self._out: list[bytes] = []  # replies, one item each, written at the turn's end
        self._overlong_reply: bytes | None = None  # goes out after the backlog
        self._batch = Batch()  # reused by every read
        self._probation: asyncio.TimerHandle | None = None  # its deadline, while on probation
        self._over = ""  # the client cap it arrived over, while on probation
        self._phase = Phase.OPEN
        self._eof = False  # the client closed its side (input; `_phase` is ours)
        self._lingering_since = 0.0  # when LINGERING began
        self._finished: asyncio.Future[None] | None = None
        self._last_activity = time.monotonic()
        self._pending_since: float | None = None
        self._in_read = False  # in data_received: a WHATSAT waits for the turn's end
        self._holding = False  # listed in `TurnWrites.hold` for this turn
        self._deferred = 0  # IAMAT replies waiting for the turn's journal write
        self._where = "?"
        self._host = "?"
        self._counters = node.counters
        self._iamat_latency = node.counters.reply_latency["IAMAT"]
        self._whatsat_latency = node.counters.reply_latency["WHATSAT"]

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but speak the same API.
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple):
            self._where = f"{peername[0]}:{peername[1]}"
            self._host = str(peername[0])
        node = self.node
        self._counters.conns_accepted += 1
        admission = node.admission
        kind, evicted = admission.admit(self, self._host)
        node.connections.add(self)
        if evicted is not None:
            evicted.refuse(f"{evicted._over}, made room on probation for a newer connection")
        if kind == "probation":
            # Over a client cap, yet maybe a neighbour: only a handshake keeps it.
            self._over = admission.over(self._host)
            self._probation = asyncio.get_running_loop().call_later(
                PROBATION_DEADLINE, self.refuse, f"{self._over}, no handshake in time"
            )
            return
        node.log.event(f"CONN_OPEN conn={self.id} from={self._where}")

    @property
    def closed(self) -> bool:
        return self._phase is Phase.CLOSED

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        if self._phase is not Phase.OPEN:
            return  # answered its last line; read and drop the rest so close() is not a reset
        splitter = self.splitter
        self._in_read = True
        try:
            self._take(data)
        finally:
            self._in_read = False
        if splitter.overlong is not None:
            self._counters.count("other", "too_long")
            self.node.log.event(f"LINE_TOO_LONG conn={self.id} limit={splitter.max_line}")
            self._overlong_reply = format_invalid(splitter.overlong)
            self._close_after_replies()
            self._pending_since = None
            self._work()  # the lines before it are answered first
            self._write_ready()
            return
        self._pending_since = (
            (self._pending_since or self._last_activity) if splitter.pending else None
        )
        if self._queue:
            self._write_ready()

    def deliver(self, replies: list[bytes]) -> None:
        """The turn's journal write took these IAMATs (`node.turn_journal`)."""
        self._deferred -= len(replies)
        self._deliver(replies)
        if self._phase in _ENDING:
            self._write_ready()  # and close, when they were the last

    def journal_refused(self) -> None:
        """The turn's journal write refused these IAMATs (`node.turn_journal`)."""
        if not self._deferred:
            return  # told already: a second read of the same turn
        self._deferred = 0
        if self._phase is not Phase.CLOSED:
            self._journal_refused()

    def _deliver(self, replies: list[bytes]) -> None:
        """Replies to a run of IAMATs, in line order: written at the end of this turn when
        no reply before them is still waiting (a waiting client's whole read, the common
        case), else queued behind those."""
        # From the read they came in (reading stops while lines wait) to their replies.
        self._iamat_latency.observe(time.monotonic() - self._last_activity, len(replies))
        if self._queue:
            self._queue.extend(replies)
        elif self.transport is not None and self._phase is not Phase.CLOSED:
            self._gather(replies)

    def eof_received(self) -> bool:
        self._eof = True
        if self._phase is Phase.OPEN:
            self._take_last()
        self._close_after_replies()
        self._pending_since = None
        self._write_ready()
        return True  # keep our side open until every reply is written

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = Phase.CLOSED
        node = self.node
        dropped = self._queue.drop() + len(self._out) + self._deferred
        self._out.clear()
        if dropped:
            # Replies are logged as OUT when made; say which of them never went out.
            node.log.event(f"REPLIES_DROPPED conn={self.id} count={dropped}")
        if self._responder is not None and (waiting := self._responder.awaiting_auth) is not None:
            # A real node that rejects our proof hangs up without AUTH: say so here too.
            node.log.event(
                f"PEER_AUTH_FAILED conn={self.id} from={self._where} peer={show(waiting)}"
                " reason=closed before AUTH (does it have another secret?)"
            )
        if self._leave_node():
            reason = f" error={exc}" if exc else ""
            node.log.event(f"CONN_CLOSE conn={self.id}{reason}")
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    # -- lines ------------------------------------------------------------------------

    def _work(self) -> None:
        """Handle backlog lines while fewer than MAX_PENDING_REPLIES replies are pending.

        At most LINES_PER_TURN lines per loop turn: a client that sends a huge batch gets
        the rest handled on later turns, so other connections are served in between. Runs
        of valid IAMATs go through `ingest` as one batch; any other line is parsed alone.
        A WHATSAT met while its read is being taken stops the work until the turn's end
        (`answer_held`), so that it sees what the turn's other reads apply. Within a read,
        IAMATs wait for the turn's journal write (`node.turn_journal`), and so does any
        line after them; outside one, the turn is settled before a line is judged.
        """
        node = self.node
        if not self._in_read:
            node.settle_turn()  # these lines are judged against the journal's state only
        queue = self._queue
        backlog = self._backlog
        budget = LINES_PER_TURN
        batch = self._batch
        received_ns = node.clock_ns()  # the lines of one read arrived together
        first_answer = True
        while backlog and len(queue) + self._deferred < MAX_PENDING_REPLIES:
            if budget <= 0:
                self._schedule_resume()
                break
            if self._probation is not None and not backlog.head_starts_with(_HANDSHAKE):
                self.refuse(self._over)
                return
            if not backlog.head_starts_with(_WHATSAT):
                room = min(budget, MAX_PENDING_REPLIES - len(queue) - self._deferred)
                taken = take_iamats(
                    backlog, room, node.store, node.name_bytes, received_ns, self.id, batch
                )
            elif self._in_read:
                self._hold()
                return
            else:
                taken = 0  # a query: no IAMAT to try
            if taken:
                budget -= taken
                if self._in_read and node.waits_for_turn():  # with the turn's other reads
                    self._deferred += len(batch.replies)
                    node.defer(batch, self)
                elif not node.commit(batch, self._deliver, None):
                    self._journal_refused()
                    return
                continue
            if self._deferred:  # answered now, it would pass the ATs waiting for the journal
                self._hold()
                return
            budget -= 1
            line = backlog.popleft()
            msg = parse_line(line)
            if msg is None:
                continue
            reply = self._reply(msg, line)
            queue.append(reply)
            if first_answer and backlog and isinstance(reply, bytes) and reply[:3] == b"AT ":
                # A places answer (`AT ...`, then its JSON) is dear to make: it goes out
                # now, not after the read's other lines are answered too. At most one
                # extra write per read.
                first_answer = False
                self._write_head()
            if self._authenticated is not None:  # a good AUTH: the rest is the neighbour's
                self._hand_over(self._authenticated)
                return
        if not backlog and self._overlong_reply is not None:
            self._log_out(self._overlong_reply)
            queue.append(self._overlong_reply)
            self._overlong_reply = None
        if self._read_paused or backlog:  # else reading is on and stays on
            self._set_reading()

    def _hold(self) -> None:
        """Leave the backlog, a WHATSAT at its head, to the turn's end. Reading is not
        paused for that, as the turn ends before the loop polls again; only a second read in
        the same turn (uvloop reads a busy socket several times per poll) pauses it, so a
        client that streams queries is held by flow control, not by our memory."""
        if self._holding:
            self._set_reading()
            return
        self._holding = True
        self.node.turn_writes.hold(self)

    def answer_held(self) -> None:
        """The turn's end: answer the lines held since a WHATSAT, with every record that
        the turn's reads applied in the store."""
        self._holding = False
        if not self.closed:
            self._work()
            self._write_ready()

    def _reply(self, msg: Message, line: bytes) -> bytes | asyncio.Task[bytes]:
        """The reply to a line that is not an IAMAT, logged: a WHATSAT as one event when
        its answer is made, any other line as `IN` and its reply as `OUT`."""
        if isinstance(msg, WhatsAt):
            return self._whatsat(msg, line)
        self.node.log.event(f"IN conn={self.id} {show(redact(line))}")  # no nonce or proof
        if isinstance(msg, PeerLine):
            reply = self._handshake(msg, line)
        else:
            self._counters.count_invalid(line)
            reply = format_invalid(line)
        self._log_out(reply)
        return reply

    def _whatsat(self, msg: WhatsAt, line: bytes) -> bytes | asyncio.Task[bytes]:
        node = self.node
        record = node.store.get(msg.client)
        if record is None:
            self._counters.count("WHATSAT", "unknown_client")
            self._log_whatsat(line, b"known=no")
            return format_invalid(line)
        self._counters.count("WHATSAT", "answered")
        now = node.whatsat_now(record, msg)
        if now is not None:
            # Counted from the read, which for a held query was earlier in the turn.
            self._whatsat_latency.observe(time.monotonic() - self._last_activity)
            self._log_whatsat(line, json_size(now))
            return now
        task = asyncio.get_running_loop().create_task(node.whatsat(record, msg))
        task.add_done_callback(functools.partial(self._whatsat_done, line, self._last_activity))
        return task

    def _log_whatsat(self, line: bytes, outcome: bytes) -> None:
        # One event per exchange, made of the line's own fields as bytes: a poller's
        # WHATSATs are most of a busy node's log, and IN plus OUT cost twice this.
        _, client, radius, bound = line.split()
        self.node.log.raw_events(
            [
                b"WHATSAT conn=%d client=%s radius=%s bound=%s %s"
                % (self.id, client, radius, bound, outcome)
            ]
        )

    def _handshake(self, msg: PeerLine, line: bytes) -> bytes:
        node = self.node
        if self._responder is None:
            self._responder = Responder(node.secret, node.name_bytes, node.neighbours)
        kind = msg.keyword.decode()
        try:
            if msg.keyword == b"HELLO":
                reply = self._responder.on_hello(msg.fields)
                self._counters.count(kind, "answered")
                return reply
            reply = self._responder.on_auth(msg.fields)
        except HandshakeError as e:
            self._counters.count(kind, "failed")
            node.log.event(f"PEER_AUTH_FAILED conn={self.id} from={self._where} reason={e}")
            # A failed AUTH ends the conversation; so does any failure over a client cap.
            if msg.keyword == b"AUTH" or self._probation is not None:
                self._backlog.clear()  # no further line is handled
                self._close_after_replies()
            return format_invalid(line)
        self._authenticated = self._responder.peer
        self._counters.count(kind, "answered")
        return reply

    def _hand_over(self, peer: bytes) -> None:
        """After WELCOME the connection is a neighbour's link: write what is answered, then
        give the transport, and the lines read after AUTH, to the peer side."""
        self._write_ready()  # WELCOME goes out first
        self.write_out()
        transport = self.transport
        assert transport is not None
        self._phase = Phase.CLOSED  # as a client connection, this one is done
        self._queue.drop()
        self._leave_node()  # a neighbour: no client cap counts it
        link = PeerConnection(
            self.node,
            self.node.peers,
            transport,
            peer=peer,
            conn_id=self.id,
            where=self._where,
            splitter=self.splitter,
            read_paused=self._read_paused,
            write_paused=self._write_paused,
        )
        link.take_over(self._backlog)
        self._backlog = LineBacklog()  # the lines read after AUTH are the link's now

    # -- writing ----------------------------------------------------------------------

    def _whatsat_done(self, line: bytes, read_at: float, task: asyncio.Task[bytes]) -> None:
        if task.cancelled():  # the client went: REPLIES_DROPPED counts it
            self._log_whatsat(line, b"known=yes cancelled=yes")
        elif task.exception() is None:
            self._whatsat_latency.observe(time.monotonic() - read_at)
            self._log_whatsat(line, json_size(task.result()))
        self._write_ready()

    def _log_out(self, reply: bytes) -> None:
        # One line: a `? ...` or a handshake reply (a WHATSAT's answer is `_log_whatsat`'s).
        # A handshake reply keeps its names only: a nonce or a proof in a log would let its
        # readers guess the secret offline.
        self.node.log.event(f"OUT conn={self.id} {show(redact(reply.rstrip(_LF)))}")

    def _gather(self, replies: list[bytes]) -> None:
        """Write `replies` at the end of this turn, with whatever else it gave us to write
        (see `node.turn_writes`)."""
        out = self._out
        if not out:
            self.node.turn_writes.add(self)
        out.extend(replies)

    def write_out(self) -> None:
        """Write what this turn gathered, in one write."""
        out = self._out
        transport = self.transport
        if not out or transport is None or self._phase is Phase.CLOSED:
            return
        if transport.is_closing():
            # Reset by the client this very turn, before connection_lost (which counts
            # these as dropped); on uvloop a write now would raise.
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        transport.write(data)

    def _write_head(self) -> None:
        """Write the replies ready at the head of the queue now, while lines still wait."""
        ready = self._queue.take_ready()
        if ready and self.transport is not None:
            self._gather(ready)
            self.write_out()

    def _write_ready(self) -> None:
        """Write every reply at the head of the queue that is ready, in one write."""
        transport = self.transport
        if transport is None or self._phase is Phase.CLOSED:
            return
        queue = self._queue
        ready = queue.take_ready()
        if self._backlog and len(queue) < MAX_PENDING_REPLIES:
            self._schedule_resume()  # room for more replies: handle the lines held back
        if ready:
            # Now, with what the turn gathered before them: only runs of IAMAT replies wait
            # for the turn's end. A WHATSAT's client is polling, and its next poll may be
            # the one that finds what this turn just applied.
            self._gather(ready)
            self.write_out()
        if (
            not queue
            and not self._backlog
            and not self._deferred
            and self._overlong_reply is None
            and self._phase in _ENDING
        ):
            self.write_out()  # before the close
            if self._eof:
                if not transport.is_closing():  # once: answer_held and a _resume both come here
                    transport.close()  # connection_lost follows
            elif self._phase is Phase.CLOSING:
                # Half-close: the client still reads every reply, then sends its EOF.
                self._phase = Phase.LINGERING
                self._lingering_since = time.monotonic()
                transport.write_eof()

    def _resume(self) -> None:
        super()._resume()
        self._write_ready()

    def _journal_refused(self) -> None:
        """The journal could not take this client's IAMATs: they get no AT. The replies to
        the lines before them still go out, then the connection closes; the lines after
        them are not handled. The client may reconnect and retry."""
        self._counters.conns_cut += 1
        error = self.node.journal_error()
        why = f" ({error})" if error is not None else ""
        self.node.log.event(
            f"CONN_CUT conn={self.id} from={self._where} reason=journal write failed{why},"
            f" {len(self._backlog)} later lines unanswered"
        )
        self._backlog.clear()
        self._overlong_reply = None
        self._close_after_replies()
        self._pending_since = None
        self._set_reading()
        self._write_ready()

    # -- lifecycle --------------------------------------------------------------------

    def check_deadlines(self, now: float, line_deadline: float, idle_timeout: float) -> None:
        """Cut off a client holding a half-sent line too long, or idle past the timeout."""
        if self._phase is Phase.CLOSED:
            return
        if self._phase is Phase.LINGERING and now - self._lingering_since > line_deadline:
            self.abort("no EOF after the last reply")
            return
        if self._pending_since is not None and now - self._pending_since > line_deadline:
            self.abort(f"line_deadline({line_deadline:g}s)")
        elif idle_timeout > 0 and not self._queue and now - self._last_activity > idle_timeout:
            self.abort(f"idle_timeout({idle_timeout:g}s)")

    def refuse(self, reason: str) -> None:
        """Refuse a connection over a client cap: logged (rate-limited), then reset."""
        if self._phase is Phase.CLOSED or self.transport is None:
            return
        self._counters.conns_refused += 1
        self.node.refusals.event(
            "CONN_REFUSED", f"CONN_REFUSED conn={self.id} from={self._where} reason={reason}"
        )
        self._phase = Phase.CLOSED
        self._leave_node()
        self.transport.abort()

    def abort(self, reason: str) -> None:
        """Drop the connection now, logging why."""
        if self._phase is Phase.CLOSED or self.transport is None:
            return
        self._phase = Phase.CLOSED
        self._counters.conns_cut += 1
        self.node.log.event(f"CONN_CUT conn={self.id} from={self._where} reason={reason}")
        self.transport.abort()

    def _leave_node(self) -> bool:
        """Give back this connection's slot (and its probation deadline); True when the
        node still counted it among its connections."""
        if self._probation is not None:
            self._probation.cancel()
            self._probation = None
        node = self.node
        node.admission.release(self)
        if self in node.connections:
            node.connections.discard(self)
            return True
        return False

    def _close_after_replies(self) -> None:
        """OPEN -> CLOSING: answer what was read, read nothing more, then close."""
        if self._phase is Phase.OPEN:
            self._phase = Phase.CLOSING

    def finish(self) -> asyncio.Future[None]:
        """Close once the queued replies are written; resolves when the connection is gone."""
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_future()
        if self._phase is Phase.CLOSED or self.transport is None:
            if not self._finished.done():
                self._finished.set_result(None)
            return self._finished
        self._close_after_replies()
        self._set_reading()
        self._write_ready()
        return self._finished
