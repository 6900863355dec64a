"""One measurement per function, each against a running `System`, all loads from herdctl.bench.

The load generator and its meter are `herdctl.bench` (`run_load`, `run_propagate`, run on
uvloop when it is installed); this module only says which load goes where, and adds the CPU
the system under test used meanwhile.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import psutil
from systems import Address, System

from herdctl import bench as loadgen

# The path for propagation: Welsh -> Holiday -> {Goloman, Wilkes} -> Hands.
PROPAGATE_FROM = "Welsh"
PROPAGATE_TO = "Hands"
INGEST_INTO = "Welsh"


@dataclass(frozen=True)
class Settings:
    """How long and how hard each figure is measured."""

    rounds: int = 5
    rounds_budget_s: float = 480.0  # no round starts after this (propagation can be slow)
    ingest_conns: int = 32
    ingest_pipeline: int = 64
    ingest_duration: float = 3.0
    ingest_warmup: float = 1.0
    latency_conns: int = 8
    latency_duration: float = 2.0
    latency_warmup: float = 0.5
    propagate_samples: int = 200
    propagate_loaded_samples: int = 100  # fewer: each can take tens of ms under load
    propagate_timeout: float = 1.0  # per sample; a sample past it is an error
    propagate_budget_s: float = 40.0  # per measurement; past it the system counts as swamped
    background_rate: int = 20_000
    clients: int = 10_000  # distinct client names the load cycles through
    scale_clients: int = 1_000_000
    idle_connections: int = 10_000
    idle_pairs: int = 5  # (without, with) measurements of the idle-connection figure
    quick: bool = False


QUICK = Settings(
    rounds=1,
    ingest_duration=1.5,
    ingest_warmup=0.5,
    latency_duration=1.0,
    latency_warmup=0.3,
    propagate_samples=60,
    propagate_loaded_samples=40,
    propagate_budget_s=15.0,
    scale_clients=100_000,
    idle_connections=1_000,
    idle_pairs=1,
    quick=True,
)


@dataclass
class Measurement:
    """What the load generator reported, plus the CPU the system under test used."""

    figure: str
    system: str
    result: dict[str, Any]
    system_cpu_cores: float  # CPU seconds of the system's processes per wall second
    wall_s: float
    machine_cpu_cores: float = math.nan  # the whole machine's busy CPU meanwhile, all processes

    def get(self, field: str) -> float:
        """A number from the result: `throughput`, or `latency_ms.p99` style paths (NaN: none).

        The load generator's percentiles cover the answered samples only. A sample that
        failed (timed out, above all) counts here as slower than any: when more than
        1 - q of the samples failed, the q-quantile is infinite.
        """
        value: Any = self.result
        for part in field.split("."):
            value = value[part]
        if field.startswith("latency_ms.p") and self.figure.startswith("propagate"):
            q = float(field.removeprefix("latency_ms.p")) / 100
            requests, errors = self.result["requests"], self.result["errors"]
            if requests and errors / requests > 1 - q:
                return math.inf
        return math.nan if value is None else float(value)


def _measure(
    figure: str,
    system: System,
    run: Callable[[], Coroutine[Any, Any, loadgen.LoadResult]],
    budget: float | None = None,
) -> Measurement:
    """Run one load against `system`; past `budget` seconds it is abandoned, every sample lost."""

    def lost(why: dict[str, Any]) -> loadgen.LoadResult:
        nan = math.nan
        return loadgen.LoadResult(
            mode=figure,
            requests=1,
            replies=0,
            errors=1,
            duration_s=budget or 0.0,
            throughput=0.0,
            latency_ms={"p50": nan, "p90": nan, "p99": nan, "max": nan},
            cpu_percent=nan,
            extra=why,
        )

    async def bounded() -> loadgen.LoadResult:
        try:
            return await asyncio.wait_for(run(), budget)
        except TimeoutError:
            return lost({"abandoned_after_s": budget})
        except loadgen.BenchError as e:  # e.g. a node that stopped answering under the load:
            return lost({"error": str(e)})  # this round's sample is lost, not the whole run

    cpu0, busy0, t0 = system.procs.cpu_seconds(), _busy_seconds(), time.monotonic()
    result = loadgen.run_sync(bounded())
    wall = time.monotonic() - t0
    cores = (system.procs.cpu_seconds() - cpu0) / wall if wall > 0 else 0.0
    busy = (_busy_seconds() - busy0) / wall if wall > 0 else 0.0
    return Measurement(
        figure, system.key, result.as_dict(), round(cores, 3), round(wall, 3), round(busy, 3)
    )


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle, over all cores."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def iamat_load(
    target: Address,
    *,
    conns: int,
    pipeline: int,
    duration: float,
    warmup: float,
    clients: int,
) -> Coroutine[Any, Any, loadgen.LoadResult]:
    """Closed-loop IAMATs into `target`: `conns` connections, `pipeline` in flight on each."""
    return loadgen.run_load(
        [target],
        mode="iamat",
        conns=conns,
        pipeline=pipeline,
        duration=duration,
        rate=None,
        clients=clients,
        warmup=warmup,
        progress=None,
    )


def ingest(system: System, s: Settings) -> Measurement:
    """IAMAT into one node, `ingest_conns` connections x `ingest_pipeline` in flight."""
    target = system.address(INGEST_INTO)
    return _measure(
        "ingest",
        system,
        lambda: iamat_load(
            target,
            conns=s.ingest_conns,
            pipeline=s.ingest_pipeline,
            duration=s.ingest_duration,
            warmup=s.ingest_warmup,
            clients=s.clients,
        ),
    )


def latency(system: System, s: Settings, *, into: str = INGEST_INTO) -> Measurement:
    """IAMAT round trips, `latency_conns` connections x 1 in flight."""
    target = system.address(into)
    return _measure(
        "latency",
        system,
        lambda: iamat_load(
            target,
            conns=s.latency_conns,
            pipeline=1,
            duration=s.latency_duration,
            warmup=s.latency_warmup,
            clients=s.clients,
        ),
    )


def propagate(system: System, s: Settings, *, loaded: bool) -> Measurement:
    """IAMAT at Welsh until a WHATSAT at Hands sees it; idle, or under background IAMATs."""
    source = system.address(PROPAGATE_FROM)
    dest = system.address(PROPAGATE_TO)
    return _measure(
        "propagate_loaded" if loaded else "propagate_idle",
        system,
        lambda: loadgen.run_propagate(
            source,
            dest,
            samples=s.propagate_loaded_samples if loaded else s.propagate_samples,
            background=None,  # with a rate: open-loop IAMATs into the source
            background_rate=s.background_rate if loaded else None,
            timeout=s.propagate_timeout,
            progress=None,
        ),
        budget=s.propagate_budget_s,
    )
