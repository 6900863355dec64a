"""CPU per update, node by node: where the herd spends its time under a `make bench` load.

    .venv/bin/python bench/node_cpu.py [--load ingest|latency] [--lone | --nodejs] [--seconds S]
                                       [--copies | --links | --repeat N]

Starts our five-node herd (or, with `--lone`, one node with no neighbours next to the
minimal node; with `--nodejs`, the Node.js herd of `make bench` after ours), drives IAMATs
into Welsh with `herdctl bench`'s engine, and prints each process's CPU time divided by the
replies: steadier than replies/s on a shared machine, since it does not depend on who else
got the cores. bench/README.md quotes its figures.
With `--copies` each node also serves /metrics, and the flood's copies per update are
printed, node by node: sent, held back and spared, received, applied. With `--links` the
herd's `PEER_IN` events, once the flood has settled, are summed link by link: the lines
each link carried, and of them how many were applied, duplicates (the record held) and
older than the record held (bench/README.md, "Stale copies"). With `--repeat N` each system
takes the load N times in a row, a line each: one herd's windows side by side, to tell a
slow window from a slow herd (bench/README.md, "Round 1, the flood's lag, and where 8x1's
time goes": the relays' wakeups).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from figures import iamat_load
from systems import (
    FLOOD_COUNTERS,
    HOST,
    REPO,
    FloodCounters,
    Procs,
    System,
    flood_counters,
    node_argv,
    settled_flood_counters,
    start_herd,
    start_minimal,
    start_node_herd,
    wait_listening,
    write_topology,
)

from herdctl import bench as loadgen

LOADS = {"ingest": (32, 64), "latency": (8, 1)}  # connections, in flight per connection
SETTLE = 10.0  # seconds for the last updates of a load to reach every node


@dataclass(frozen=True)
class Sample:
    """One load on one system: its replies/s and p50, and per process the CPU (user,
    system) and the wakeups each reply cost."""

    throughput: float
    p50_ms: float
    p99_ms: float
    cpu_us: dict[str, tuple[float, float]]
    wakeups: dict[str, float]
    replies: int = 0
    updates: int = 0  # IAMATs sent: each is applied at every node, answered in time or not

    @property
    def cpu_total_us(self) -> float:
        return sum(map(sum, self.cpu_us.values()))


def sample(system: System, into: str, load: str, seconds: float) -> Sample:
    """Drive `load` into `into` for `seconds`, reading every process's CPU around it."""
    conns, pipeline = LOADS[load]
    procs = {p.name: psutil.Process(p.pid) for p in system.procs.procs}

    def cpu() -> dict[str, tuple[float, float]]:
        """User and system CPU seconds per process."""
        return {name: tuple(p.cpu_times()[:2]) for name, p in procs.items()}  # type: ignore[misc]

    def sleeps() -> dict[str, int]:
        """Voluntary context switches per process: how often each went to sleep, so woke."""
        return {name: p.num_ctx_switches().voluntary for name, p in procs.items()}

    async def run() -> loadgen.LoadResult:
        return await iamat_load(
            system.address(into),
            conns=conns,
            pipeline=pipeline,
            duration=seconds,
            warmup=0.0,
            clients=10_000,
        )

    before, slept = cpu(), sleeps()
    result = loadgen.run_sync(run())
    after, woke = cpu(), sleeps()
    replies = max(result.replies, 1)
    return Sample(
        result.throughput,
        result.latency_ms["p50"],
        result.latency_ms["p99"],
        {
            name: (1e6 * (after[name][0] - b[0]) / replies, 1e6 * (after[name][1] - b[1]) / replies)
            for name, b in before.items()
        },
        {name: (woke[name] - slept[name]) / replies for name in procs},
        result.replies,
        result.requests,
    )


def measure(system: System, into: str, load: str, seconds: float) -> str:
    return describe(system, load, sample(system, into, load, seconds))


def describe(system: System, load: str, found: Sample) -> str:
    nodes = "  ".join(
        f"{name} {user + kernel:.1f} µs ({kernel / max(user + kernel, 1e-9):.0%} kernel,"
        f" {found.wakeups[name]:.2f} wakeups)"
        for name, (user, kernel) in found.cpu_us.items()
    )
    return (
        f"{system.key}: {load} {found.throughput:,.0f}/s, p50 {found.p50_ms:.3f} ms"
        f"; CPU per reply: {nodes}  (all: {found.cpu_total_us:.1f} µs)"
    )


def copies_per_update(system: System, before: FloodCounters, updates: int) -> str:
    """The flood's counters per update once every update has reached every node."""
    ports = system.metrics_ports
    after = settled_flood_counters(ports, before, updates * (len(ports) - 1), SETTLE)
    lines = []
    for kind in FLOOD_COUNTERS:
        per = {n: (after[n][kind] - before[n][kind]) / max(updates, 1) for n in after}
        row = "  ".join(f"{n} {v:.2f}" for n, v in per.items())
        lines.append(f"  {kind:<9} per update: {row}  (all: {sum(per.values()):.2f})")
    return "\n".join(lines)


PEER_IN = re.compile(rb"PEER_IN peer=(\S+) changelocs=(\d+) applied=(\d+) duplicates=(\d+)")
QUIET_FOR = 0.5  # seconds without a new PEER_IN event: the flood has settled


LinkTotals = dict[tuple[str, str], list[int]]


def link_totals(logs: Path) -> LinkTotals:
    """Per (receiver, sender): batches, lines, applied, duplicates, from the PEER_IN events."""
    totals: LinkTotals = {}
    for log in sorted(logs.glob("*.log")):
        if log.name.endswith(".stderr.log"):
            continue
        for found in PEER_IN.finditer(log.read_bytes()):
            key = (log.stem, found[1].decode())
            row = totals.setdefault(key, [0, 0, 0, 0])
            row[0] += 1
            for i in (1, 2, 3):
                row[i] += int(found[i + 1])
    return totals


def settled_link_totals(logs: Path, before: LinkTotals) -> LinkTotals:
    """`link_totals` once no new event has come for QUIET_FOR (at most SETTLE seconds),
    less those `before` (start-up's readiness probes)."""
    deadline = time.monotonic() + SETTLE
    last = link_totals(logs)
    still_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - still_since < QUIET_FOR:
        time.sleep(0.1)  # a poll of files the nodes flush every 0.1 s
        now = link_totals(logs)
        if now != last:
            last, still_since = now, time.monotonic()
    return {
        key: [v - b for v, b in zip(row, before.get(key, [0, 0, 0, 0]), strict=True)]
        for key, row in last.items()
        if row != before.get(key)
    }


def links_table(totals: LinkTotals, updates: int) -> str:
    """The links' lines, applied, duplicates and older ones, and the herd's per update."""
    rows = [
        f"  {'link':<20} {'lines':>9} {'applied':>9} {'duplicates':>10} {'older':>9}"
        f" {'lines a batch':>13}"
    ]
    sums = [0, 0, 0]
    for (receiver, sender), (batches, lines, applied, duplicates) in sorted(totals.items()):
        older = lines - applied - duplicates
        rows.append(
            f"  {receiver + ' <- ' + sender:<20} {lines:>9,} {applied:>9,} {duplicates:>10,}"
            f" {older:>9,} {lines / max(batches, 1):>13,.0f}"
        )
        for i, v in enumerate((lines, applied, duplicates)):
            sums[i] += v
    all_lines, all_applied, all_duplicates = sums
    all_older = all_lines - all_applied - all_duplicates
    received, kept, copies, stale = (
        v / max(updates, 1) for v in (all_lines, all_applied, all_duplicates, all_older)
    )
    rows.append(
        f"  per update: {received:.2f} received, {kept:.2f} applied, {copies:.2f}"
        f" duplicates, {stale:.2f} older"
    )
    return "\n".join(rows)


def lone_node(folder: Path) -> System:
    """One node named Welsh with no links, on the herd's own topology settings."""
    config, topology = write_topology(folder, names=("Welsh",))
    port = int(topology["nodes"]["Welsh"]["port"])
    procs = Procs()
    system = System("one node", "lone", {"Welsh": (HOST, port)}, procs, folder)
    procs.spawn("Welsh", node_argv("Welsh", config), REPO, folder / "logs")
    try:
        wait_listening(system, 10.0)
    except BaseException:
        procs.stop()
        raise
    return system


def main() -> int:
    parser = argparse.ArgumentParser(description="CPU per update, node by node")
    parser.add_argument("--load", choices=sorted(LOADS), default="ingest")
    parser.add_argument("--lone", action="store_true", help="one node and the minimal node")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--copies", action="store_true", help="the flood's copies per update")
    parser.add_argument("--nodejs", action="store_true", help="the Node.js herd after ours")
    parser.add_argument("--links", action="store_true", help="the flood's lines, link by link")
    parser.add_argument(
        "--repeat", type=int, default=1, help="loads in a row on each system, one line each"
    )
    args = parser.parse_args()
    if args.lone and (args.nodejs or args.links):
        parser.error("--lone goes with neither --nodejs nor --links")
    if args.repeat < 1 or (args.repeat > 1 and (args.links or args.copies)):
        parser.error(
            "--repeat takes a count of 1 or more, and goes with neither --links nor --copies"
        )
    with tempfile.TemporaryDirectory(prefix="herd-cpu-") as tmp:
        starts: list[tuple[Callable[[], System], str]]
        if args.lone:
            starts = [
                (lambda: start_minimal(Path(tmp) / "minimal"), "Minimal"),
                (lambda: lone_node(Path(tmp) / "lone"), "Welsh"),
            ]
        else:
            herd = Path(tmp) / "herd"
            starts = [(lambda: start_herd(herd, metrics=args.copies), "Welsh")]
            if args.nodejs:
                node_herd = Path(tmp) / "nodejs"
                starts.append((lambda: start_node_herd(node_herd, log=True), "Welsh"))
        for start, into in starts:
            system = start()
            try:
                time.sleep(0.5)
                if args.links and system.key == "ours":
                    logs = system.folder / "logs"
                    readiness = settled_link_totals(logs, {})
                    found = sample(system, into, args.load, args.seconds)
                    print(describe(system, args.load, found), flush=True)
                    totals = settled_link_totals(logs, readiness)
                    print(links_table(totals, found.updates), flush=True)
                    continue
                if not system.metrics_ports:
                    for _ in range(args.repeat):  # a herd's state from one window to the next
                        print(measure(system, into, args.load, args.seconds), flush=True)
                    continue
                before = flood_counters(system.metrics_ports)
                found = sample(system, into, args.load, args.seconds)
                print(describe(system, args.load, found), flush=True)
                print(copies_per_update(system, before, found.updates), flush=True)
            finally:
                system.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
