"""The asyncio layer of one node: listener, connections, dispatch. Thin by design.

Parsing and ordering live in `protocol` and `store`; outbound links in `peers`. A connection
turns each read into lines, each line into at most one reply, and writes the replies in the
order the lines came, batched into as few writes as possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import itertools
import json
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import psutil

from node.admission import (
    PROBATION_DEADLINE,
    Admission,
    client_cap,
    raise_fd_limit,
    reserve_for,
)
from node.config import HerdConfig
from node.handshake import HandshakeError, Responder, redact
from node.ingest import (
    Batch,
    take_iamat_block,
    take_iamats,
)
from node.journal import JournalLike, NullJournal, errno_name
from node.logbook import LogBook, RateLimited, show
from node.peers import PeerConnection, Peers
from node.places.base import PlacesProvider, failure_response
from node.protocol import (
    LineSplitter,
    Message,
    PeerLine,
    WhatsAt,
    format_invalid,
    parse_line,
    parse_location,
)
from node.status import StatusFile, status_path
from node.store import (
    ClientStore,
    Packed,
    Record,
)

_LF = b"\n"
_HANDSHAKE = (b"HELLO ", b"AUTH ")  # the only lines a connection on probation may send
SWEEP_INTERVAL = 1.0  # seconds between checks of line deadlines and idle connections
SWEEP_SLICE = 100  # connections checked per loop turn during a sweep: a 50 µs pause at most
SHUTDOWN_GRACE = 3.0  # seconds in-flight replies get to finish at shutdown
MAX_PENDING_REPLIES = 1000  # per connection; beyond it the node stops reading that client
LINES_PER_TURN = 256  # per connection per event-loop turn, so one bulk client cannot stall others


class StartupError(Exception):
    """The node cannot start (port in use, bad bind address); the message says why."""


def port_holder(port: int) -> str:
    """` (held by pid N: NAME)` for the process listening on `port`, where psutil can tell."""
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    return ""
                return f" (held by pid {conn.pid}: {psutil.Process(conn.pid).name()})"
    except (psutil.Error, OSError):
        pass
    return ""


def format_places(response: dict[str, Any]) -> bytes:
    """A Nearby Search JSON body as Google prints it: 3-space indent, `" : "` separators."""
    return json.dumps(response, indent=3, separators=(",", " : "), ensure_ascii=False).encode()


class NodeServer:
    """One herd node: its client store, its listener, its links, its log."""

    def __init__(
        self,
        config: HerdConfig,
        name: str,
        *,
        secret: bytes,
        places: PlacesProvider,
        log: LogBook,
        journal: JournalLike | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.spec = config.node(name)
        self.name = name
        self.name_bytes = name.encode()
        self.limits = config.limits
        self.store = ClientStore()
        self.journal: JournalLike = journal or NullJournal()
        self.places = places
        self.log = log
        self.secret = secret
        self.clock_ns = clock_ns
        self.neighbours = frozenset(n.encode() for n in config.neighbours(name))
        self.known_servers = frozenset(n.encode() for n in config.nodes)
        self.peers = Peers(self)
        self.connections: set[ClientConnection] = set()
        self.admission: Admission[ClientConnection] = Admission(
            self.limits.max_connections,
            self.limits.max_connections_total,
            reserve_for(len(self.neighbours)),
        )
        self.refusals = RateLimited(log.event)  # a connection flood: ten lines a second
        self.loop_errors = RateLimited(log.event, burst=1)  # EMFILE on accept, and the like
        self._conn_ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port: int = self.spec.listen_port
        self.started_at = time.time()
        self.state = "starting"
        self.status_file = StatusFile(status_path(config.run_dir, name), self.status)

    async def start(self, *, port: int | None = None) -> None:
        """Listen (on `port` when given, 0 for any) and bring the links up."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
        want = self.spec.listen_port if port is None else port
        fd_limit = raise_fd_limit()
        admission = self.admission
        configured = self.limits.max_connections_total
        admission.total = client_cap(configured, fd_limit, admission.reserve)
        lowered = f" (lowered from {configured} to stay under the fd limit)"
        self.log.event(
            f"LIMITS nofile={fd_limit} max_connections_total={admission.total}"
            f"{lowered if admission.total < configured else ''}"
            f" max_connections={admission.per_host} neighbour_reserve={admission.reserve}"
        )
        await self.places.start()
        try:
            self._server = await loop.create_server(
                lambda: ClientConnection(self),
                self.spec.bind,
                want,
                reuse_address=True,
                backlog=1024,
            )
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"port {want} on {self.spec.bind} is already in use"
                    f"{port_holder(want)}"
                ) from None
            raise StartupError(
                f"cannot listen on {self.spec.bind}:{want}: {e.strerror}"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        neighbours = ",".join(self.config.neighbours(self.name))
        self.log.event(
            f"START node={self.name} listen={self.spec.bind}:{self.port} "
            f"places={self.places.name} neighbours={neighbours}"
        )
        self._sweeper = loop.create_task(self._sweep())
        self.peers.start()
        self.state = "running"
        self.status_file.start()

    async def stop(self) -> None:
        """Shut down in order: stop listening, finish replies, close links, bounded waits."""
        self.log.event(f"STOPPING node={self.name}")
        self.state = "stopping"
        self.status_file.write_now()
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        waits = [c.finish() for c in list(self.connections)]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=SHUTDOWN_GRACE)
            for fut in pending:
                fut.cancel()
        for conn in list(self.connections):
            conn.abort("shutdown")
        await self.peers.stop()
        await self.places.close()
        await self.status_file.stop()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), SHUTDOWN_GRACE)
        asyncio.get_running_loop().set_exception_handler(None)
        self.log.event(f"STOPPED node={self.name}")

    # -- dispatch ---------------------------------------------------------------------

    def commit(
        self, batch: Batch, deliver: Callable[[list[bytes]], object] | None, origin: bytes | None
    ) -> bool:
        """Make a batch's effects happen, all of them or none, in the one safe order:
        journal, then replies (handed to `deliver`), then the flood (to every neighbour but
        `origin`), then the log. The only place a batch is drained.

        When the journal cannot take the batch, nothing of it is acknowledged, flooded or
        kept: the store is put back as it was, and False says so; the batch then holds the
        records it would have kept in `refused` (a neighbour's link applies them again
        later), and the journal has logged the failure, once per episode.
        """
        if batch.entries:
            try:
                self.journal.write(batch.entries)
            except OSError:
                self.store.restore(batch.undo)
                batch.refuse()
                return False
            batch.entries.clear()
            batch.undo.clear()
        if batch.replies:
            if deliver is not None:
                deliver(batch.replies)
            batch.replies.clear()
        if batch.flood:
            self.peers.flood(b"".join(batch.flood), origin)
            batch.flood.clear()
        if batch.log:
            self.log.raw_events(batch.log)
            batch.log.clear()
        if batch.unknown:
            for server, client in batch.unknown:
                self._unknown_server(origin or b"?", server, client)
            batch.unknown.clear()
        return True

    def _unknown_server(self, sender: bytes, server: bytes, client: bytes) -> None:
        # A neighbour with a different topology: skip the record, keep the link.
        self.log.event(
            f"PEER_UNKNOWN_SERVER peer={sender.decode()} server={show(server)}"
            f" client={show(client)}"
        )

    async def whatsat(self, record: Record, msg: WhatsAt) -> bytes:
        """The stored AT line, then the places near the client as Nearby Search JSON."""
        point = parse_location(record.location)
        assert point is not None  # stored records were validated on the way in
        try:
            response = await self.places.nearby(point[0], point[1], msg.radius_km * 1000, msg.bound)
            results = response.get("results")
            if isinstance(results, list) and len(results) > msg.bound:
                response = {**response, "results": results[: msg.bound]}
            body = format_places(response)
        except Exception as e:  # a provider bug must still produce a reply, never a hang
            self.log.event(f"PLACES_ERROR provider={self.places.name} error={type(e).__name__}")
            body = format_places(failure_response("UNKNOWN_ERROR", "places provider failed"))
        return record.at_line() + body + b"\n\n"

    def status(self) -> dict[str, Any]:
        """What a supervisor shows: identity, clients known, each link's state, and the
        error of a journal that refuses writes (None while it takes them)."""
        failing = self.journal.failing
        return {
            "name": self.name,
            "pid": os.getpid(),
            "host": self.spec.host,
            "port": self.port,
            "state": self.state,
            "started_at": self.started_at,
            "clients": len(self.store),
            "connections": len(self.connections),
            "links": self.peers.status(),
            "journal_error": None if failing is None else errno_name(failing),
        }

    def sync_state(self) -> list[Packed]:
        """Every record we hold, packed, for a neighbour that just linked up."""
        return self.store.packed()

    # -- housekeeping -----------------------------------------------------------------

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """What the event loop could not handle (accept() out of fds, a callback's error):
        into our log, one line a second at most with a count of the rest, never a flood on
        stderr."""
        message = str(context.get("message", "?"))
        error = context.get("exception")
        self.loop_errors.event(
            "LOOP_ERROR", f"LOOP_ERROR message={message!r} error={error!r}"
        )

    def next_conn_id(self) -> int:
        return next(self._conn_ids)

    async def _sweep(self) -> None:
        limits = self.limits
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL, limits.peer_heartbeat))
            now = time.monotonic()
            self.refusals.flush()
            self.loop_errors.flush()
            self.peers.heartbeat(now, limits.peer_timeout)
            for i, conn in enumerate(list(self.connections), 1):
                conn.check_deadlines(now, limits.line_deadline, limits.idle_timeout)
                if i % SWEEP_SLICE == 0:
                    await asyncio.sleep(0)  # ten thousand idle clients: let the busy ones in


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


class ClientConnection(asyncio.Protocol):
    """One accepted TCP connection as a client's; a neighbour's, after its HELLO and AUTH,
    is handed over to `peers.PeerConnection`."""

    def __init__(self, node: NodeServer) -> None:
        self.node = node
        self.id = node.next_conn_id()
        self.transport: asyncio.Transport | None = None
        self.splitter = LineSplitter(node.limits.max_line_bytes)
        self._authenticated: bytes | None = None  # a neighbour's name, after a good AUTH
        self._responder: Responder | None = None
        # Replies in line order: bytes ready to send, or a task still computing one.
        self._queue: deque[bytes | asyncio.Task[bytes]] = deque()
        self._tasks = 0  # how many of the queued replies are tasks
        self._backlog: deque[bytes] = deque()  # lines read but not yet handled
        self._resume_scheduled = False
        self._overlong_reply: bytes | None = None  # goes out after the backlog
        self._write_paused = False
        self._read_paused = False
        self._batch = Batch()  # reused by every read
        self._probation: asyncio.TimerHandle | None = None  # its deadline, while on probation
        self._over = ""  # the client cap it arrived over, while on probation
        self._phase = Phase.OPEN
        self._eof = False  # the client closed its side (input; `_phase` is ours)
        self._lingering_since = 0.0  # when LINGERING began
        self._finished: asyncio.Future[None] | None = None
        self._last_activity = time.monotonic()
        self._pending_since: float | None = None
        self._where = "?"
        self._host = "?"

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but speak the same API.
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple):
            self._where = f"{peername[0]}:{peername[1]}"
            self._host = str(peername[0])
        node = self.node
        admission = node.admission
        kind, evicted = admission.admit(self, self._host)
        node.connections.add(self)
        if evicted is not None:
            evicted.refuse(f"{evicted._over}, made room on probation for a newer connection")
        if kind == "probation":
            # Over a client cap, yet maybe a neighbour: only a handshake keeps it.
            if admission.by_host[self._host] >= admission.per_host:
                self._over = f"max_connections({admission.per_host})"
            else:
                self._over = f"max_connections_total({admission.total})"
            self._probation = asyncio.get_running_loop().call_later(
                PROBATION_DEADLINE, self.refuse, f"{self._over}, no handshake in time"
            )
            return
        node.log.event(f"CONN_OPEN conn={self.id} from={self._where}")

    def data_received(self, data: bytes) -> None:
        if self._plain_read(data):
            return
        self._last_activity = time.monotonic()
        if self._phase is not Phase.OPEN:
            return  # answered its last line; read and drop the rest so close() is not a reset
        splitter = self.splitter
        lines = splitter.feed(data)
        if lines:
            self._handle_lines(lines)
        if splitter.overlong is not None:
            self.node.log.event(f"LINE_TOO_LONG conn={self.id} limit={splitter.max_line}")
            self._overlong_reply = format_invalid(splitter.overlong)
            self._close_after_replies()
            self._pending_since = None
            self._work()  # the lines before it are answered first
            self._flush()
            return
        self._pending_since = (
            (self._pending_since or self._last_activity) if splitter.pending else None
        )
        self._read_done()

    def _read_done(self) -> None:
        """After a read's lines are handled: write the replies that are ready."""
        if self._queue:
            self._flush()

    def _plain_read(self, data: bytes) -> bool:
        """The common read of a waiting client, handled with the fewest calls; False (and
        nothing done) when the read is not that, for the general path to take.

        That read is whole lines of a client connection with nothing pending: no partial
        line, no reply or line waiting, no CR, shorter than one line may be (so none is
        overlong), and at most LINES_PER_TURN lines. It is then what the general path would
        do, in the same order: the IAMATs go through `ingest` (as one block when every line
        is a single-spaced IAMAT), and `NodeServer.commit` writes their journal entries,
        then the replies, the flood and the log. A line of any other kind hands the rest of
        the read to the general path.
        """
        if (
            self._probation is not None
            or self._queue
            or self._backlog
            or self._phase is not Phase.OPEN
        ):
            return False
        if not self.splitter.is_whole(data):
            return False
        count = data.count(_LF)
        if count > LINES_PER_TURN:
            return False
        self._last_activity = time.monotonic()
        self._pending_since = None
        node = self.node
        batch = self._batch
        received_ns = node.clock_ns()
        if not take_iamat_block(
            data, count, node.store, node.name_bytes, received_ns, self.id, batch
        ):
            backlog = self._backlog
            backlog.extend(data[:-1].split(_LF))
            take_iamats(
                backlog, LINES_PER_TURN, node.store, node.name_bytes, received_ns, self.id, batch
            )
            if backlog:  # a line of another kind: the general path goes on from it, in order
                if node.commit(batch, self._queue.extend, None):
                    self._work()
                else:
                    self._journal_refused()
                self._read_done()
                return True
        if not node.commit(batch, self._write_now, None):
            self._journal_refused()
        return True

    def _write_now(self, replies: list[bytes]) -> None:
        """Write replies at once: the plain read's, when nothing else is queued."""
        if self.transport is not None and self._phase is not Phase.CLOSED:
            self.transport.write(replies[0] if len(replies) == 1 else b"".join(replies))

    def eof_received(self) -> bool:
        self._eof = True
        lines = self.splitter.feed_eof()
        if lines and self._phase is Phase.OPEN:
            self._handle_lines(lines)
        self._close_after_replies()
        self._pending_since = None
        self._flush()
        return True  # keep our side open until every reply is written

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = Phase.CLOSED
        node = self.node
        if self._queue:
            # Replies are logged as OUT when made; say which of them never went out.
            node.log.event(f"REPLIES_DROPPED conn={self.id} count={len(self._queue)}")
        for item in self._queue:
            if isinstance(item, asyncio.Task):
                item.cancel()
        self._queue.clear()
        self._tasks = 0
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

    def pause_writing(self) -> None:
        # A client that does not read its replies stops being read from.
        self._write_paused = True
        self._set_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._set_reading()

    def _set_reading(self) -> None:
        """Read only while replies drain, the backlog is empty and the client may send more."""
        t = self.transport
        if t is None or self._phase is Phase.CLOSED:
            return
        paused = self._write_paused or bool(self._backlog)
        if paused != self._read_paused:
            self._read_paused = paused
            if paused:
                t.pause_reading()
            else:
                t.resume_reading()

    # -- lines ------------------------------------------------------------------------

    def _handle_lines(self, lines: list[bytes]) -> None:
        self._backlog.extend(lines)
        self._work()

    def _work(self) -> None:
        """Handle backlog lines while fewer than MAX_PENDING_REPLIES replies are pending.

        At most LINES_PER_TURN lines per loop turn: a client that sends a huge batch gets
        the rest handled on later turns, so other connections are served in between. Runs
        of valid IAMATs go through `ingest` as one batch; any other line is parsed alone.
        """
        node = self.node
        log = node.log
        queue = self._queue
        backlog = self._backlog
        budget = LINES_PER_TURN
        batch = self._batch
        received_ns = node.clock_ns()  # the lines of one read arrived together
        while backlog and len(queue) < MAX_PENDING_REPLIES:
            if budget <= 0:
                self._schedule_resume()
                break
            if self._probation is not None and not backlog[0].startswith(_HANDSHAKE):
                self.refuse(self._over)
                return
            room = min(budget, MAX_PENDING_REPLIES - len(queue))
            taken = take_iamats(
                backlog, room, node.store, node.name_bytes, received_ns, self.id, batch
            )
            if taken:
                budget -= taken
                if not node.commit(batch, queue.extend, None):
                    self._journal_refused()
                    return
                continue
            budget -= 1
            line = backlog.popleft()
            msg = parse_line(line)
            if msg is None:
                continue
            log.event(f"IN conn={self.id} {show(redact(line))}")  # no nonce or proof
            reply = self._reply(msg, line)
            if isinstance(reply, bytes):
                self._log_out(reply)
            else:
                self._tasks += 1
            queue.append(reply)
            if self._authenticated is not None:  # a good AUTH: the rest is the neighbour's
                self._hand_over(self._authenticated)
                return
        if not backlog and self._overlong_reply is not None:
            self._log_out(self._overlong_reply)
            queue.append(self._overlong_reply)
            self._overlong_reply = None
        if self._read_paused or backlog:  # else reading is on and stays on
            self._set_reading()

    def _reply(self, msg: Message, line: bytes) -> bytes | asyncio.Task[bytes]:
        node = self.node
        if isinstance(msg, WhatsAt):
            record = node.store.get(msg.client)
            if record is None:
                return format_invalid(line)
            task = asyncio.get_running_loop().create_task(node.whatsat(record, msg))
            task.add_done_callback(self._reply_done)
            return task
        if isinstance(msg, PeerLine):
            return self._handshake(msg, line)
        return format_invalid(line)

    def _handshake(self, msg: PeerLine, line: bytes) -> bytes:
        node = self.node
        if self._responder is None:
            self._responder = Responder(node.secret, node.name_bytes, node.neighbours)
        try:
            if msg.keyword == b"HELLO":
                return self._responder.on_hello(msg.fields)
            reply = self._responder.on_auth(msg.fields)
        except HandshakeError as e:
            node.log.event(f"PEER_AUTH_FAILED conn={self.id} from={self._where} reason={e}")
            # A failed AUTH ends the conversation; so does any failure over a client cap.
            if msg.keyword == b"AUTH" or self._probation is not None:
                self._backlog.clear()  # no further line is handled
                self._close_after_replies()
            return format_invalid(line)
        self._authenticated = self._responder.peer
        return reply

    def _hand_over(self, peer: bytes) -> None:
        """After WELCOME the connection is a neighbour's link: write what is answered, then
        give the transport, and the lines read after AUTH, to the peer side."""
        node = self.node
        self._flush()  # WELCOME goes out first
        transport = self.transport
        assert transport is not None
        self._phase = Phase.CLOSED  # as a client connection, this one is done
        for item in self._queue:
            if isinstance(item, asyncio.Task):
                item.cancel()
        self._leave_node()  # a neighbour: no client cap counts it
        # A CHANGELOC is longer than the IAMAT it came from (time_received, server name).
        self.splitter.max_line = node.limits.max_line_bytes + 64 + max(map(len, node.known_servers))
        link = PeerConnection(
            node,
            node.peers,
            transport,
            peer=peer,
            conn_id=self.id,
            where=self._where,
            splitter=self.splitter,
            read_paused=self._read_paused,
            write_paused=self._write_paused,
        )
        transport.set_protocol(link)
        node.log.event(f"PEER_IN_UP conn={self.id} peer={peer.decode()} from={self._where}")
        node.peers.inbound_up(peer, link)
        link.start(self._backlog)
        self._backlog.clear()

    # -- writing ----------------------------------------------------------------------

    def _reply_done(self, task: asyncio.Task[bytes]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._log_out(task.result())
        self._flush()

    def _log_out(self, reply: bytes) -> None:
        # A WHATSAT's JSON is summarised: the log is for operators, not a copy. A handshake
        # reply keeps its names only: a nonce or a proof in a log would let its readers
        # guess the secret offline.
        line, _, body = reply.rstrip(_LF).partition(_LF)
        more = f" (+{len(body)} bytes of JSON)" if body else ""
        self.node.log.event(f"OUT conn={self.id} {show(redact(line))}{more}")

    def _flush(self) -> None:
        """Write every reply at the head of the queue that is ready, in one write."""
        transport = self.transport
        if transport is None or self._phase is Phase.CLOSED:
            return
        queue = self._queue
        ready: list[bytes]
        if not self._tasks:  # every queued reply is bytes
            ready = cast(list[bytes], list(queue))
            queue.clear()
        else:
            ready = []
            while queue:
                head = queue[0]
                if not isinstance(head, bytes):
                    if not head.done():
                        break
                    self._tasks -= 1  # counted out before result() can raise
                    queue.popleft()
                    if not head.cancelled():
                        ready.append(head.result())
                    continue
                ready.append(head)
                queue.popleft()
        if self._backlog and len(queue) < MAX_PENDING_REPLIES:
            self._schedule_resume()  # room for more replies: handle the lines held back
        if ready:
            transport.write(b"".join(ready))
        if not queue and not self._backlog and self._phase in _ENDING:
            if self._eof:
                transport.close()  # connection_lost follows
            elif self._phase is Phase.CLOSING:
                # Half-close: the client still reads every reply, then sends its EOF.
                self._phase = Phase.LINGERING
                self._lingering_since = time.monotonic()
                transport.write_eof()

    def _schedule_resume(self) -> None:
        if not self._resume_scheduled:
            self._resume_scheduled = True
            asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        self._resume_scheduled = False
        if self._phase is not Phase.CLOSED:
            self._work()
            self._flush()

    def _journal_refused(self) -> None:
        """The journal could not take this client's IAMATs: they get no AT. The replies to
        the lines before them still go out, then the connection closes; the lines after
        them are not handled. The client may reconnect and retry."""
        failing = self.node.journal.failing
        why = f" ({errno_name(failing)})" if failing is not None else ""
        self.node.log.event(
            f"CONN_CUT conn={self.id} from={self._where} reason=journal write failed{why},"
            f" {len(self._backlog)} later lines unanswered"
        )
        self._backlog.clear()
        self._overlong_reply = None
        self._close_after_replies()
        self._pending_since = None
        self._set_reading()
        self._flush()

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
        self._flush()
        return self._finished
