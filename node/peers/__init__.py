"""Links between neighbours: both halves, and the registry that ties them to the node.

Each node keeps one outbound link per neighbour (`outbound.PeerLink`) and sends its updates
only over its own links; a neighbour's inbound link (`inbound.PeerConnection`) carries the
neighbour's updates to us. When a neighbour links in to us, we wake our link to it at once,
so both ends have sent their whole state. The node is seen through `host.PeerHost` only.
"""

from __future__ import annotations

import asyncio

import node as _node
from node import native as _native

# Before the submodules: their compiled builds, when the node runs compiled (node.native).
_native.activate_subpackage(__path__, _node.__path__, _node.NATIVE)

from node.config import HerdConfig  # noqa: E402
from node.peers.host import PeerHost  # noqa: E402
from node.peers.inbound import PEER_LINES_PER_TURN, PeerConnection  # noqa: E402
from node.peers.outbound import (  # noqa: E402
    FLOOD_BURST_GAP,
    FLOOD_WINDOW,
    FLOOD_WINDOW_STEP,
    HOLD_BACK,
    MAX_LINK_BUFFER,
    PeerLink,
)
from node.status import LinkStatus  # noqa: E402

__all__ = [
    "FLOOD_BURST_GAP",
    "FLOOD_WINDOW",
    "FLOOD_WINDOW_STEP",
    "HOLD_BACK",
    "MAX_LINK_BUFFER",
    "PEER_LINES_PER_TURN",
    "PeerConnection",
    "PeerHost",
    "PeerLink",
    "Peers",
    "hold_back_when_from",
]


def hold_back_when_from(config: HerdConfig, name: str) -> dict[bytes, frozenset[bytes]]:
    """Per neighbour S of node `name`: those of its neighbours that the topology links to S
    as well and whose names sort after `name` (see `Peers.hold_back_when_from`)."""
    ours = config.neighbours(name)
    return {
        sender.encode(): frozenset(
            other.encode() for other in config.neighbours(sender) if other in ours and other > name
        )
        for sender in ours
    }


class Peers:
    """Both halves of every link of a node: our outbound links, their inbound ones."""

    def __init__(self, node: PeerHost) -> None:
        self.node = node
        self.links: dict[bytes, PeerLink] = {}
        self.inbound: dict[bytes, PeerConnection] = {}
        self.synced_from: set[bytes] = set()  # neighbours whose whole state we have received
        # Per neighbour S: those of our neighbours that the topology links to S as well and
        # whose names sort after ours. What S sends us, S sends them too, and each of them
        # sends it on to us: our copy to them is held back (`PeerLink.hold_back`) and goes
        # only if theirs has not come within HOLD_BACK. One copy crosses such a pair, not two.
        self.hold_back_when_from: dict[bytes, frozenset[bytes]] = {}

    def start(self) -> None:
        node = self.node
        config = node.config
        self.hold_back_when_from = hold_back_when_from(config, node.name)
        for name in config.neighbours(node.name):  # sorted
            link = PeerLink(node, config.node(name))
            self.links[link.name_bytes] = link
            link.start()

    async def stop(self) -> None:
        """Close every link, both halves."""
        await asyncio.gather(*(link.stop() for link in self.links.values()))
        for conn in list(self.inbound.values()):
            conn.abort("shutdown")

    def heartbeat(self, now: float, timeout: float) -> None:
        """PING every inbound link, and drop those silent past `timeout`."""
        for conn in list(self.inbound.values()):
            conn.heartbeat(now, timeout)

    def flood(self, lines: list[bytes], origin: bytes | None, read_at: float | None = None) -> None:
        """Send the CHANGELOC lines (each with LF) of records this node just applied to
        every neighbour but `origin`, the one they came from; to a neighbour that `origin`
        links to as well, hold them back a moment (see `hold_back_when_from`). `read_at`:
        when they were read, if earlier than now (`PeerLink.send`)."""
        hold = self.hold_back_when_from.get(origin, frozenset()) if origin else frozenset()
        joined = b""
        for name, link in self.links.items():
            if name == origin:
                continue
            if name in hold:
                link.hold_back(lines)
                continue
            if not joined:
                joined = b"".join(lines)
            link.send(joined, len(lines), read_at)

    def held_back_from(self, peer: bytes) -> dict[bytes, None] | None:
        """The lines we hold back from `peer` (None when we have no link to it)."""
        link = self.links.get(peer)
        return None if link is None else link.held_back

    def status(self) -> dict[str, LinkStatus]:
        """Per neighbour: our link to it, its link to us, and whether it has synced us."""
        return {
            link.name: {
                "out": link.up,
                "out_since": link.since,
                "in": name in self.inbound,
                "synced": name in self.synced_from,
                "buffered": link.buffered(),
            }
            for name, link in self.links.items()
        }

    def inbound_up(self, peer: bytes, conn: PeerConnection) -> None:
        """A neighbour linked in: drop its stale link, and make sure ours to it is up."""
        old = self.inbound.get(peer)
        self.inbound[peer] = conn
        replaced = old is not None and old is not conn
        self.synced_from.discard(peer)  # until this link's own SYNCED arrives
        if old is not None and replaced:
            old.abort("replaced by a new link from the same peer")
        link = self.links.get(peer)
        if link is not None:
            link.wake(resync=replaced)

    def inbound_lost(self, peer: bytes, conn: PeerConnection) -> None:
        if self.inbound.get(peer) is conn:
            del self.inbound[peer]
            self.synced_from.discard(peer)

    def inbound_synced(self, peer: bytes, conn: PeerConnection) -> None:
        """The neighbour finished sending us its whole state: we have caught up with it."""
        if self.inbound.get(peer) is conn:
            self.synced_from.add(peer)
