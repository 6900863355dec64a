"""Is this tree's herd faster than another commit's? Both under the same load, alternating.

    .venv/bin/python bench/ab.py REV [--load latency|ingest|propagate|propagate_loaded]
                                     [--pairs 6] [--seconds 4] [--kept]

Checks REV out into a temporary git worktree, then measures pairs: in each, the five-node
herd of one tree and then of the other (the order alternates from pair to pair), each
started afresh and driven by this process's load generator (`herdctl bench`'s engine, the
same for both sides), as `bench/node_cpu.py` does; `propagate` is `make bench`'s idle
propagation instead (200 samples, Welsh to Hands, polled), `propagate_loaded` the same
under its background load of 20,000 IAMATs a second. On a machine whose speed drifts by a
third within the hour, a figure is only worth its comparison with the other side of its own
pair: the script prints every pair's ratio (this tree / REV) of the p50, of the
replies/s and of the herd's CPU per reply, their medians, and how many pairs came out
better, with the chance of at least that many by luck alone if the two trees were alike
(a sign test). When this tree runs on its compiled core (`make native`), REV's core is
built for it too, so both sides run compiled. With `--kept` each side's herd is started
once, takes an ingest and an 8x1 load, and serves every pair, settling after each
measurement, as `make bench` keeps its herds from round to round (a herd just started
measures differently). The worktree is removed at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from figures import QUICK, Settings, ingest, latency, propagate
from node_cpu import LOADS, Sample, sample
from run import settle
from systems import REPO, System, compiled_core_of, start_herd

from node import native

PROPAGATE = ("propagate", "propagate_loaded")
FIGURES = (*sorted(LOADS), *PROPAGATE)


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """`rev` checked out in a temporary folder, as a worktree of this clone."""
    with tempfile.TemporaryDirectory(prefix="herd-ab-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(tree), rev],
            check=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
            )


def at_least_by_luck(better: int, pairs: int) -> float:
    """The chance that `better` or more of `pairs` fair coin tosses come up heads, twice
    (two-sided), at most 1: how often alike trees would split as unevenly."""
    tail = sum(math.comb(pairs, k) for k in range(max(better, pairs - better), pairs + 1))
    return min(1.0, 2 * tail / (1 << pairs))


def ratios(pairs: list[tuple[Sample, Sample]], figure: Callable[[Sample], float]) -> list[float]:
    return [figure(this) / figure(base) for base, this in pairs]


def measure(system: System, load: str, seconds: float) -> Sample:
    """One side of a pair: a `node_cpu` load, or a propagation figure."""
    if load not in PROPAGATE:
        return sample(system, "Welsh", load, seconds)
    found = propagate(system, Settings(), loaded=load == "propagate_loaded")
    nan = math.nan
    p50, p99 = found.get("latency_ms.p50"), found.get("latency_ms.p99")
    return Sample(nan, p50, p99, {}, {})


def report(rev: str, load: str, pairs: list[tuple[Sample, Sample]]) -> str:
    lines = [f"{load}: this tree against {rev}, {len(pairs)} pairs (this / {rev})"]
    lines.append(
        f"{'pair':>4}  {'p50 ms':>15}  {'p99 ms':>15}  {'replies/s':>17}  {'CPU µs/reply':>15}"
    )
    for i, (base, this) in enumerate(pairs, 1):
        lines.append(
            f"{i:>4}  {base.p50_ms:.3f} -> {this.p50_ms:.3f}"
            f"  {base.p99_ms:.3f} -> {this.p99_ms:.3f}"
            f"  {base.throughput:>7,.0f} -> {this.throughput:>7,.0f}"
            f"  {base.cpu_total_us:>5.1f} -> {this.cpu_total_us:>5.1f}"
        )
    figures: list[tuple[str, Callable[[Sample], float], bool]] = [
        ("p50", lambda s: s.p50_ms, True),
        ("p99", lambda s: s.p99_ms, True),
    ]
    if load not in PROPAGATE:
        figures += [
            ("replies/s", lambda s: s.throughput, False),
            ("herd CPU per reply", lambda s: s.cpu_total_us, True),
        ]
    for name, figure, lower_is_better in figures:
        found = ratios(pairs, figure)
        better = sum(1 for r in found if (r < 1) == lower_is_better and r != 1)
        lines.append(
            f"{name}: median ratio {statistics.median(found):.3f}"
            f" ({', '.join(f'{r:.2f}' for r in found)});"
            f" better in {better} of {len(found)} pairs"
            f" (as uneven by luck: {at_least_by_luck(better, len(found)):.2f})"
        )
    if load in PROPAGATE:
        return "\n".join(lines)
    by_process = {
        name: statistics.median(sum(t.cpu_us[name]) / sum(b.cpu_us[name]) for b, t in pairs)
        for name in pairs[0][0].cpu_us
    }
    per_process = "  ".join(f"{name} {ratio:.3f}" for name, ratio in by_process.items())
    lines.append(f"CPU per reply, median ratio by process: {per_process}")
    return "\n".join(lines)


def base_core(base_tree: Path, folder: Path) -> Path | None:
    """When this tree runs on its compiled core, the other tree's own, built into `folder`:
    a compiled tree against one from source would measure the compiler, not the change.
    None when this tree runs from source, or the other tree has no build script (older than
    the compiled core) or its build fails: it then runs from source, and the first pair
    says so."""
    script = base_tree / "tools" / "build_native.py"
    if native.why_not(native.build_dir(), REPO / "node") is not None or not script.exists():
        return None
    print("building the other tree's compiled core...", flush=True)
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(folder)], capture_output=True, text=True
    )
    if done.returncode != 0:
        print(done.stderr.strip().splitlines()[-1:], flush=True)
        return None
    return folder


def warm_up(system: System) -> None:
    """An ingest and an 8x1 load, as `make bench` runs before its propagation figures, then
    the herd's quiet."""
    ingest(system, QUICK)
    latency(system, QUICK)
    settle([system])


def measure_pairs(
    rev: str, load: str, count: int, seconds: float, *, kept: bool = False
) -> list[tuple[Sample, Sample]]:
    pairs: list[tuple[Sample, Sample]] = []
    with worktree(rev) as base_tree, tempfile.TemporaryDirectory(prefix="herd-ab-run-") as tmp:
        natives = {"base": base_core(base_tree, Path(tmp) / "base-native"), "this": None}
        trees = {"base": base_tree, "this": REPO}
        herds: dict[str, System] = {}  # with `kept`: one per side, started at the first pair

        def herd(side: str, i: int) -> System:
            if side in herds:
                return herds[side]
            folder = Path(tmp) / f"{i}-{side}"
            system = start_herd(folder, trees[side], native_dir=natives[side])
            if not i:  # a tree edited since `make native` runs from source
                print(f"{side}: core {compiled_core_of(system)}", flush=True)
            if kept:
                herds[side] = system
                warm_up(system)
            else:
                time.sleep(0.5)
            return system

        try:
            for i in range(count):
                order = ["base", "this"] if i % 2 == 0 else ["this", "base"]
                found: dict[str, Sample] = {}
                for side in order:
                    system = herd(side, i)
                    try:
                        found[side] = measure(system, load, seconds)
                    finally:
                        if not kept:
                            system.stop()
                    if kept:
                        settle([system])
                pairs.append((found["base"], found["this"]))
                base, this = found["base"].p50_ms, found["this"].p50_ms
                print(f"pair {i + 1}: p50 {base:.3f} -> {this:.3f} ms", flush=True)
        finally:
            for system in herds.values():
                system.stop()
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description="this tree's herd against another commit's")
    parser.add_argument("rev", help="the commit to compare with (anything git rev-parse takes)")
    parser.add_argument("--load", choices=FIGURES, default="latency")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0, help="load per measurement")
    parser.add_argument(
        "--kept",
        action="store_true",
        help="one herd per side for every pair, warmed first, as make bench keeps its herds",
    )
    args = parser.parse_args()
    pairs = measure_pairs(args.rev, args.load, args.pairs, args.seconds, kept=args.kept)
    print(report(args.rev, args.load, pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
