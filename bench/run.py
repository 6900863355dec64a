"""`make bench`: our herd, the minimal node and a Node.js herd under the same loads.

    .venv/bin/python bench/run.py [--rounds N] [--quick] [--only FIGURE,...] [--json PATH]

Starts the three systems once (loopback only, free ports, a temporary folder), then runs
every round figure on each system in turn, rotating the order every round so machine noise
falls on all of them alike, and reports medians over the rounds with each target from the
performance issue. Then the scale figures (ours only). Every process started is stopped at
the end, on error and on Ctrl-C too. The table goes to stdout, everything to results.json
(results.partial.json for a run of some figures only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from figures import QUICK, Measurement, Settings, ingest, latency, propagate
from report import (
    MINIMAL,
    MINIMAL_HERD,
    NODEJS,
    OURS,
    Row,
    latency_rows,
    propagation_rows,
    render,
    scale_rows,
    throughput_rows,
)
from scale import idle_connections, million_clients, raise_fd_limit
from systems import (
    BENCH_DIR,
    BenchError,
    System,
    compiled_core_of,
    event_loop_of,
    node_binary,
    start_herd,
    start_minimal,
    start_minimal_herd,
    start_node_herd,
)

SETTLE_TIMEOUT = 60.0  # seconds to wait for the systems to go quiet after a load
SETTLE_CORES = 0.15  # "quiet": below this much CPU, all systems together


@dataclasses.dataclass(frozen=True)
class RoundFigure:
    """A figure measured on each of `systems` in every round."""

    name: str
    measure: Callable[[System, Settings], Measurement]
    systems: tuple[str, ...]


ROUND_FIGURES = [
    RoundFigure("ingest", ingest, (OURS, MINIMAL, NODEJS)),
    RoundFigure("latency", lambda system, s: latency(system, s), (OURS, MINIMAL, NODEJS)),
    RoundFigure(
        "propagate_idle",
        lambda system, s: propagate(system, s, loaded=False),
        (OURS, MINIMAL_HERD, NODEJS),
    ),
    RoundFigure(
        "propagate_loaded",
        lambda system, s: propagate(system, s, loaded=True),
        (OURS, MINIMAL_HERD, NODEJS),
    ),
]
SCALE_FIGURES = ("idle_connections", "million_clients")  # ours only, after the rounds


def parse_args() -> argparse.Namespace:
    names = [f.name for f in ROUND_FIGURES] + list(SCALE_FIGURES)
    parser = argparse.ArgumentParser(description="herd benchmarks (make bench)")
    parser.add_argument("--rounds", type=int, default=Settings.rounds, help="rounds per figure")
    parser.add_argument("--quick", action="store_true", help="one short round: a smoke run")
    parser.add_argument(
        "--only", default="", help=f"comma-separated figures to run (of: {', '.join(names)})"
    )
    parser.add_argument("--no-nodejs", action="store_true", help="skip the Node.js herd")
    parser.add_argument(
        "--nodejs-no-log", action="store_true", help="run the Node.js herd without its log"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write results (default: results.json for a full run, results.partial.json"
        " for --only or --quick, so a partial run never replaces the full run's record)",
    )
    args = parser.parse_args()
    wanted = {n for n in args.only.split(",") if n}
    if unknown := wanted - set(names):
        parser.error(f"unknown figure(s) {', '.join(sorted(unknown))} (known: {', '.join(names)})")
    args.figures = wanted or set(names)
    if args.json is None:
        partial = args.quick or wanted
        args.json = BENCH_DIR / ("results.partial.json" if partial else "results.json")
    return args


TERMINATED: list[int] = []  # the signal that asked the run to stop, once it came


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: object) -> None:
        TERMINATED.append(signum)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # between measurements
            raise SystemExit(128 + signum) from None  # unwinds every `finally`: processes stop
        # Inside a measurement an exception raised here lands in whatever callback runs, and
        # uvloop takes it for that transport's failure and goes on. Cancelling the
        # measurement unwinds the same way; `main` turns it into the exit.
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)

    signal.signal(signal.SIGTERM, handler)


def settle(systems: Iterable[System]) -> float | None:
    """Wait (bounded) until every system has worked off what the last load left queued;
    the seconds it took, or None when they were still busy at the deadline. A herd that
    acknowledges faster than it floods keeps working after its load ends, and that work
    must not land on the next system's measurement."""
    procs = [system.procs for system in systems]
    start = time.monotonic()
    deadline = start + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        cpu0, t0 = sum(p.cpu_seconds() for p in procs), time.monotonic()
        time.sleep(0.2)
        busy = (sum(p.cpu_seconds() for p in procs) - cpu0) / (time.monotonic() - t0)
        if busy < SETTLE_CORES:
            return time.monotonic() - start
    return None


def _ms(value: float | None) -> str:
    """A latency for the progress line; a lost measurement has none (None in its result)."""
    return "      -" if value is None or math.isnan(value) else f"{value:7.3f}"


def describe(m: Measurement) -> str:
    r = m.result
    lat = r.get("latency_ms", {})
    parts = [f"{m.figure:<17}", f"{m.system:<8}"]
    if m.figure in ("ingest", "latency"):
        parts.append(f"{r.get('throughput', math.nan):>10,.0f}/s")
    parts.append(f"p50 {_ms(lat.get('p50'))} ms  p99 {_ms(lat.get('p99'))} ms")
    if r.get("errors"):
        parts.append(f"ERRORS {r['errors']}")
    cpu = r.get("cpu_percent")
    parts.append(f"(load gen {'-' if cpu is None or math.isnan(cpu) else f'{cpu:.0f}'}% cpu,")
    parts.append(f"system {m.system_cpu_cores:.2f} cores,")
    parts.append(f"machine {m.machine_cpu_cores:.2f} cores)")
    return "  ".join(parts)


def start_systems(
    tmp: Path, stack: contextlib.ExitStack, args: argparse.Namespace
) -> dict[str, System]:
    """Ours first: the minimal node and the minimal herd then run on the same event loop as
    our node does. The minimal herd only when a propagation figure is run."""
    systems: dict[str, System] = {}

    def started(key: str, system: System, t0: float, note: str = "") -> None:
        stack.callback(system.stop)
        systems[key] = system
        print(f"started {system.label}: ready in {time.monotonic() - t0:.1f}s{note}")

    t0 = time.monotonic()
    ours = start_herd(tmp / OURS)
    loop = event_loop_of(ours)
    started(OURS, ours, t0, f" ({loop}, core {compiled_core_of(ours)})")
    t0 = time.monotonic()
    started(MINIMAL, start_minimal(tmp / MINIMAL, loop=loop), t0, f" ({loop}, as ours)")
    if args.figures & {f.name for f in ROUND_FIGURES if MINIMAL_HERD in f.systems}:
        t0 = time.monotonic()
        herd = start_minimal_herd(tmp / MINIMAL_HERD, loop=loop)
        started(MINIMAL_HERD, herd, t0, f" ({loop}, as ours)")
    if args.no_nodejs:
        print("Node.js herd skipped (--no-nodejs)")
    elif node_binary() is None:
        print("Node.js herd skipped: `node` is not on PATH")
    else:
        t0 = time.monotonic()
        log = not args.nodejs_no_log
        note = "" if log else " (--no-log)"
        started(NODEJS, start_node_herd(tmp / NODEJS, log=log), t0, note)
    return systems


def run_rounds(
    systems: dict[str, System], s: Settings, figures: set[str]
) -> tuple[list[Measurement], int]:
    """Every round figure on every system, `s.rounds` times; the measurements, rounds done."""
    measurements: list[Measurement] = []
    keys = list(systems)
    deadline = time.monotonic() + s.rounds_budget_s
    for round_no in range(s.rounds):
        if round_no and time.monotonic() > deadline:
            print(f"\nstopping after {round_no} rounds: past the {s.rounds_budget_s:g}s budget")
            return measurements, round_no
        order = keys[round_no % len(keys) :] + keys[: round_no % len(keys)]
        print(f"\nround {round_no + 1}/{s.rounds} (order: {', '.join(order)})")
        for fig in ROUND_FIGURES:
            if fig.name not in figures:
                continue
            for key in order:
                if key not in fig.systems:
                    continue
                system = systems[key]
                if settle(systems.values()) is None:
                    print(f"  (still busy after {SETTLE_TIMEOUT:g}s; measuring anyway)")
                m = fig.measure(system, s)
                took = settle([system])
                m.result["extra"] = {**(m.result.get("extra") or {}), "settle_s": took}
                measurements.append(m)
                after = "still busy" if took is None else f"quiet {took:.1f}s after"
                print("  " + describe(m) + f"  [{after}]", flush=True)
    return measurements, s.rounds


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    binary = node_binary()
    if binary is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found["node"] = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        found["uvloop"] = importlib.metadata.version("uvloop")
    return found


def json_ready(value: Any) -> Any:
    """NaN and infinity (no figure, timed out) as None: results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def main() -> int:
    args = parse_args()
    s = dataclasses.replace(QUICK) if args.quick else Settings(rounds=max(1, args.rounds))
    _stop_on_sigterm()
    fd_limit = raise_fd_limit(2 * s.idle_connections + 2000)
    if fd_limit < s.idle_connections + 1000:
        s = dataclasses.replace(s, idle_connections=max(100, fd_limit // 2 - 1000))
        print(f"RLIMIT_NOFILE is {fd_limit}: idle connections cut to {s.idle_connections}")
    started = time.monotonic()
    when = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()[0]
    print(f"herd bench {when:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {versions()}")
    if load_before > 0.5:
        print(
            f"warning: load average {load_before:.1f} before starting: other work on this"
            " machine will skew the figures (rounds alternate systems to spread it evenly)"
        )
    measurements: list[Measurement] = []
    rounds_done = 0
    scale: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="herd-bench-") as tmp_name:
            tmp = Path(tmp_name)
            with contextlib.ExitStack() as stack:
                systems = start_systems(tmp, stack, args)
                measurements, rounds_done = run_rounds(systems, s, args.figures)
                if "idle_connections" in args.figures:
                    print(f"\nidle connections: {s.idle_connections:,} on one node, 8x1 p99")
                    settle(systems.values())
                    scale["idle_connections"] = idle_connections(systems[OURS], s)
                    print("  " + json.dumps(scale["idle_connections"]))
            if "million_clients" in args.figures:
                print(f"\none node holding {s.scale_clients:,} clients (others stopped)")
                scale["million_clients"] = million_clients(tmp / "million", s)
                print("  " + json.dumps(scale["million_clients"]))
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        if not TERMINATED:
            raise
        print("bench: terminated; every process it started is stopped", file=sys.stderr)
        return 128 + TERMINATED[0]
    rows: list[Row] = []
    rows += throughput_rows(measurements) + latency_rows(measurements)
    rows += propagation_rows(measurements, s.background_rate)
    rows += scale_rows(scale.get("million_clients"), scale.get("idle_connections"), s.quick)
    rows = [r for r in rows if r.ours or r.minimal or r.nodejs or r.ratio]
    elapsed = time.monotonic() - started
    title = f"medians of {rounds_done} round(s)" + (
        " (--quick: scale figures not judged)" if s.quick else ""
    )
    print(f"\n{title}\n{render(rows)}")
    verdicts = [r.verdict for r in rows]
    print(
        f"\n{verdicts.count('PASS')} pass, {verdicts.count('FAIL')} fail;"
        f" {elapsed:.0f}s in all; results in {args.json}"
    )
    results = {
        "date": when.isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), **versions()},
        "settings": dataclasses.asdict(s),
        "rounds_done": rounds_done,
        "load_average_before": round(load_before, 2),
        "elapsed_s": round(elapsed, 1),
        "table": [dataclasses.asdict(r) for r in rows],
        "scale": scale,
        "measurements": [dataclasses.asdict(m) for m in measurements],
    }
    args.json.write_text(json.dumps(json_ready(results), indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
