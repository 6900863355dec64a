"""Review findings in node/peers.py and the peer side of node/server.py (in-process)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from node.handshake import Responder
from tests.hardening.harness import SECRET, eventually, link_in, make_config, node_running
from tests.support import exchange


async def test_longest_valid_iamat_still_reaches_neighbours(tmp_path: Path) -> None:
    config = make_config(tmp_path, ("Solo", "Buddy"), limits={"max_line_bytes": 1000})
    async with (
        node_running(config, "Solo", tmp_path, port=None) as solo,
        node_running(config, "Buddy", tmp_path, port=None) as buddy,
    ):
        await eventually(
            lambda: solo.peers.links[b"Buddy"].up and buddy.peers.links[b"Solo"].up, "links up"
        )
        tail = b" +1+1 1520023934.5"
        client = b"c" * (1000 - len(b"IAMAT ") - len(tail))
        long_line = b"IAMAT " + client + tail
        assert len(long_line) == 1000  # exactly the limit: a valid line the node must accept
        reply = await exchange(
            "127.0.0.1", solo.port, long_line + b"\nIAMAT z +2+2 1520023935\n", timeout=10
        )
        assert reply.count(b"\nAT Solo ") == 1 and reply.startswith(b"AT Solo ")
        # Both records must reach the neighbour; with the bug, neither ever does.
        await eventually(
            lambda: buddy.store.get(b"z") is not None and buddy.store.get(client) is not None,
            "Buddy to learn both records",
            timeout=5,
        )


async def test_relink_replacing_stale_inbound_resyncs_our_link(tmp_path: Path) -> None:
    config = make_config(tmp_path, ("Solo", "Buddy"))
    buddy_port = config.node("Buddy").port
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def fake_buddy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        responder = Responder(SECRET, b"Buddy", {b"Solo"})
        hello = await reader.readline()
        writer.write(responder.on_hello(tuple(hello.split()[1:])))
        auth = await reader.readline()
        writer.write(responder.on_auth(tuple(auth.split()[1:])))
        await reader.readuntil(b"SYNCED 0\n")
        await accepted.put(writer)  # then hold the link open, like a peer that lost power

    fake = await asyncio.start_server(fake_buddy, "127.0.0.1", buddy_port)
    held: list[asyncio.StreamWriter] = []
    try:
        async with node_running(config, "Solo", tmp_path) as solo:
            held.append(await asyncio.wait_for(accepted.get(), 10))  # Solo -> Buddy is up
            _r1, w1 = await link_in(solo.port, b"Buddy", b"Solo")  # Buddy -> Solo
            held.append(w1)
            # "Buddy" comes back: a new inbound link replaces the stale one. Buddy has lost
            # its state, so Solo must send its whole state again on a fresh link.
            _r2, w2 = await link_in(solo.port, b"Buddy", b"Solo")
            held.append(w2)
            held.append(await asyncio.wait_for(accepted.get(), 5))
    finally:
        for w in held:
            w.close()
        fake.close()


async def test_link_survives_overlong_line_from_responder(tmp_path: Path) -> None:
    config = make_config(tmp_path, ("Solo", "Buddy"), limits={"max_line_bytes": 1000})
    connections = 0
    second = asyncio.Event()

    async def babbler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections >= 2:
            second.set()
        writer.write(b"X" * 5000 + b"\n")
        with contextlib.suppress(OSError):
            await reader.read()
        writer.close()

    fake = await asyncio.start_server(babbler, "127.0.0.1", config.node("Buddy").port)
    try:
        async with node_running(config, "Solo", tmp_path):
            await asyncio.wait_for(second.wait(), 5)  # the link must retry
    finally:
        fake.close()


async def test_link_stop_is_not_lost_to_a_simultaneous_wake(tmp_path: Path) -> None:
    # Buddy never listens, so the link sits in its (long) backoff wait.
    slow = {"peer_backoff_initial": 5.0, "peer_backoff_max": 5.0}
    config = make_config(tmp_path, ("Solo", "Buddy"), limits=slow)
    async with node_running(config, "Solo", tmp_path) as solo:
        link = solo.peers.links[b"Buddy"]
        await eventually(lambda: bool(link._wake._waiters), "the link to wait out its backoff")
        link.wake()  # e.g. Buddy links in just as we shut down
        stopping = asyncio.create_task(link.stop())
        done, _ = await asyncio.wait({stopping}, timeout=3)
        stopping.cancel()
        assert stopping in done, "PeerLink.stop() did not finish"
