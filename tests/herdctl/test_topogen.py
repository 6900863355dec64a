"""herdctl.topogen: the random topology's text is a valid topology.yaml, as asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herdctl import graph, topogen
from node.config import DEFAULT_HOST, parse_config

WHERE = Path("/herd/topology.yaml")


@settings(max_examples=60, deadline=None, database=None)
@given(
    nodes=st.integers(1, 120),
    degree=st.integers(2, 6),
    seed=st.integers(0, 10**6),
    metrics=st.booleans(),
    hosts=st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2", "::1", "b.example"]), max_size=3),
)
def test_every_generated_file_is_a_valid_connected_topology(
    nodes: int, degree: int, seed: int, metrics: bool, hosts: list[str]
) -> None:
    request = topogen.Request(
        nodes=nodes,
        degree=degree,
        seed=seed,
        base_port=20000,
        metrics_base_port=30000 if metrics else None,
        hosts=tuple(hosts),
    )
    text = topogen.generate(request)
    config = parse_config(text, WHERE)
    assert list(config.nodes) == topogen.node_names(nodes)
    assert [spec.port for spec in config.nodes.values()] == list(range(20000, 20000 + nodes))
    expected_metrics = list(range(30000, 30000 + nodes)) if metrics else [0] * nodes
    assert [spec.metrics_port for spec in config.nodes.values()] == expected_metrics
    spread = [hosts[i % len(hosts)] for i in range(nodes)] if hosts else [DEFAULT_HOST] * nodes
    assert [spec.host for spec in config.nodes.values()] == spread
    assert len(graph.connected_parts(config.nodes, config.links)) == 1
    assert len(config.links) == graph.link_count(nodes, degree)
    assert topogen.generate(request) == text  # the same seed, the same file


def test_the_header_says_how_to_make_it_again_and_its_shape() -> None:
    text = topogen.generate(topogen.Request(nodes=20, degree=3, seed=7))
    first, second = text.splitlines()[:2]
    made_by = "herdctl topology random --nodes 20 --degree 3 --seed 7"
    assert first == f"# A random connected herd, made by: {made_by}"
    config = parse_config(text, WHERE)
    shape = graph.adjacency(config.nodes, config.links)
    span = graph.diameter(shape)
    assert span is not None
    cuts = ", ".join(graph.cut_vertices(shape)) or "none"
    assert second == (
        f"# 20 nodes, 30 links, diameter {span.hops} ({span.ends[0]} to {span.ends[1]}),"
        f" cut vertices: {cuts}"
    )
    other = topogen.Request(
        nodes=3, degree=2, seed=1, base_port=14000, metrics_base_port=15000, hosts=("a", "b")
    )
    assert (
        topogen.generate(other)
        .splitlines()[0]
        .endswith(
            "--nodes 3 --degree 2 --seed 1 --base-port 14000 --metrics-base-port 15000 --hosts a,b"
        )
    )


def test_names_sort_in_order() -> None:
    assert topogen.node_names(3) == ["n01", "n02", "n03"]
    assert topogen.node_names(120)[-1] == "n120" and topogen.node_names(120)[0] == "n001"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (topogen.Request(nodes=0, degree=3, seed=1), "--nodes must be 1 to 1000, not 0"),
        (topogen.Request(nodes=5, degree=1, seed=1), "--degree must be at least 2"),
        (
            topogen.Request(nodes=20, degree=3, seed=1, base_port=65530),
            "--base-port 65530: 20 ports from it must lie within 1-65535",
        ),
        (
            topogen.Request(nodes=20, degree=3, seed=1, metrics_base_port=12010),
            "--metrics-base-port 12010 overlaps the nodes' ports 12000-12019",
        ),
        (
            topogen.Request(nodes=2, degree=3, seed=1, hosts=("a b",)),
            "--hosts: 'a b' is not a host name or address",
        ),
    ],
)
def test_impossible_requests_say_why(request_: topogen.Request, message: str) -> None:
    with pytest.raises(topogen.GenerateError) as refused:
        topogen.generate(request_)
    assert str(refused.value).startswith(message)
