"""herdctl.graph: diameter, cut vertices and parts against brute force on small graphs, and
the random topologies: connected, the size asked for, reproducible, degrees within bounds."""

from __future__ import annotations

import itertools
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from herdctl import graph
from tests.support import LINKS, NAMES

PROPERTY = settings(max_examples=300, deadline=None, database=None)


@st.composite
def graphs(draw: st.DrawFn, max_nodes: int = 9) -> tuple[list[str], list[tuple[str, str]]]:
    """Names and unique links of a small graph, connected or not."""
    names = [f"v{i}" for i in range(draw(st.integers(1, max_nodes)))]
    pairs = list(itertools.combinations(names, 2))
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    return names, [(b, a) if draw(st.booleans()) else (a, b) for a, b in chosen]


def all_distances(names: list[str], links: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """Floyd-Warshall: the brute-force distances between every pair (inf: not reachable)."""
    dist = {(a, b): 0.0 if a == b else math.inf for a in names for b in names}
    for a, b in links:
        dist[a, b] = dist[b, a] = 1
    for k, i, j in itertools.product(names, repeat=3):
        dist[i, j] = min(dist[i, j], dist[i, k] + dist[k, j])
    return dist


def part_count(names: list[str], links: list[tuple[str, str]]) -> int:
    dist = all_distances(names, links)
    return len({frozenset(b for b in names if dist[a, b] < math.inf) for a in names})


@PROPERTY
@given(graphs())
def test_diameter_is_the_longest_shortest_path(shape: tuple[list[str], list[tuple[str, str]]]):
    names, links = shape
    dist = all_distances(names, links)
    span = graph.diameter(graph.adjacency(names, links))
    longest = max(dist.values())
    if longest == math.inf:
        assert span is None
        return
    assert span is not None
    assert span.hops == longest == dist[span.ends]
    path = graph.shortest_path(graph.adjacency(names, links), *span.ends)
    assert path is not None and len(path) == span.hops + 1
    assert all({a, b} in ({x, y} for x, y in links) for a, b in itertools.pairwise(path))


@PROPERTY
@given(graphs())
def test_cut_vertices_are_those_whose_removal_adds_a_part(
    shape: tuple[list[str], list[tuple[str, str]]],
):
    names, links = shape
    before = part_count(names, links)
    expected = [
        v
        for v in names
        if part_count([n for n in names if n != v], [link for link in links if v not in link])
        > before
    ]
    assert graph.cut_vertices(graph.adjacency(names, links)) == expected


@PROPERTY
@given(graphs())
def test_connected_parts_split_the_nodes_by_reach(shape: tuple[list[str], list[tuple[str, str]]]):
    names, links = shape
    dist = all_distances(names, links)
    parts = graph.connected_parts(names, links)
    assert sorted(itertools.chain.from_iterable(parts)) == sorted(names)
    for part in parts:
        assert part == [n for n in names if n in part]  # in the order of the names
        assert all(dist[a, b] < math.inf for a in part for b in part)
    assert len(parts) == part_count(names, links)


def test_the_default_herd_by_hand() -> None:
    """Welsh hangs off Holiday alone, and Hands is three hops from it either way round
    (Welsh, Holiday, Goloman or Wilkes, Hands): diameter 3, Holiday the one cut vertex."""
    shape = graph.adjacency(NAMES, LINKS)
    assert graph.diameter(shape) == graph.Diameter(3, ("Hands", "Welsh"))
    assert graph.cut_vertices(shape) == ["Holiday"]
    assert graph.shortest_path(shape, "Welsh", "Hands") in (
        ["Welsh", "Holiday", "Goloman", "Hands"],
        ["Welsh", "Holiday", "Wilkes", "Hands"],
    )


def test_a_long_chain_needs_no_recursion() -> None:
    names = [f"v{i}" for i in range(5000)]
    chain = graph.adjacency(names, itertools.pairwise(names))
    assert graph.cut_vertices(chain) == names[1:-1]


def test_small_and_split_graphs() -> None:
    assert graph.diameter(graph.adjacency(["A"], [])) == graph.Diameter(0, ("A", "A"))
    assert graph.diameter(graph.adjacency([], [])) is None
    assert graph.diameter(graph.adjacency(["A", "B"], [])) is None
    assert graph.shortest_path(graph.adjacency(["A", "B"], []), "A", "B") is None
    assert graph.cut_vertices(graph.adjacency("ABC", [("A", "B"), ("B", "C")])) == ["B"]
    assert graph.connected_parts(
        ["A", "B", "C", "D", "E"], [("A", "B"), ("C", "D"), ("B", "D")]
    ) == [["A", "B", "C", "D"], ["E"]]


@PROPERTY
@given(nodes=st.integers(1, 60), degree=st.integers(2, 8), seed=st.integers(0, 2**32))
def test_random_links_are_connected_sized_and_bounded(nodes: int, degree: int, seed: int):
    links = graph.random_links(nodes, degree, random.Random(seed))
    assert links == graph.random_links(nodes, degree, random.Random(seed))  # reproducible
    assert len(links) == len(set(links)) and all(0 <= a < b < nodes for a, b in links)
    names = [str(i) for i in range(nodes)]
    named = [(names[a], names[b]) for a, b in links]
    assert len(graph.connected_parts(names, named)) == 1
    shape = graph.adjacency(names, named)
    assert max(len(others) for others in shape.values()) <= degree + 1
    want = graph.link_count(nodes, degree)
    assert nodes - 1 <= len(links) <= want
    assert len(links) == want  # in every case tried; the docstring says why it could miss


def test_link_count_is_the_average_degree_within_a_tree_and_a_complete_graph() -> None:
    assert graph.link_count(20, 3) == 30
    assert graph.link_count(5, 3) == 8  # 7.5 rounded up
    assert graph.link_count(3, 5) == 3  # no more than a triangle
    assert graph.link_count(1, 3) == 0
    assert graph.link_count(2, 2) == 1


def test_different_seeds_give_different_herds() -> None:
    made = {tuple(graph.random_links(20, 3, random.Random(seed))) for seed in range(10)}
    assert len(made) == 10
