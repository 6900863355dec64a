"""Convergence after faults, with five real node processes and concurrent writers.

Writers are threads sending IAMATs for a few hundred clients to random nodes; every AT they
get back is an acknowledged update. After the faults, the herd has converged when all five
nodes answer WHATSAT with the same AT line for every client, and none of them holds, for any
client, a record older (PROTOCOL.md's ordering) than the newest one a writer got an AT for.
Every test reports its figures (`figures` in conftest.py): updates written, acknowledged,
lost, faults injected, convergence time.

The random choices are seeded (`HERD_CHAOS_SEED`, default 5); the timing of real processes
is not, so a seed replays the same schedule, not the same interleaving.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.lines import LIMITS, WRITE_TIMEOUT, send_lines, whatsat_records
from tests.chaos.proxy import ProxyStats, ProxyThread
from tests.support import NAMES, Herd, free_ports, port_open, wait_until, write_topology

SEED = int(os.environ.get("HERD_CHAOS_SEED", "5"))
CLIENTS = 300
CONVERGE_DEADLINE = 30.0  # seconds: generous for a loaded 2-core machine; the figure is reported

Report = Callable[..., None]  # the `figures` fixture of conftest.py
Key = tuple[Decimal, bytes, bytes]  # (time, server, location): the ordering of PROTOCOL.md
Sent = tuple[bytes, bytes, bytes]  # (client, location, time) of an IAMAT


def record_key(at_line: bytes) -> tuple[bytes, Key]:
    """The client of an AT line and its place in the order."""
    _, server, _diff, client, location, sent = at_line.split()
    return client, (Decimal(sent.decode()), server, location)


def client_names(prefix: str) -> list[bytes]:
    return [f"{prefix}-{i:03d}.chaos".encode() for i in range(CLIENTS)]


def topology(folder: Path, *, nodes: Mapping[str, Any] | None = None, **extra: Any) -> Path:
    doc: dict[str, Any] = {"places": {"provider": "offline"}, "limits": LIMITS, **extra}
    if nodes is not None:
        doc["nodes"] = nodes
    return write_topology(folder, extra=doc)


# -- talking to nodes --------------------------------------------------------------------


# -- the writers and what they were told -----------------------------------------------------


@dataclass
class Ledger:
    """Every IAMAT the writers sent and every AT they got back."""

    written: int = 0
    failed_exchanges: int = 0  # refused, reset or timed out: a node was down
    acked: list[bytes] = field(default_factory=list)  # the AT lines
    sent: set[Sent] = field(default_factory=set)
    surprises: list[bytes] = field(default_factory=list)  # replies that do not echo the IAMAT

    def note(self, batch: Sequence[Sent], reply: bytes, ok: bool) -> None:
        self.written += len(batch)
        self.sent.update(batch)
        if not ok:
            self.failed_exchanges += 1
        lines = reply.split(b"\n")[:-1]  # complete lines only: a cut reply acknowledges nothing
        for (client, location, stamp), line in zip(batch, lines, strict=False):
            fields = line.split()
            if fields[:1] == [b"AT"] and fields[3:] == [client, location, stamp]:
                self.acked.append(line)
            else:
                self.surprises.append(line)

    def newest_acked(self) -> dict[bytes, Key]:
        newest: dict[bytes, Key] = {}
        for line in self.acked:
            client, key = record_key(line)
            if client not in newest or key > newest[client]:
                newest[client] = key
        return newest


class Writers:
    """Threads sending batches of IAMATs to random ports from `targets()` until stopped."""

    def __init__(
        self,
        targets: Callable[[], Sequence[int]],
        clients: Sequence[bytes],
        *,
        seed: int,
        threads: int = 3,
        pace: float = 0.01,
    ) -> None:
        self.targets = targets
        self.clients = clients
        self.seed = seed
        self.pace = pace  # seconds between a thread's batches: load shaping, not synchronisation
        self.ledger = Ledger()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"writer-{i}", daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Ledger:
        self._stop.set()
        for thread in self._threads:
            thread.join(WRITE_TIMEOUT + 5)
        return self.ledger

    def acked(self) -> int:
        with self._lock:
            return len(self.ledger.acked)

    def snapshot(self) -> Ledger:
        """A copy of the ledger so far, safe to read while the writers go on."""
        with self._lock:
            led = self.ledger
            return Ledger(
                led.written,
                led.failed_exchanges,
                list(led.acked),
                set(led.sent),
                list(led.surprises),
            )

    def _run(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        while not self._stop.is_set():
            batch = [self._update(rng) for _ in range(rng.randint(1, 8))]
            data = b"".join(b"IAMAT %s %s %s\n" % update for update in batch)
            reply, ok = send_lines(rng.choice(self.targets()), data)
            with self._lock:
                self.ledger.note(batch, reply, ok)
            self._stop.wait(self.pace)

    def _update(self, rng: random.Random) -> Sent:
        location = f"{rng.uniform(-90, 90):+.6f}{rng.uniform(-180, 180):+.6f}"
        # Up to 2 s in the past: writers race, and some IAMATs arrive older than what is held.
        ns = time.time_ns() - rng.randrange(2 * 10**9)
        stamp = f"{ns // 10**9}.{ns % 10**9:09d}"
        return rng.choice(self.clients), location.encode(), stamp.encode()


# -- the verdict -----------------------------------------------------------------------------


@dataclass
class Census:
    """What every node holds for every client, judged against the writers' ledger."""

    held: dict[str, dict[bytes, bytes | None]]
    ledger: Ledger

    def split(self) -> list[bytes]:
        """Clients on which the nodes do not all hold the same AT line."""
        clients = next(iter(self.held.values()))
        return [c for c in clients if len({held[c] for held in self.held.values()}) > 1]

    def lost(self) -> list[str]:
        """Acknowledged updates newer than what some node holds for their client."""
        lost = []
        for line in self.ledger.acked:
            client, key = record_key(line)
            for name, held in self.held.items():
                at = held.get(client)
                if at is None or record_key(at)[1] < key:
                    lost.append(f"{name} holds {at!r}, acked {line!r}")
                    break
        return lost

    def phantoms(self) -> list[bytes]:
        """Held records that no writer ever sent."""
        out = []
        for held in self.held.values():
            for at in held.values():
                if at is not None:
                    _, _, _, client, location, stamp = at.split()
                    if (client, location, stamp) not in self.ledger.sent:
                        out.append(at)
        return out

    def converged(self) -> bool:
        return not self.split() and not self.lost()

    def describe(self) -> str:
        split, lost = self.split(), self.lost()
        return (
            f"{len(split)} clients split (e.g. "
            f"{[{n: h[c] for n, h in self.held.items()} for c in split[:2]]}), "
            f"{len(lost)} acknowledged updates lost (e.g. {lost[:3]})"
        )


def converge(
    ports: Mapping[str, int],
    clients: Sequence[bytes],
    ledger: Ledger,
    since: float | None = None,
    deadline: float = CONVERGE_DEADLINE,
) -> tuple[Census, float]:
    """Poll every node until the herd has converged; the census and the seconds it took
    (counted from `since`, a time.monotonic() reading, when given), failing after `deadline`."""
    start = time.monotonic() if since is None else since
    census: Census | None = None
    while True:
        with contextlib.suppress(OSError):  # a node still starting: ask again
            census = Census({n: whatsat_records(p, clients) for n, p in ports.items()}, ledger)
            if census.converged():
                return census, time.monotonic() - start
        if time.monotonic() - start > deadline:
            state = census.describe() if census else "no node answered"
            raise AssertionError(f"no convergence after {deadline:g}s: {state}")
        time.sleep(0.1)


def check(census: Census) -> None:
    assert not census.ledger.surprises, census.ledger.surprises[:5]
    assert not census.phantoms(), census.phantoms()[:5]
    assert census.ledger.acked, "the writers got no AT at all"


# -- processes -------------------------------------------------------------------------------


def kill(*names: str, herd: Herd) -> None:
    """SIGKILL the named nodes' process groups at once, then reap them."""
    procs = [herd.nodes[n].proc for n in names]
    for proc in procs:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        if proc is not None:
            proc.wait(10)
            if proc.stderr:
                proc.stderr.close()


@contextlib.contextmanager
def chaos_herd(config: Path) -> Iterator[Herd]:
    """A Herd whose every process, alive or restarted, is SIGKILLed and reaped at the end."""
    with Herd(config) as herd:
        try:
            yield herd
        finally:
            kill(*herd.nodes, herd=herd)
            left = [n for n, node in herd.nodes.items() if node.proc and node.proc.poll() is None]
            assert not left, f"still running: {left}"


def ports_of(herd: Herd) -> dict[str, int]:
    return {name: node.port for name, node in herd.nodes.items()}


# -- a. the whole herd killed at once --------------------------------------------------------


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_whole_herd_sigkilled_and_restarted_keeps_every_location(
    tmp_path: Path, fsync: str, figures: Report
) -> None:
    clients = client_names(f"all-{fsync}")
    with chaos_herd(topology(tmp_path, journal={"fsync": fsync})) as herd:
        herd.start()
        herd.wait_links_up()
        ports = ports_of(herd)
        with Writers(lambda: list(ports.values()), clients, seed=SEED) as writers:
            wait_until(lambda: writers.acked() >= 500, "500 acknowledged updates")
            kill(*NAMES, herd=herd)  # mid-stream: every node at once, writers still going
        ledger = writers.ledger
        herd.start()
        census, seconds = converge(ports, clients, ledger)
    check(census)
    figures(
        fsync=fsync,
        written=ledger.written,
        acked=len(ledger.acked),
        lost=len(census.lost()),
        clients=len(ledger.newest_acked()),
        faults=len(NAMES),
        converged_s=f"{seconds:.2f}",
    )


# -- b. random nodes killed every second under writers ----------------------------------------

CHAOS_SECONDS = 15


def test_random_sigkills_every_second_lose_no_acknowledged_update(
    tmp_path: Path, figures: Report
) -> None:
    clients = client_names("kill")
    rng = random.Random(SEED)
    with chaos_herd(topology(tmp_path)) as herd:
        herd.start()
        herd.wait_links_up()
        ports = ports_of(herd)
        down: list[str] = []
        live = list(ports.values())
        kills = 0
        with Writers(lambda: live, clients, seed=SEED, threads=4) as writers:
            start = time.monotonic()
            for tick in range(1, CHAOS_SECONDS + 1):
                # The chaos schedule itself: one step a second.
                time.sleep(max(0.0, start + tick - time.monotonic()))
                for name in down:
                    herd.nodes[name].start()
                restarted, down = down, []
                if tick < CHAOS_SECONDS:
                    eligible = [n for n in NAMES if n not in restarted]
                    down = rng.sample(eligible, rng.choice((1, 1, 2)))
                    kill(*down, herd=herd)
                    kills += len(down)
                live = [ports[n] for n in NAMES if n not in down]
            for node in herd.nodes.values():
                node.wait_ready()
        ledger = writers.ledger
        census, seconds = converge(ports, clients, ledger)
    check(census)
    figures(
        seed=SEED,
        written=ledger.written,
        acked=len(ledger.acked),
        lost=len(census.lost()),
        refused_or_cut=ledger.failed_exchanges,
        clients=len(ledger.newest_acked()),
        faults=kills,
        converged_s=f"{seconds:.2f}",
    )


# -- c. the links into Holiday cut and restored by a fault-injecting proxy ---------------------

FAULT_SECONDS = 2.0
CONVERGE_BUDGET = 10.0  # seconds after the heal ("within seconds", on a loaded machine)
CUTTER = "Holiday"


@pytest.fixture(scope="module")
def proxied(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Herd, ProxyThread, dict[str, int]]]:
    """The herd with a proxy on Holiday's advertised port in front of its real one.

    Every link into Holiday goes through the proxy; the test's own clients talk to every node,
    Holiday included, on its real port, so only the links are cut."""
    folder = tmp_path_factory.mktemp("proxied")
    *advertised, real = free_ports(len(NAMES) + 1)
    ports = dict(zip(NAMES, advertised, strict=True))
    nodes = {n: {"host": "127.0.0.1", "port": p} for n, p in ports.items()}
    nodes[CUTTER]["bind_port"] = real
    with (
        ProxyThread(real, port=ports[CUTTER]) as proxy,
        chaos_herd(topology(folder, nodes=nodes)) as herd,
    ):
        herd.start()
        wait_until(lambda: port_open(real), f"{CUTTER} to listen on its real port")
        herd.wait_links_up()
        yield herd, proxy, {**ports, CUTTER: real}


def apply(proxy: ProxyThread, mode: str) -> None:
    if mode == "delay":
        proxy.delay(300)
    elif mode == "drop":
        proxy.drop()
    elif mode == "blackhole":
        proxy.blackhole()
    else:
        proxy.reset()


def fault_counts(before: ProxyStats, after: ProxyStats) -> dict[str, int]:
    """What the proxy did during one test: its counters' growth."""
    names = ("dropped_bytes", "delayed_chunks", "held", "resets", "refused")
    counts = {n: getattr(after, n) - getattr(before, n) for n in names}
    counts["events"] = after.injected() - before.injected()
    return counts


@pytest.mark.parametrize("mode", ["delay", "drop", "blackhole", "reset"])
def test_link_cut_and_restored_under_load_converges(
    proxied: tuple[Herd, ProxyThread, dict[str, int]], mode: str, figures: Report
) -> None:
    _herd, proxy, ports = proxied
    clients = client_names(f"cut-{mode}")
    before = proxy.stats()
    with Writers(lambda: list(ports.values()), clients, seed=SEED) as writers:
        wait_until(lambda: writers.acked() >= 200, "the load to be flowing")
        apply(proxy, mode)
        time.sleep(FAULT_SECONDS)  # the fault itself: how long the link stays cut
        # Cut off from its neighbours, Holiday lacks what the others acknowledged meanwhile.
        held = {CUTTER: whatsat_records(ports[CUTTER], clients)}
        behind = Census(held, writers.snapshot()).lost()
        proxy.heal()
        healed = time.monotonic()
        writers.stop()
    ledger = writers.ledger
    census, seconds = converge(ports, clients, ledger, since=healed, deadline=CONVERGE_BUDGET)
    check(census)
    counts = fault_counts(before, proxy.stats())
    if mode == "delay":
        assert counts["delayed_chunks"] > 0
    else:
        assert behind, f"{mode}: Holiday kept up with the herd through the cut"
    assert counts["events"] > 1, counts  # more than the switch itself
    figures(
        mode=mode,
        written=ledger.written,
        acked=len(ledger.acked),
        lost=len(census.lost()),
        behind_at_heal=len(behind),
        **counts,
        converged_after_heal_s=f"{seconds:.2f}",
    )
