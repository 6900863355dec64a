"""Where `make bench`'s idle propagation figure spends its time, node by node.

    .venv/bin/python bench/polled_steps.py [--samples N] [--traces DIR]

The five-node herd of `make bench`, every node run by bench/traced_node.py, and the
figure's own prober (`herdctl.loadgen.propagate.Prober`): an IAMAT at Welsh, and WHATSATs at
Hands, four in flight, until one finds the client. Unlike bench/hops.py, the destination
is busy answering polls and the machine's cores are never idle, as in the figure.

For each sample the notes are lined up along the path Welsh -> Holiday -> {Goloman,
Wilkes} -> Hands (the copy that reaches Hands first): each node's wakeup (its upstream's
write began -> its `data_received`), its read up to the end of the journal write, and the
journal to its flood write. At Hands: the journal to the turn's end that answers the polls
(`ClientConnection.answer_held`; the polls were read in the record's own turn or in a later
one), and from there to the prober's hit: all the polls of the turn (four, as a rule) are
answered, the first hit written at once, which wakes the prober. Medians and p90 in µs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from hop_steps import Timeline, step_line
from systems import BENCH_DIR, HOST, NAMES, REPO, Procs, System, wait_ready, write_topology

from herdctl.loadgen.connection import posix_time
from herdctl.loadgen.loop import run_sync
from herdctl.loadgen.meter import clock
from herdctl.loadgen.propagate import POLL_ARGS, Prober

SOURCE, FIRST, MIDDLE, DEST = "Welsh", "Holiday", ("Goloman", "Wilkes"), "Hands"
WARMUP = 20  # samples not counted: connections and code warming up
WAIT = 2.0  # seconds a sample may take

Sample = tuple[int, int, int]  # POSIX ns: the IAMAT sent, its reply read, the poll's hit read


async def take_samples(source: tuple[str, int], dest: tuple[str, int], count: int) -> list[Sample]:
    """`count` samples as `herdctl bench`'s propagation takes them, in POSIX ns."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(*source)
    prober = Prober()
    await loop.create_connection(lambda: prober, *dest)
    to_posix = time.time_ns() - int(clock() * 1e9)
    samples: list[Sample] = []
    try:
        for i in range(WARMUP + count):
            name = b"polled-%d-%d" % (os.getpid(), i)
            hit = prober.begin(b"WHATSAT " + name + POLL_ARGS)
            sent = clock()
            writer.write(b"IAMAT %s +34.068930-118.445127 %s\n" % (name, posix_time()))
            await asyncio.wait_for(reader.readline(), WAIT)
            replied = clock()
            arrived, _ = await asyncio.wait_for(hit, WAIT)
            await prober.settle(WAIT, dest)
            if i >= WARMUP:
                ns = [int(t * 1e9) + to_posix for t in (sent, replied, arrived)]
                samples.append((ns[0], ns[1], ns[2]))
    finally:
        writer.close()
        if prober.transport is not None:
            prober.transport.abort()
    return samples


def breakdown(samples: list[Sample], lines: dict[str, Timeline]) -> dict[str, list[int]]:
    """Per step, its ns in every sample whose path could be followed to the end."""
    found: dict[str, list[int]] = {}
    bounds = [sent for sent, _, _ in samples] + [2**63]
    for i, (sent, replied, arrived) in enumerate(samples):
        steps = sample_steps(lines, sent, bounds[i + 1], arrived)
        if steps is None:
            continue
        steps["(the IAMAT's reply, at Welsh)"] = replied - sent
        for step, ns in steps.items():
            found.setdefault(step, []).append(ns)
    return found


def through(
    line: Timeline, name: str, upstream: str, wrote: int, until: int, downstream: str
) -> tuple[dict[str, int], int] | None:
    """A record's steps through one node, from its upstream's write (`wrote`) to the start
    of its own write to `downstream`; None where the notes do not show them all."""
    read = line.first("read", wrote, until, upstream)
    journalled = None if read is None else line.first("journal>", read, until)
    onward = None if journalled is None else line.first("send<", journalled, until, downstream)
    if read is None or journalled is None or onward is None:
        return None
    steps = {
        f"{name}: wakeup (upstream's write began -> read)": read - wrote,
        f"{name}: read -> journal written": journalled - read,
        f"{name}: journal -> its flood write on the path": onward - journalled,
    }
    return steps, onward


def sample_steps(
    lines: dict[str, Timeline], sent: int, until: int, arrived: int
) -> dict[str, int] | None:
    """One sample's steps along the path its first copy to reach Hands took."""
    source = through(lines[SOURCE], SOURCE, "client", sent, until, FIRST)
    if source is None:
        return None
    steps, to_first = source
    best: tuple[dict[str, int], str, int] | None = None
    for middle in MIDDLE:  # Holiday floods to both; the copy that reaches Hands first counts
        first = through(lines[FIRST], FIRST, SOURCE, to_first, until, middle)
        if first is None:
            continue
        first_steps, to_middle = first
        label = "/".join(MIDDLE)
        onward = through(lines[middle], label, FIRST, to_middle, until, DEST)
        if onward is not None and (best is None or onward[1] < best[2]):
            best = ({**first_steps, **onward[0]}, middle, onward[1])
    if best is None:
        return None
    path_steps, middle, to_dest = best
    steps.update(path_steps)
    line = lines[DEST]
    read = line.first("read", to_dest, until, middle)
    journalled = None if read is None else line.first("journal>", read, until)
    poll = None if journalled is None else line.first("answer", journalled, until, "client")
    if read is None or journalled is None or poll is None:
        return None
    steps[f"{DEST}: wakeup (upstream's write began -> read)"] = read - to_dest
    steps[f"{DEST}: read -> journal written"] = journalled - read
    steps[f"{DEST}: journal -> the turn's end answers the polls"] = poll - journalled
    # Not split at the write: it wakes the prober, which often runs before it returns.
    steps[f"{DEST}: polls answered -> the prober has the hit"] = arrived - poll
    steps["total: IAMAT sent -> the prober has the hit"] = arrived - sent
    return steps


def run(samples: int, traces: Path, folder: Path) -> dict[str, list[int]]:
    """Start the traced herd in `folder`, take the samples, stop it, line the notes up."""
    config, topology = write_topology(folder)
    procs = Procs()
    addresses = {name: (HOST, int(topology["nodes"][name]["port"])) for name in NAMES}
    system = System("herd (traced)", "ours", addresses, procs, folder)
    traced = str(BENCH_DIR / "traced_node.py")
    try:
        for name in NAMES:
            trace = str(traces / f"trace-{name}.json")
            argv = [sys.executable, traced, trace, name, "-c", str(config)]
            procs.spawn(name, argv, REPO, folder / "logs")
        wait_ready(system)
        taken = run_sync(take_samples(addresses[SOURCE], addresses[DEST], samples))
    finally:
        procs.stop()
    lines = {
        name: Timeline(json.loads((traces / f"trace-{name}.json").read_text())) for name in NAMES
    }
    return breakdown(taken, lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="the polled propagation figure, node by node")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--traces", type=Path, help="keep each node's notes in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herd-polled-steps-") as tmp:
        traces = args.traces or Path(tmp) / "traces"
        traces.mkdir(parents=True, exist_ok=True)
        found = run(args.samples, traces, Path(tmp) / "herd")
    followed = len(found.get("total: IAMAT sent -> the prober has the hit", []))
    print(
        f"idle propagation {SOURCE} -> {DEST}, polled as make bench polls it:"
        f" {followed} of {args.samples} samples followed, µs p50 / p90"
    )
    for step, values in found.items():
        print("  " + step_line(step, values, 0.90, 68))
    return 0


if __name__ == "__main__":
    sys.exit(main())
