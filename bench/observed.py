"""Does watching the herd cost it anything? The herd's figures, unobserved and observed.

    .venv/bin/python bench/observed.py [--rounds N] [--quick]

One supervised herd (`herdctl up`: five nodes with a metrics port each, and the dashboard),
measured by the same loads as `make bench` (ingest, latency, idle propagation) in rounds of
two runs: one with nobody watching, one with a scraper reading every node's /metrics once a
second and a browser's worth of dashboard open (its server-sent event stream read as it
comes). The order alternates every round. For each figure: the medians, their ratio, the
median of each round's own observed/unobserved ratio (paired: the two runs back to back),
and the noise, the spread of the unobserved runs themselves ((max - min) / median);
watching passes when the paired ratio costs less than that noise (at least 5 %).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from figures import QUICK, Measurement, Settings, ingest, latency, propagate
from systems import HOST, NAMES, Procs, System, free_ports, topology

HERDCTL = str(Path(sys.executable).with_name("herdctl"))
SCRAPE_INTERVAL = 1.0  # seconds: Prometheus scrapes every 15 s; this is 15 times harder
MIN_TOLERANCE = 0.05


class HerdProcs(Procs):
    """The supervised herd's node processes, for the CPU they use; `herdctl down` stops them."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__()
        self.handles = [psutil.Process(pid) for pid in pids]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.handles:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total


def herdctl(config: Path, *args: str) -> str:
    done = subprocess.run(
        [HERDCTL, "-c", str(config), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"herdctl {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


@contextlib.contextmanager
def supervised_herd(folder: Path) -> Iterator[tuple[System, dict[str, int], str | None]]:
    """The herd up under its supervisor; (system, metrics ports, dashboard URL or None)."""
    ports = free_ports(2 * len(NAMES))
    doc: dict[str, Any] = topology(ports[: len(NAMES)], folder)
    metrics = dict(zip(NAMES, ports[len(NAMES) :], strict=True))
    for name, spec in doc["nodes"].items():
        spec["metrics_port"] = metrics[name]
    doc["dashboard"] = {"host": HOST, "port": 0}
    config = folder / "topology.yaml"
    config.write_text(json.dumps(doc, indent=2) + "\n")
    herdctl(config, "up")
    try:
        rows = json.loads(herdctl(config, "status", "--json"))
        addresses = {row["name"]: (HOST, int(row["port"])) for row in rows}
        procs = HerdProcs([int(row["pid"]) for row in rows])
        url: str | None = None
        with contextlib.suppress(SystemExit):
            url = herdctl(config, "dashboard").strip().splitlines()[-1]
        yield System("herd (supervised)", "ours", addresses, procs, folder), metrics, url
    finally:
        subprocess.run([HERDCTL, "-c", str(config), "down"], capture_output=True, check=False)


class Watcher:
    """A scraper at SCRAPE_INTERVAL on every node, and a dashboard's event stream, in
    threads, while `watching` is set; counts what each read."""

    def __init__(self, metrics: dict[str, int], dashboard: str | None) -> None:
        self.metrics = metrics
        self.dashboard = dashboard
        self.watching = threading.Event()
        self.done = threading.Event()
        self.scrapes = 0
        self.scrape_bytes = 0
        self.events = 0
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._scrape, daemon=True)]
        if dashboard is not None:
            self._threads.append(threading.Thread(target=self._stream, daemon=True))

    def __enter__(self) -> Watcher:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.watching.set()  # wake whoever waits for it, to see `done`

    def _scrape(self) -> None:
        while not self.done.is_set():
            self.watching.wait()
            started = time.monotonic()
            for port in self.metrics.values():
                try:
                    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
                        self.scrape_bytes += len(r.read())
                    self.scrapes += 1
                except OSError as e:
                    self.errors.append(f"scrape {port}: {e}")
            self.done.wait(max(0.0, SCRAPE_INTERVAL - (time.monotonic() - started)))

    def _stream(self) -> None:
        assert self.dashboard is not None
        url = self.dashboard.rstrip("/") + "/api/events"
        while not self.done.is_set():
            self.watching.wait()
            try:
                with urllib.request.urlopen(url, timeout=5) as stream:
                    while self.watching.is_set() and not self.done.is_set():
                        line = stream.readline()
                        if not line:
                            break
                        if line.startswith(b"event:") or line.startswith(b"data:"):
                            self.events += line.startswith(b"data:")
            except OSError as e:
                self.errors.append(f"events: {e}")
                self.done.wait(1.0)


def round_trips(system: System, settings: Settings) -> Measurement:
    return latency(system, settings)


def idle_propagation(system: System, settings: Settings) -> Measurement:
    return propagate(system, settings, loaded=False)


FIGURES: list[tuple[str, Callable[[System, Settings], Measurement], str, bool]] = [
    # name, measure (each run once per run of the round), field, higher is better
    ("ingest replies/s", ingest, "throughput", True),
    ("latency 8x1 p50 ms", round_trips, "latency_ms.p50", False),
    ("latency 8x1 p99 ms", round_trips, "latency_ms.p99", False),
    ("propagation idle p50 ms", idle_propagation, "latency_ms.p50", False),
    ("propagation idle p99 ms", idle_propagation, "latency_ms.p99", False),
]


def main() -> int:
    parser = argparse.ArgumentParser(description="the herd's figures, unobserved and observed")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="shorter loads, 2 rounds")
    args = parser.parse_args()
    settings = QUICK if args.quick else Settings()
    rounds = 2 if args.quick else args.rounds
    samples: dict[tuple[str, bool], list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="herd-observed-") as tmp,
        supervised_herd(Path(tmp)) as (system, metrics, url),
    ):
        print(
            f"observed: {rounds} rounds, scraper at {SCRAPE_INTERVAL:g} Hz on"
            f" {len(metrics)} nodes, dashboard {url or 'not served (no dashboard)'}"
        )
        with Watcher(metrics, url) as watcher:
            for i in range(rounds):
                for observed in (i % 2 == 1, i % 2 == 0):
                    if observed:
                        watcher.watching.set()
                        time.sleep(SCRAPE_INTERVAL)  # the stream is open, a scrape done
                    elif watcher.watching.is_set():
                        watcher.watching.clear()
                        time.sleep(2 * SCRAPE_INTERVAL)  # the last scrape and event end
                    measured: dict[Callable[..., Measurement], Measurement] = {}
                    for name, measure, field, _ in FIGURES:
                        m = measured.get(measure) or measure(system, settings)
                        measured[measure] = m
                        samples.setdefault((name, observed), []).append(m.get(field))
            watcher.watching.clear()
    print(f"{'figure':<26}{'unobserved':>12}{'observed':>12}{'ratio':>8}{'paired':>8}{'noise':>8}")
    failed = 0
    for name, _, _, higher_is_better in FIGURES:
        plain, watched = samples[(name, False)], samples[(name, True)]
        p, w = statistics.median(plain), statistics.median(watched)
        ratio = w / p if p else float("nan")
        # Each round's two runs were measured back to back: their ratio sees less of the
        # machine's drift than the ratio of the medians.
        paired = statistics.median(b / a for a, b in zip(plain, watched, strict=True) if a)
        noise = max(MIN_TOLERANCE, (max(plain) - min(plain)) / p if p else 0.0)
        cost = (1 - paired) if higher_is_better else (paired - 1)
        verdict = "PASS" if cost <= noise else "FAIL"
        failed += verdict == "FAIL"
        figures = f"{p:>12,.3f}{w:>12,.3f}{ratio:>8.3f}{paired:>8.3f}{noise:>7.0%}"
        print(f"{name:<26}{figures}  {verdict}")
    each = watcher.scrape_bytes / max(1, watcher.scrapes)
    print(
        f"while observed: {watcher.scrapes} scrapes ({each:,.0f} bytes each),"
        f" {watcher.events} dashboard events, {len(watcher.errors)} errors;"
        f" {len(FIGURES) - failed} pass / {failed} fail"
    )
    for error in watcher.errors[:5]:
        print(f"  {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
