"""A larger herd of real nodes: 20 of them on a seeded random topology (the generator of
`herdctl topology random`), an update crossing its diameter, and what a cut vertex means:
with it down, the herd is in parts and an update stays in the part it was sent to."""

from __future__ import annotations

import random
import time
from functools import partial
from pathlib import Path

from herdctl import graph, topogen
from tests.support import Herd, exchange_sync, wait_until, write_topology

NODES, DEGREE, SEED = 20, 3, 7


def knows(port: int, client: bytes) -> bool:
    return exchange_sync(port, b"WHATSAT %s 1 1\n" % client).startswith(b"AT ")


def tell(port: int, client: bytes) -> None:
    reply = exchange_sync(port, b"IAMAT %s +34.0-118.4 %d.5\n" % (client, int(time.time())))
    assert reply.startswith(b"AT "), reply


def test_twenty_nodes_flood_across_the_diameter_and_split_at_a_cut_vertex(
    tmp_path: Path,
) -> None:
    names = topogen.node_names(NODES)
    links = [
        (names[a], names[b]) for a, b in graph.random_links(NODES, DEGREE, random.Random(SEED))
    ]
    shape = graph.adjacency(names, links)
    span = graph.diameter(shape)
    cuts = graph.cut_vertices(shape)
    assert span is not None and span.hops >= 4 and cuts, "the seed's herd has changed"
    config = write_topology(tmp_path, names, links)
    with Herd(config) as herd:
        herd.start()
        port = {name: node.port for name, node in herd.nodes.items()}
        start, end = span.ends
        tell(port[start], b"across")
        wait_until(partial(knows, port[end], b"across"), f"{start}'s update at {end}")
        for name in names:
            wait_until(partial(knows, port[name], b"across"), f"the update at {name}")

        cut = cuts[0]
        herd.stop(cut)
        rest = [name for name in names if name != cut]
        parts = graph.connected_parts(rest, [link for link in links if cut not in link])
        assert len(parts) >= 2
        here, *elsewhere = parts
        tell(port[here[0]], b"stays")
        for name in here:
            wait_until(partial(knows, port[name], b"stays"), f"the update at {name}")
        # every node of its part has it, so it has flooded all it can: no path leads on
        for part in elsewhere:
            assert not any(knows(port[name], b"stays") for name in part), part
