"""The asyncio layer of one node: its listener, its housekeeping, and the one owner of a
batch's effects (`NodeServer.commit`). Thin by design.

Parsing and ordering live in `protocol`, `ingest` and `store`; a client's connection in
`client`; both halves of every link in `peers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import time
from collections.abc import Callable
from typing import Any

from node import NATIVE
from node.admission import Admission, client_cap, raise_fd_limit, reserve_for
from node.client import ClientConnection
from node.config import HerdConfig
from node.counters import JournalTally, NodeCounters
from node.ingest import Batch
from node.journal import Journal, JournalLike, NullJournal, errno_name
from node.logbook import LogBook, RateLimited, show
from node.metrics_http import MetricsEndpoint
from node.peers import Peers
from node.places.base import OK, ZERO_RESULTS, PlacesProvider, failure_response
from node.places.memo import PlacesMemo, remembers
from node.places.printed import print_places, printed_answer
from node.protocol import WhatsAt, parse_location
from node.status import LinkStatus, NodeStatus, status_path
from node.status_file import StatusFile
from node.store import ClientStore, Packed, Record
from node.turn_journal import TurnGrouping, TurnJournal, Waiting
from node.turn_writes import TurnWrites

SWEEP_INTERVAL = 1.0  # seconds between checks of line deadlines and idle connections
SWEEP_SLICE = 100  # connections checked per loop turn during a sweep: a short pause at most
SHUTDOWN_GRACE = 3.0  # seconds in-flight replies get to finish at shutdown


class StartupError(Exception):
    """The node cannot start (port in use, bad bind address); the message says why."""


def port_holder(port: int) -> str:
    """` (held by pid N: NAME)` for the process listening on `port`, where psutil can tell."""
    import psutil  # only when a start fails: spared from every start

    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    return ""
                return f" (held by pid {conn.pid}: {psutil.Process(conn.pid).name()})"
    except (psutil.Error, OSError):
        pass
    return ""


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
        self._places_memo: PlacesMemo | None = None  # for `places`, when it can have one
        self.log = log
        self.secret = secret
        self.clock_ns = clock_ns
        self.neighbours = frozenset(n.encode() for n in config.neighbours(name))
        self.known_servers = frozenset(n.encode() for n in config.nodes)
        self.counters = NodeCounters()
        for neighbour in config.neighbours(name):
            self.counters.peer(neighbour)  # every neighbour in the metrics, even never linked
        self.peers = Peers(self)
        self.connections: set[ClientConnection] = set()
        self.turn_journal = TurnJournal()
        self.turn_grouping = TurnGrouping()
        self.turn_writes = TurnWrites(self.end_turn)
        if isinstance(self.journal, Journal):
            self.journal.before_snapshot = self.settle_turn
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
        self.metrics: MetricsEndpoint | None = None
        if self.spec.metrics_port:
            self.metrics = MetricsEndpoint(
                self.spec.bind, self.spec.metrics_port, name, self._render_metrics
            )
        self._registry: Any = None  # node.metrics' registry, made on the first scrape

    async def start(self, *, port: int | None = None) -> None:
        """Listen (on `port` when given, 0 for any) and bring the links up."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
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
        await self.bind(port=port)
        assert self._server is not None
        await self._server.start_serving()
        neighbours = ",".join(self.config.neighbours(self.name))
        self.log.event(
            f"START node={self.name} listen={self.spec.bind}:{self.port} "
            f"places={self.places.name} neighbours={neighbours} native={NATIVE}"
        )
        self._sweeper = loop.create_task(self._sweep())
        self.peers.start()
        self.state = "running"
        self.status_file.start()

    async def bind(self, *, port: int | None = None) -> None:
        """Take the listening port (`port` when given, 0 for any) without taking connections
        yet: a port in use is known at once, not after a long journal replay. `start`
        binds, unless this was called before."""
        if self._server is not None:
            return
        want = self.spec.listen_port if port is None else port
        try:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: ClientConnection(self),
                self.spec.bind,
                want,
                reuse_address=True,
                backlog=1024,
                start_serving=False,
            )
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"port {want} on {self.spec.bind} is already in use{port_holder(want)}"
                ) from None
            raise StartupError(f"cannot listen on {self.spec.bind}:{want}: {e.strerror}") from None
        server: Any = self._server  # its `sockets` is a list on uvloop, not the tuple typed
        self.port = server.sockets[0].getsockname()[1]
        if self.metrics is not None:
            await self._bind_metrics(self.metrics)

    async def _bind_metrics(self, metrics: MetricsEndpoint) -> None:
        where = f"{metrics.host}:{metrics.port}"
        try:
            await metrics.bind()
        except OSError as e:
            self.unbind()
            if e.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"metrics_port {metrics.port} on {metrics.host} is already in use"
                    f"{port_holder(metrics.port)}"
                ) from None
            raise StartupError(f"cannot serve metrics on {where}: {e.strerror}") from None
        self.log.event(f"METRICS listen={metrics.host}:{metrics.port} path=/metrics")

    def unbind(self) -> None:
        """Give the ports back, when the node does not start after `bind`."""
        if self._server is not None:
            self._server.close()
        if self.metrics is not None:
            self.metrics.close()

    async def stop(self) -> None:
        """Shut down in order: stop listening, finish replies, close links, bounded waits."""
        self.log.event(f"STOPPING node={self.name}")
        self.state = "stopping"
        self.status_file.write_now()
        if self._server is not None:
            self._server.close()
        if self.metrics is not None:
            self.metrics.close()
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
        `origin`), then the log. With `defer`, the only place a batch is drained; a batch
        made after the turn's deferred reads is committed after them.

        When the journal cannot take the batch, nothing of it is acknowledged, flooded or
        kept: the store is put back as it was, and False says so; the batch then holds the
        records it would have kept in `refused` (a neighbour's link applies them again
        later), and the journal has logged the failure, once per episode.
        """
        if self.turn_journal.waiting:  # judged after the turn's deferred reads: after them
            self.settle_turn()
        kept = len(batch.entries)
        if kept:
            try:
                self.journal.write(batch.entries)
            except OSError:
                if origin is None:
                    self.counters.iamat_refused += len(batch.replies)
                self.store.restore(batch.undo)
                batch.refuse()
                return False
            batch.entries.clear()
            batch.undo.clear()
        if batch.replies:
            if origin is None:
                counters = self.counters
                counters.iamat_kept += kept
                counters.iamat_stale += len(batch.replies) - kept
            if deliver is not None:
                deliver(batch.replies)
            batch.replies.clear()
        if batch.flood:
            self.peers.flood(batch.flood, origin)
            batch.flood.clear()
        if batch.log:
            self.log.raw_events(batch.log)
            batch.log.clear()
        if batch.unknown:
            for server, client in batch.unknown:
                self._unknown_server(origin or b"?", server, client)
            batch.unknown.clear()
        return True

    def waits_for_turn(self) -> bool:
        """Whether a client read's IAMATs wait for the turn's journal write (`defer`), or
        are committed at once (`node.turn_journal.TurnGrouping`)."""
        grouping = self.turn_grouping
        if not grouping.reads:
            self.turn_writes.settle_at_end()  # where the turn's reads are counted
        return grouping.read()

    def end_turn(self) -> None:
        """The turn's end (`TurnWrites.end_turn`): its journal write, first of all."""
        self.turn_grouping.turn_ended()
        self.settle_turn()

    def defer(self, batch: Batch, conn: Waiting) -> None:
        """Leave a client read's batch to the turn's journal write (`node.turn_journal`)."""
        turn = self.turn_journal
        if not turn.waiting:
            turn.read_at = time.monotonic()
        turn.defer(batch, conn)
        self.turn_writes.settle_at_end()

    def settle_turn(self) -> bool:
        """The turn's journal write, then its deferred reads' replies, flood and log, in
        that order; False when the journal refused it, and with it every deferred read: the
        store is as before them, and their connections are told."""
        if not self.turn_journal.waiting:
            return True
        turn = self.turn_journal.take()
        counters = self.counters
        if turn.entries:
            try:
                self.journal.write(turn.entries)
            except OSError:
                self.store.restore(turn.undo)
                for conn, replies, _kept in turn.waiting:
                    counters.iamat_refused += len(replies)
                    conn.journal_refused()
                return False
        for conn, replies, kept in turn.waiting:
            counters.iamat_kept += kept
            counters.iamat_stale += len(replies) - kept
            conn.deliver(replies)
        if turn.flood:
            self.peers.flood(turn.flood, None, turn.read_at)
        if turn.log:
            self.log.raw_events(turn.log)
        return True

    def _unknown_server(self, sender: bytes, server: bytes, client: bytes) -> None:
        # A neighbour with a different topology: skip the record, keep the link.
        self.log.event(
            f"PEER_UNKNOWN_SERVER peer={sender.decode()} server={show(server)}"
            f" client={show(client)}"
        )

    def whatsat_now(self, record: Record, msg: WhatsAt) -> bytes | None:
        """The reply to a WHATSAT, when the provider can answer without waiting (the offline
        one, once its data is loaded): no task and no later loop turn. None: use `whatsat`.
        A provider whose answer depends on the query alone is asked once per query (see
        `node.places.memo`)."""
        places = self.places
        answer_now = getattr(places, "nearby_now", None)
        if answer_now is None:
            return None
        started = time.monotonic()
        memo = self._places_memo
        if memo is None or memo.provider is not places:
            memo = self._places_memo = PlacesMemo(places) if remembers(places) else None
        query = (record.location, msg.radius_km, msg.bound)
        answer = None if memo is None else memo.get(query)
        if answer is None:
            lat, lng = self._point(record)
            try:
                response = answer_now(lat, lng, msg.radius_km * 1000, msg.bound)
                if response is None:
                    return None
                answer = printed_answer(response, msg.bound)
            except Exception as e:  # a provider bug must still produce a reply, never a hang
                return self._places_failed(record, e, started)
            if memo is not None and answer[1] in (OK, ZERO_RESULTS):
                memo.keep(query, answer)
        body, outcome = answer
        return self._answered(record, body, outcome, started)

    async def whatsat(self, record: Record, msg: WhatsAt) -> bytes:
        """The stored AT line, then the places near the client as Nearby Search JSON."""
        started = time.monotonic()
        lat, lng = self._point(record)
        try:
            response = await self.places.nearby(lat, lng, msg.radius_km * 1000, msg.bound)
            body, outcome = printed_answer(response, msg.bound)
        except Exception as e:  # a provider bug must still produce a reply, never a hang
            return self._places_failed(record, e, started)
        return self._answered(record, body, outcome, started)

    @staticmethod
    def _point(record: Record) -> tuple[float, float]:
        point = parse_location(record.location)
        assert point is not None  # stored records were validated on the way in
        return point

    def _places_failed(self, record: Record, error: Exception, started: float) -> bytes:
        self.log.event(f"PLACES_ERROR provider={self.places.name} error={type(error).__name__}")
        body = print_places(failure_response("UNKNOWN_ERROR", "places provider failed"))
        return self._answered(record, body, "EXCEPTION", started)

    def _answered(self, record: Record, body: bytes, outcome: str, started: float) -> bytes:
        seconds = time.monotonic() - started
        self.counters.places_of(self.places.name).record(outcome, seconds)
        return record.at_line() + body + b"\n\n"

    def status(self) -> NodeStatus:
        """What a supervisor shows: identity, clients known, each link's state, and the
        error of a journal that refuses writes (None while it takes them)."""
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
            "journal_error": self.journal_error(),
            "counters": {
                "requests": self.counters.answered(),
                "records_in": sum(t.records_received for t in self.counters.peers.values()),
                "records_out": sum(t.records_sent for t in self.counters.peers.values()),
            },
        }

    # -- what node.metrics reads ------------------------------------------------------

    @property
    def places_name(self) -> str:
        return self.places.name

    @property
    def journal_tally(self) -> JournalTally:
        return self.journal.tally

    def link_status(self) -> dict[str, LinkStatus]:
        return self.peers.status()

    def _render_metrics(self, accept: str) -> tuple[bytes, str]:
        from node import metrics  # prometheus_client: on the first scrape, not at start

        if self._registry is None:
            self._registry = metrics.registry_for(self)
        return metrics.render(self._registry, accept)

    def journal_error(self) -> str | None:
        """Why the journal refuses writes (`ENOSPC`), or None while it takes them."""
        failing = self.journal.failing
        return None if failing is None else errno_name(failing)

    def sync_state(self) -> list[Packed]:
        """Every record we hold, packed, for a neighbour that just linked up."""
        self.settle_turn()  # journalled records only
        return self.store.packed()

    # -- housekeeping -----------------------------------------------------------------

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """What the event loop could not handle (accept() out of fds, a callback's error):
        into our log, one line a second at most with a count of the rest, never a flood on
        stderr."""
        message = str(context.get("message", "?"))
        error = context.get("exception")
        self.loop_errors.event("LOOP_ERROR", f"LOOP_ERROR message={message!r} error={error!r}")

    def next_conn_id(self) -> int:
        return next(self._conn_ids)

    async def _sweep(self) -> None:
        limits = self.limits
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL, limits.peer_heartbeat))
            now = time.monotonic()
            self.refusals.report_ended()
            self.loop_errors.report_ended()
            self.peers.heartbeat(now, limits.peer_timeout)
            for i, conn in enumerate(list(self.connections), 1):
                conn.check_deadlines(now, limits.line_deadline, limits.idle_timeout)
                if i % SWEEP_SLICE == 0:
                    await asyncio.sleep(0)  # ten thousand idle clients: let the busy ones in
