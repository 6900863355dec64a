"""The herd as a graph: its connected parts, diameter and cut vertices, and random connected
graphs to build larger herds from. Pure: names and links in, plain values out; no I/O.

An update floods along the links, so the diameter is the most hops it needs to reach every
node, and a cut vertex is a node whose loss leaves some nodes unable to hear of the others.
`herdctl check` reports both, `herdctl topology random` builds on `random_links`, and
bench/large_herd.py times the flood from one end of a diameter to the other.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the caller brings its seeded Random; `check` never imports random
    import random

Adjacency = Mapping[str, Sequence[str]]


def adjacency(names: Iterable[str], links: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Each node's neighbours, nodes in the order of `names`, neighbours in link order."""
    graph: dict[str, list[str]] = {name: [] for name in names}
    for a, b in links:
        graph[a].append(b)
        graph[b].append(a)
    return graph


def distances(graph: Adjacency, source: str) -> dict[str, int]:
    """Hops from `source` to every node it can reach (breadth-first), itself at 0."""
    hops = {source: 0}
    queue = deque([source])
    while queue:
        node = queue.popleft()
        for other in graph[node]:
            if other not in hops:
                hops[other] = hops[node] + 1
                queue.append(other)
    return hops


def connected_parts(names: Iterable[str], links: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The connected parts of the graph, each in the order of `names`, ordered by their first."""
    graph = adjacency(names, links)
    order = {name: i for i, name in enumerate(graph)}
    parts: list[list[str]] = []
    seen: set[str] = set()
    for name in graph:
        if name not in seen:
            part = sorted(distances(graph, name), key=order.__getitem__)
            seen.update(part)
            parts.append(part)
    return parts


@dataclass(frozen=True, slots=True)
class Diameter:
    """The longest shortest path of a connected graph: its length and its two ends."""

    hops: int
    ends: tuple[str, str]


def diameter(graph: Adjacency) -> Diameter | None:
    """The diameter (a breadth-first search from every node); None when the graph is empty
    or not connected. Of equally long paths, the ends found first in node order."""
    best: Diameter | None = None
    for source in graph:
        hops = distances(graph, source)
        if len(hops) < len(graph):
            return None
        far = max(hops, key=hops.__getitem__)  # the first of the farthest, in BFS order
        if best is None or hops[far] > best.hops:
            best = Diameter(hops[far], (source, far))
    return best


def shortest_path(graph: Adjacency, start: str, end: str) -> list[str] | None:
    """One shortest path from `start` to `end`, both included; None when there is none."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue and end not in parent:
        node = queue.popleft()
        for other in graph[node]:
            if other not in parent:
                parent[other] = node
                queue.append(other)
    if end not in parent:
        return None
    path = [end]
    while (step := parent[path[-1]]) is not None:
        path.append(step)
    return path[::-1]


def cut_vertices(graph: Adjacency) -> list[str]:
    """The nodes whose removal splits their connected part (articulation points), in node
    order: Tarjan's depth-first search with low-links, iterative so a long chain of nodes
    cannot exhaust Python's recursion limit."""
    found: set[str] = set()
    depth: dict[str, int] = {}
    low: dict[str, int] = {}
    for root in graph:
        if root in depth:
            continue
        depth[root] = low[root] = 0
        root_children = 0
        # (node, its parent, the iterator over its neighbours still to visit)
        stack: list[tuple[str, str | None, Iterator[str]]] = [(root, None, iter(graph[root]))]
        while stack:
            node, parent, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                stack.pop()
                if parent is not None:
                    low[parent] = min(low[parent], low[node])
                    if parent != root and low[node] >= depth[parent]:
                        found.add(parent)
                continue
            if child == parent:
                continue  # links are unique, so this is the link we came by
            if child in depth:
                low[node] = min(low[node], depth[child])
                continue
            depth[child] = low[child] = depth[node] + 1
            if node == root:
                root_children += 1
            stack.append((child, node, iter(graph[child])))
        if root_children > 1:
            found.add(root)
    return [name for name in graph if name in found]


def link_count(nodes: int, degree: int) -> int:
    """How many links `random_links` aims for: an average degree of `degree`, as a whole
    number of links, and never fewer than a tree's or more than a complete graph's."""
    most = nodes * (nodes - 1) // 2
    return min(most, max(nodes - 1, math.ceil(nodes * degree / 2)))


def random_links(nodes: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    """Links (i < j) among nodes 0..nodes-1 of a random connected graph of average degree
    about `degree` (`link_count` links) in which no node has more than degree + 1.

    Connected by construction: a random tree first (each node, in a shuffled order, linked
    to one placed before it that still has room), then links between random pairs that both
    have room until the count is reached. Rarely, the last nodes with room are already
    linked to each other, and the graph ends a link or two short. Needs `degree` >= 2.
    """
    if nodes < 1 or degree < 2:
        raise ValueError("random_links needs at least one node and a degree of at least 2")
    cap = degree + 1
    want = link_count(nodes, degree)
    order = list(range(nodes))
    rng.shuffle(order)
    links: set[tuple[int, int]] = set()
    count = [0] * nodes

    def link(a: int, b: int) -> None:
        links.add((min(a, b), max(a, b)))
        count[a] += 1
        count[b] += 1

    for i in range(1, nodes):
        # a tree's last node placed has one link, so with cap >= 2 someone always has room
        roomy = [node for node in order[:i] if count[node] < cap]
        link(order[i], rng.choice(roomy))
    pairs = [(a, b) for a in range(nodes) for b in range(a + 1, nodes) if (a, b) not in links]
    rng.shuffle(pairs)
    for a, b in pairs:
        if len(links) >= want:
            break
        if count[a] < cap and count[b] < cap:
            link(a, b)
    return sorted(links)
