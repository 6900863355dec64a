"""A WHATSAT is answered after the other reads of its loop turn: a report that reached the
node together with the query, on a neighbour's link read after it, is in the answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.hardening.harness import eventually, link_in, make_config, node_running

CHANGELOC = b"CHANGELOC kq +34.068930-118.445127 1700000000.5 1700000000.600000000 Peer\n"


async def test_a_whatsat_sees_a_report_that_reached_the_node_with_it(tmp_path: Path) -> None:
    config = make_config(tmp_path, ("Solo", "Peer"))
    async with node_running(config, "Solo", tmp_path) as node:
        _peer_in, peer = await link_in(node.port, b"Peer", b"Solo")
        await eventually(lambda: b"Peer" in node.peers.inbound, "the neighbour's link")
        reader, client = await asyncio.open_connection("127.0.0.1", node.port)
        await eventually(lambda: len(node.connections) == 1, "the client's connection")
        # Both writes reach the node's sockets before its loop runs again (this test shares
        # that loop): the query first, so the loop serves its read before the neighbour's.
        client.write(b"WHATSAT kq 10 3\n")
        peer.write(CHANGELOC)
        at_line = await asyncio.wait_for(reader.readline(), 10)
        assert at_line == b"AT Peer +0.100000000 kq +34.068930-118.445127 1700000000.5\n"
        body = await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
        assert body.startswith(b"{") and body.endswith(b"}\n\n")
        client.close()
        peer.close()
