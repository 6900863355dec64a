"""Benchmark the offline places provider: data load time and WHATSAT query latency.

    .venv/bin/python bench/places_bench.py [--loads N] [--queries N]

Load: median (and min/max) of N fresh decodes of the shipped file. Queries: p50/p99 of N
calls of `nearby` per location and radius (the full response dict, as the server gets it),
timed one by one after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from importlib import resources

from node.places.geodata import PlaceIndex
from node.places.offline import DATA_FILE, OfflinePlaces

LOCATIONS = {
    "UCLA": (34.068930, -118.445127),
    "Tokyo": (35.681236, 139.767125),
    "Delhi": (28.613939, 77.209021),
    "Mexico City": (19.432608, -99.133209),
    "Paris": (48.856613, 2.352222),
    "Chukotka (antimeridian)": (66.32321, 179.9),
    "Pacific (empty)": (0.0, -140.0),
    "North Pole": (90.0, 0.0),
}
RADII_KM = (1.0, 10.0, 50.0)
BOUND = 20


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_load(runs: int) -> None:
    data_file = resources.files("node.places").joinpath("data", DATA_FILE)
    raw = data_file.read_bytes()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        index = PlaceIndex(data_file.read_bytes())
        times.append(time.perf_counter() - started)
    print(f"data: {len(raw) / 1e6:.2f} MB, {len(index)} places, source: {index.source}")
    print(
        f"load (read + decode), {runs} runs: median {statistics.median(times) * 1e3:.1f} ms, "
        f"min {min(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms"
    )


async def bench_first_query() -> None:
    places = OfflinePlaces()
    started = time.perf_counter()
    await places.start()
    startup = time.perf_counter() - started
    response = await places.nearby(*LOCATIONS["UCLA"], 10_000, BOUND)
    first = time.perf_counter() - started
    print(
        f"start() returns in {startup * 1e3:.2f} ms; first UCLA query (waits for the load) "
        f"answers in {first * 1e3:.1f} ms with {len(response['results'])} results"
    )
    await places.close()


async def bench_queries(runs: int) -> None:
    places = OfflinePlaces()
    places.load()
    print(f"\nnearby(), bound {BOUND}, {runs} runs each: p50 / p99 in microseconds, results")
    print(f"{'location':<25}" + "".join(f"{f'{r:g} km':>22}" for r in RADII_KM))
    for name, (lat, lng) in LOCATIONS.items():
        cells = []
        for radius_km in RADII_KM:
            radius_m = radius_km * 1000
            for _ in range(min(50, runs)):
                await places.nearby(lat, lng, radius_m, BOUND)
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                response = await places.nearby(lat, lng, radius_m, BOUND)
                samples.append(time.perf_counter() - started)
            p50, p99 = percentile(samples, 0.5) * 1e6, percentile(samples, 0.99) * 1e6
            cells.append(f"{p50:6.0f} / {p99:5.0f}  n={len(response['results']):<2}")
        print(f"{name:<25}" + "".join(f"{cell:>22}" for cell in cells))
    await places.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="offline places benchmark")
    parser.add_argument("--loads", type=int, default=15, help="data loads to time")
    parser.add_argument("--queries", type=int, default=2000, help="queries per location/radius")
    args = parser.parse_args()
    bench_load(args.loads)
    asyncio.run(bench_first_query())
    asyncio.run(bench_queries(args.queries))


if __name__ == "__main__":
    main()
