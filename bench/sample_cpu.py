"""Where the idle propagation figure's CPU goes: each node's CPU and run-queue wait per sample.

    .venv/bin/python bench/sample_cpu.py [--samples 400] [--rounds 2] [--no-nodejs]

Runs `make bench`'s idle propagation (an IAMAT at Welsh, Hands polled by four WHATSATs in
flight until one finds it) on our herd, the minimal herd and the Node.js herd in turn, and
reads every node's /proc/PID/task/*/schedstat before and after: nanoseconds on a CPU, and
nanoseconds runnable but waiting for one. Divided by the samples, per node: what one update
costs it (two or three copies reach a relay, and Hands answers polls all along), and how
long it waited for a core. psutil's CPU times move in 10 ms ticks, too coarse for this.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from figures import Settings, propagate
from systems import (
    BenchError,
    System,
    event_loop_of,
    node_binary,
    start_herd,
    start_minimal_herd,
    start_node_herd,
)

Schedstat = dict[str, tuple[int, int]]  # node -> (ns on a CPU, ns waiting for one)


def schedstat(system: System) -> Schedstat:
    found: Schedstat = {}
    for proc in system.procs.procs:
        on_cpu = waiting = 0
        for path in glob.glob(f"/proc/{proc.pid}/task/*/schedstat"):
            with contextlib.suppress(OSError):
                ran, waited, _ = map(int, Path(path).read_text().split())
                on_cpu, waiting = on_cpu + ran, waiting + waited
        found[proc.name] = (on_cpu, waiting)
    return found


def one_run(system: System, settings: Settings) -> str:
    before = schedstat(system)
    m = propagate(system, settings, loaded=False)
    after = schedstat(system)
    samples = max(1, int(m.result["replies"]))
    polls = int(m.result["extra"].get("polls") or 0)
    lines = [
        f"{system.label}: p50 {m.get('latency_ms.p50'):.3f} ms, {samples} samples,"
        f" {polls / samples:.1f} polls per sample"
    ]
    herd = 0.0
    for name, (ran0, waited0) in before.items():
        ran = (after[name][0] - ran0) / samples / 1000
        waited = (after[name][1] - waited0) / samples / 1000
        herd += ran
        per_poll = (
            f"  {ran * samples / polls:5.1f} µs per poll" if name == "Hands" and polls else ""
        )
        lines.append(
            f"  {name:<8} CPU {ran:7.1f} µs  waiting for a core {waited:7.1f} µs{per_poll}"
        )
    lines.append(f"  herd     CPU {herd:7.1f} µs per sample")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-nodejs", action="store_true")
    args = parser.parse_args()
    if not glob.glob("/proc/self/task/*/schedstat"):
        print("sample_cpu: this kernel has no /proc/PID/schedstat", file=sys.stderr)
        return 1
    settings = dataclasses.replace(Settings(), propagate_samples=args.samples)
    with (
        tempfile.TemporaryDirectory(prefix="herd-sample-cpu-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        folder = Path(tmp)
        ours = start_herd(folder / "ours")
        stack.callback(ours.stop)
        loop = event_loop_of(ours)
        starts: list[Callable[[], System]] = [
            lambda: start_minimal_herd(folder / "minimal", loop=loop)
        ]
        if not args.no_nodejs and node_binary() is not None:
            starts.append(lambda: start_node_herd(folder / "nodejs"))
        systems = [ours]
        try:
            for start in starts:
                system = start()
                stack.callback(system.stop)
                systems.append(system)
            for round_no in range(args.rounds):
                print(f"round {round_no + 1} (µs per sample)")
                for system in systems:
                    print(one_run(system, settings), flush=True)
        except BenchError as e:
            print(f"sample_cpu: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
