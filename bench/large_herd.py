"""A larger herd on this machine: propagation across its diameter, and what the flood costs.

    .venv/bin/python bench/large_herd.py [--nodes 20] [--degree 3] [--seed 7] [--samples 100]
                                         [--quick] [--json PATH]

Builds a random connected topology (herdctl.graph, the generator of `herdctl topology random`,
seeded: the same herd on every run), starts every node as `python -m node NAME -c FILE` on
free loopback ports, each with a metrics port, and waits until an IAMAT at every node is seen
at every other. Then it times propagation from one end of the herd's diameter to the other
(herdctl.bench's `run_propagate`: an IAMAT at one end, WHATSATs polling at the other), idle,
and reads every node's /metrics before and after to count what the flood did meanwhile:

- received: CHANGELOC records that reached a node from a neighbour, summed over the herd;
- applied: those that were new to it (every update, once at each of the n - 1 other nodes);
- duplicates: received - applied, records it held already;
- the duplicate ratio: duplicates / received, the share of the flood's traffic wasted.

Flooding a record to every neighbour but the one it came from, each update would cross
2E - (n - 1) links (E links, n nodes), and n - 1 of them bring it news: that plain flood's
figures are printed beside the measured ones. A node holds its copy back from a neighbour
that the sender links to as well and whose name sorts after its own, and drops it when that
neighbour's copy comes first (`node.peers.Peers.hold_back_when_from`), so the measured
deliveries are fewer; `spared` counts the copies so dropped.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from systems import (
    HOST,
    Procs,
    System,
    flood_counters,
    free_ports,
    node_argv,
    settled_flood_counters,
    wait_ready,
)

from herdctl import bench as loadgen
from herdctl import graph, topogen

REPO = Path(__file__).resolve().parent.parent
SETTLE_TIMEOUT = 10.0  # seconds for the last updates to finish flooding after the samples
SAMPLE_TIMEOUT = 1.0  # seconds for one update to cross the herd before it counts as lost


def build(nodes: int, degree: int, seed: int, folder: Path) -> tuple[Path, dict[str, Any]]:
    """The topology file: the seeded random graph, on free ports, offline places."""
    names = topogen.node_names(nodes)
    links = graph.random_links(nodes, degree, random.Random(seed))
    ports = free_ports(2 * nodes)
    doc: dict[str, Any] = {
        "nodes": {
            name: {"host": HOST, "port": ports[i], "metrics_port": ports[nodes + i]}
            for i, name in enumerate(names)
        },
        "links": [[names[a], names[b]] for a, b in links],
        "places": {"provider": "offline"},
        "journal": {"fsync": "everysec"},
        "log_dir": str(folder / "logs"),
        "data_dir": str(folder / "data"),
        "run_dir": str(folder / "run"),
    }
    path = folder / "topology.yaml"
    path.write_text(json.dumps(doc, indent=2) + "\n")  # JSON is YAML
    return path, doc


def herd_total(counters: dict[str, dict[str, float]], kind: str) -> float:
    """One flood counter summed over every node of the herd."""
    return sum(node[kind] for node in counters.values())


def main() -> int:
    parser = argparse.ArgumentParser(description="propagation across a larger herd's diameter")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--degree", type=int, default=3, help="average links per node")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="30 samples: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    samples = 30 if args.quick else args.samples
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="herd-large-") as tmp:
        folder = Path(tmp)
        config, doc = build(args.nodes, args.degree, args.seed, folder)
        names = list(doc["nodes"])
        links = [(a, b) for a, b in doc["links"]]
        shape = graph.adjacency(names, links)
        span = graph.diameter(shape)
        assert span is not None, "random_links builds connected graphs"
        path = graph.shortest_path(shape, *span.ends)
        cuts = graph.cut_vertices(shape)
        addresses = {name: (HOST, int(spec["port"])) for name, spec in doc["nodes"].items()}
        procs = Procs()
        system = System(f"herd of {len(names)}", "ours", addresses, procs, folder)
        try:
            for name in names:
                procs.spawn(name, node_argv(name, config), REPO, folder / "logs")
            wait_ready(system, timeout=60.0)
            ready_s = time.monotonic() - began
            rss = sum(psutil.Process(p.pid).memory_info().rss for p in procs.procs)
            ports = {name: int(spec["metrics_port"]) for name, spec in doc["nodes"].items()}
            before = flood_counters(ports)
            result = loadgen.run_sync(
                loadgen.run_propagate(
                    addresses[span.ends[0]],
                    addresses[span.ends[1]],
                    samples=samples,
                    timeout=SAMPLE_TIMEOUT,
                    progress=None,
                )
            )
            everywhere = result.replies * (len(names) - 1)  # each update at every other node
            after = settled_flood_counters(ports, before, everywhere, SETTLE_TIMEOUT)
        finally:
            procs.stop()
    received, applied, spared = (
        herd_total(after, kind) - herd_total(before, kind)
        for kind in ("received", "applied", "spared")
    )
    updates = applied / (len(names) - 1)
    n, m = len(names), len(links)
    predicted_received = 2 * m - (n - 1)
    predicted_ratio = (predicted_received - (n - 1)) / predicted_received
    ratio = (received - applied) / received if received else math.nan
    figures = {
        "nodes": n,
        "links": m,
        "degree": args.degree,
        "seed": args.seed,
        "diameter": span.hops,
        "path": path,
        "cut_vertices": cuts,
        "samples": samples,
        "seen": result.replies,
        "lost": result.errors,
        "propagation_ms": result.latency_ms,
        "poll_interval_us": result.extra.get("poll_interval_us"),
        "updates_flooded": updates,
        "received_per_update": received / updates if updates else math.nan,
        "duplicates_per_update": (received - applied) / updates if updates else math.nan,
        "spared_per_update": spared / updates if updates else math.nan,
        "duplicate_ratio": ratio,
        "predicted_received_per_update": predicted_received,
        "predicted_duplicate_ratio": predicted_ratio,
        "rss_bytes": rss,
        "ready_s": ready_s,
        "wall_s": time.monotonic() - began,
    }
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if result.replies and not result.errors else 1


def report(f: dict[str, Any]) -> None:
    hops = f["diameter"]
    p50, p99 = f["propagation_ms"]["p50"], f["propagation_ms"]["p99"]
    print(
        f"large herd: {f['nodes']} nodes, {f['links']} links (degree {f['degree']},"
        f" seed {f['seed']}), cut vertices: {', '.join(f['cut_vertices']) or 'none'};"
        f" up and flooding in {f['ready_s']:.1f}s, {f['rss_bytes'] / 2**20:,.0f} MiB RSS in all"
    )
    print(f"diameter {hops}: {' -> '.join(f['path'])}")
    print(
        f"propagation {f['path'][0]} -> {f['path'][-1]} ({hops} hops), idle,"
        f" {f['seen']}/{f['samples']} samples: p50 {p50:.3f} ms, p99 {p99:.3f} ms"
        f" ({p50 / hops:.3f} ms a hop at p50; polled every {f['poll_interval_us']} us)"
    )
    print(
        f"flood: {f['updates_flooded']:.0f} updates, each received {f['received_per_update']:.1f}"
        f" times across the herd ({f['predicted_received_per_update']} with a plain flood:"
        f" 2E - (n - 1)), {f['duplicates_per_update']:.1f} of them duplicates: duplicate ratio"
        f" {f['duplicate_ratio']:.3f} (duplicates / received; {f['predicted_duplicate_ratio']:.3f}"
        f" with a plain flood); {f['spared_per_update']:.1f} copies per update held back and spared"
    )
    print(f"large herd: {f['wall_s']:.1f}s in all")


if __name__ == "__main__":
    sys.exit(main())
