"""How a run is measured: its clock, latency percentiles, the generator's own CPU use, and
progress reported while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence

Progress = Callable[[float, int], None]
PROGRESS_EVERY = 0.1
clock = time.perf_counter


def percentiles(values: Sequence[float], weights: Sequence[int]) -> dict[str, float]:
    """Nearest-rank p50/p90/p99 and the max of weighted samples in seconds, as ms."""
    total = sum(weights)
    out = dict.fromkeys(("p50", "p90", "p99", "max"), math.nan)
    if not total:
        return out
    marks = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)]
    cumulative, k = 0, 0
    for i in sorted(range(len(values)), key=values.__getitem__):
        cumulative += weights[i]
        while k < len(marks) and cumulative >= math.ceil(marks[k][1] * total):
            out[marks[k][0]] = round(values[i] * 1000, 3)
            k += 1
        if k == len(marks):
            break
    out["max"] = round(max(values) * 1000, 3)
    return out


class CpuMeter:
    """This process's CPU time over a wall-clock window, as % of one core."""

    def __init__(self) -> None:
        self.cpu, self.wall = time.process_time(), clock()

    def percent(self) -> float:
        wall = clock() - self.wall
        return 100 * (time.process_time() - self.cpu) / wall if wall > 0 else 0.0


@contextlib.asynccontextmanager
async def reporting(progress: Progress | None, count: Callable[[], int]) -> AsyncIterator[None]:
    """Call progress(elapsed, count()) every PROGRESS_EVERY seconds, and once at the end."""
    if progress is None:
        yield
        return
    started = clock()

    async def tick() -> None:
        while True:
            progress(clock() - started, count())
            await asyncio.sleep(PROGRESS_EVERY)

    task = asyncio.get_running_loop().create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        progress(clock() - started, count())
