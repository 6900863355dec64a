"""Where a lone update's time goes inside each hop of our herd, step by step.

    .venv/bin/python bench/hop_steps.py [--samples N] [--loop auto|asyncio]

The chain of bench/hops.py (H1 - H2 - H3, and the tap as everyone's neighbour), with every
node run by bench/traced_node.py, which notes the moment a record passes each step. One
IAMAT at a time goes to H1; for each node the notes of that update are lined up along its
path: the neighbour's flood write, this node's wakeup, its read, the journal write (a
client's at the turn's end, after its read), the hand-over to the links, the end of the
read, the flood write. Medians and p99 per step, in
µs, for the client's hop into H1 and the two neighbour hops.

On the asyncio loop the wakeup is split at the selector's return (the kernel's delivery and
the scheduler, then the loop reaching the connection); uvloop's poll is out of Python's
reach, so there the two are one step.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hops import CHAIN, SECRET, TAP, Sample, percentile, run_system, take_samples
from systems import BENCH_DIR

Note = tuple[int, str, str]  # ns (POSIX), step, detail


class Timeline:
    """One node's notes, in time order, searchable by step."""

    def __init__(self, notes: Sequence[Sequence[object]]) -> None:
        ordered = sorted((int(str(ns)), str(step), str(detail)) for ns, step, detail in notes)
        self.notes: list[Note] = ordered
        self.times = [ns for ns, _, _ in ordered]

    def first(self, step: str, after: int, before: int, detail: str | None = None) -> int | None:
        """The time of the first `step` (with `detail`, when given) in [after, before)."""
        i = bisect.bisect_left(self.times, after)
        while i < len(self.notes) and self.notes[i][0] < before:
            _, name, what = self.notes[i]
            if name == step and (detail is None or what == detail):
                return self.notes[i][0]
            i += 1
        return None

    def last(self, step: str, after: int, before: int) -> int | None:
        """The time of the last `step` in [after, before]."""
        i = bisect.bisect_right(self.times, before) - 1
        while i >= 0 and self.notes[i][0] >= after:
            if self.notes[i][1] == step:
                return self.notes[i][0]
            i -= 1
        return None


def in_turn(
    line: Timeline, start: int, until: int, steps: list[tuple[str, str | None]]
) -> list[int] | None:
    """The times of `steps` (step, detail), each the first at or after the one before."""
    found: list[int] = []
    at = start
    for step, detail in steps:
        when = line.first(step, at, until, detail)
        if when is None:
            return None
        found.append(when)
        at = when
    return found


def hop(line: Timeline, arrived: int, until: int, downstream: str) -> dict[str, int] | None:
    """The steps of one record through one node, in ns: the upstream's write to this node
    began at `arrived`, and the hop ends when this node's write to `downstream` begins (the
    system call that hands the bytes over can wake the receiver, which may run before the
    call returns, so the hops tile the path at the start of each write)."""
    path = [
        ("journal<", None),
        ("journal>", None),
        ("flood", None),
        ("send<", None),
        ("send<", downstream),
    ]
    found = in_turn(line, arrived, until, path)
    if found is None:
        return None
    journal, journalled, flood, send, send_next = found
    read = line.last("read", arrived, journal)
    if read is None:
        return None
    # A client's read leaves its records to the turn's journal write (node.turn_journal):
    # the read ends before the journal write, at the turn's end. A neighbour's read writes
    # the journal within itself, and ends after its flood.
    read_end = line.first("read>", read, journal)
    deferred = read_end is not None
    if read_end is None:
        read_end = line.first("read>", flood, until)
        if read_end is None:
            return None
    epoll = line.last("epoll", arrived, read)
    steps: dict[str, int] = {}
    if epoll is not None:
        steps["wake: write to us begins -> selector returns"] = epoll - arrived
        steps["loop: selector -> data_received (recv)"] = read - epoll
    else:
        steps["wake and read: write to us begins -> data_received"] = read - arrived
    if deferred:
        steps["parse, check, apply"] = read_end - read
        steps["read's end -> the turn's journal write"] = journal - read_end
    else:
        steps["parse, check, apply"] = journal - read
    steps.update(
        {
            "journal write": journalled - journal,
            "journal -> flood handed to links": flood - journalled,
            "handed -> first flood write begins": send - flood,
            "other flood writes before the next node's": send_next - send,
            "total: write to us begins -> ours to the next": send_next - arrived,
            "(after it: the rest of the read, log events)": (
                0 if deferred else max(0, read_end - send_next)
            ),
        }
    )
    return steps


def breakdown(samples: list[Sample], lines: dict[str, Timeline]) -> dict[str, dict[str, list[int]]]:
    """Per hop ("client -> H1", "H1 -> H2", "H2 -> H3"), per step, the ns of every sample."""
    found: dict[str, dict[str, list[int]]] = {}
    bounds = [int(s.sent * 1e9) for s in samples] + [2**63]
    for i, sample in enumerate(samples):
        until = bounds[i + 1]
        arrived = bounds[i]  # the client's send: H1's upstream write
        for k, name in enumerate(CHAIN):
            downstream = CHAIN[k + 1] if k + 1 < len(CHAIN) else TAP
            steps = hop(lines[name], arrived, until, downstream)
            if steps is None:
                break
            upstream = "client" if k == 0 else CHAIN[k - 1]
            per_step = found.setdefault(f"{upstream} -> {name}", {})
            for step, ns in steps.items():
                per_step.setdefault(step, []).append(ns)
            arrived = arrived + steps["total: write to us begins -> ours to the next"]
        tap_hops = [int((b - a) * 1e9) for a, b in itertools.pairwise(sample.copies)]
        for k, ns in enumerate(tap_hops):
            found.setdefault(f"{CHAIN[k]} -> {CHAIN[k + 1]}", {}).setdefault(
                "(the tap's figure for this hop)", []
            ).append(ns)
    return found


def step_line(step: str, values: list[int], q: float, width: int) -> str:
    """`step`, then the median and the `q` quantile of its ns `values`, in µs."""
    p50 = statistics.median(values) / 1000
    high = percentile([float(v) for v in values], q) / 1000
    return f"{step:<{width}}{p50:>9.1f} / {high:<9.1f}"


def _order(hop_name: str) -> int:
    """Hops in path order: the client's into H1 first."""
    return 0 if hop_name.startswith("client") else 1 + CHAIN.index(hop_name.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description="a lone update's hop, step by step")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--loop", choices=("auto", "asyncio"), default="auto")
    parser.add_argument("--traces", type=Path, help="keep each node's notes in this folder")
    args = parser.parse_args()
    os.environ["HERD_SECRET"] = SECRET
    if args.loop == "asyncio":
        os.environ["HERD_LOOP"] = "asyncio"
    with tempfile.TemporaryDirectory(prefix="herd-hop-steps-") as tmp:
        folder = Path(tmp) / "ours"
        traces = args.traces or Path(tmp) / "traces"
        traces.mkdir(parents=True, exist_ok=True)
        traced = str(BENCH_DIR / "traced_node.py")

        def argv(name: str, config: Path) -> list[str]:
            return [
                sys.executable,
                traced,
                str(traces / f"trace-{name}.json"),
                name,
                "-c",
                str(config),
            ]

        samples = run_system(
            "ours (traced)",
            argv,
            folder,
            "yaml",
            lambda tap, h1: take_samples(tap, h1, args.samples),
        )
        lines = {
            name: Timeline(json.loads((traces / f"trace-{name}.json").read_text()))
            for name in CHAIN
        }
    found = breakdown(samples, lines)
    loop = "asyncio" if args.loop == "asyncio" else "the node's default loop"
    print(f"a lone update's hops, step by step ({len(samples)} samples, {loop}), µs p50 / p99")
    for hop_name, per_step in sorted(found.items(), key=lambda item: _order(item[0])):
        print(f"  {hop_name}")
        tap_last = sorted(per_step.items(), key=lambda item: item[0].startswith("(the tap"))
        for step, values in tap_last:
            print("    " + step_line(step, values, 0.99, 46))
    return 0


if __name__ == "__main__":
    sys.exit(main())
