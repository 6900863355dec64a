"""`herdctl topology random`: a random connected herd as topology.yaml text.

The links come from herdctl.graph (`random_links`, seeded, so a seed gives the same file on
any machine); the nodes are named n01, n02, ... with ports counted up from a base port, and
metrics ports likewise when asked for. The text is written by hand, not by a YAML library,
so the command starts fast; every file it writes passes `node.config.parse_config`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from herdctl import graph

MAX_NODES = 1000
BASE_PORT = 12000  # the default topology's first port
MAX_PORT = 65535


class GenerateError(Exception):
    """The options cannot make a valid topology; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Request:
    """What `herdctl topology random` was asked for."""

    nodes: int
    degree: int
    seed: int
    base_port: int = BASE_PORT
    metrics_base_port: int | None = None  # None: no metrics ports
    hosts: tuple[str, ...] = ()  # spread round-robin; empty: the default host

    def command(self) -> str:
        """The command line that makes this file again."""
        words = ["herdctl topology random", f"--nodes {self.nodes}", f"--degree {self.degree}"]
        words.append(f"--seed {self.seed}")
        if self.base_port != BASE_PORT:
            words.append(f"--base-port {self.base_port}")
        if self.metrics_base_port is not None:
            words.append(f"--metrics-base-port {self.metrics_base_port}")
        if self.hosts:
            words.append(f"--hosts {','.join(self.hosts)}")
        return " ".join(words)


def node_names(count: int) -> list[str]:
    """n01, n02, ... (at least two digits, as many as `count` needs, so they sort in order)."""
    width = max(2, len(str(count)))
    return [f"n{i:0{width}d}" for i in range(1, count + 1)]


def check(request: Request) -> None:
    """GenerateError unless the request can make a valid topology."""
    if not 1 <= request.nodes <= MAX_NODES:
        raise GenerateError(f"--nodes must be 1 to {MAX_NODES}, not {request.nodes}")
    if request.degree < 2:
        raise GenerateError(f"--degree must be at least 2 (a connected herd), not {request.degree}")
    bases = [("--base-port", request.base_port)]
    if request.metrics_base_port is not None:
        bases.append(("--metrics-base-port", request.metrics_base_port))
    for option, base in bases:
        if not 1 <= base <= MAX_PORT - request.nodes + 1:
            raise GenerateError(
                f"{option} {base}: {request.nodes} ports from it must lie within 1-{MAX_PORT}"
            )
    if request.metrics_base_port is not None:
        ours = range(request.base_port, request.base_port + request.nodes)
        metrics = range(request.metrics_base_port, request.metrics_base_port + request.nodes)
        if set(ours) & set(metrics):
            raise GenerateError(
                f"--metrics-base-port {request.metrics_base_port} overlaps the nodes' ports"
                f" {ours.start}-{ours.stop - 1}"
            )
    for host in request.hosts:
        if not host or any(ch.isspace() or ch in ",{}[]#" for ch in host):
            raise GenerateError(f"--hosts: {host!r} is not a host name or address")


def generate(request: Request) -> str:
    """The topology's YAML text, with a header saying how to make it again and its shape."""
    check(request)
    names = node_names(request.nodes)
    pairs = graph.random_links(request.nodes, request.degree, random.Random(request.seed))
    links = [(names[a], names[b]) for a, b in pairs]
    shape = graph.adjacency(names, links)
    span = graph.diameter(shape)
    assert span is not None, "random_links builds connected graphs"
    cuts = graph.cut_vertices(shape)
    lines = [
        f"# A random connected herd, made by: {request.command()}",
        f"# {len(names)} nodes, {len(links)} links, diameter {span.hops}"
        f" ({span.ends[0]} to {span.ends[1]}), cut vertices: {', '.join(cuts) or 'none'}",
        "nodes:",
        *_node_lines(names, request),
        "links:" if links else "links: []",
        *(f"  - [{a}, {b}]" for a, b in links),
        "places:",
        "  provider: auto",
    ]
    return "\n".join(lines) + "\n"


def _node_lines(names: Sequence[str], request: Request) -> list[str]:
    lines = []
    for i, name in enumerate(names):
        fields = []
        if request.hosts:
            fields.append(f"host: {json.dumps(request.hosts[i % len(request.hosts)])}")
        fields.append(f"port: {request.base_port + i}")
        if request.metrics_base_port is not None:
            fields.append(f"metrics_port: {request.metrics_base_port + i}")
        lines.append(f"  {name}: {{{', '.join(fields)}}}")
    return lines
