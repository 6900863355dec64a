"""A node's hot paths in one process, warm, without sockets: µs per request or per record.

    .venv/bin/python bench/in_process.py [--repeats N] [--reads N]

One node with a real journal (fsync off) and a real log file, in a temporary folder, fed by
hand through the same protocol objects the event loop would call:
- IAMAT: a client's read of one IAMAT (journal write, reply, log event);
- poll: a client's read of one WHATSAT for a client not yet heard of, then of four;
- CHANGELOC: a neighbour's read of one new record, then of 34 (about a 2 ms flood window
  at 17,000 updates/s), with the flood written to two neighbours' stand-in transports.
Each figure is the best of `--repeats` passes: on a shared machine the best pass is the
one least disturbed. Compare two trees by running each in turn (PYTHONPATH=that tree).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import systems  # noqa: F401  (first: this tree's node is the one measured, see run_this_tree)

from node.client import ClientConnection
from node.config import load_config
from node.journal import Journal
from node.logbook import LogBook
from node.peers.inbound import PeerConnection
from node.protocol import LineSplitter
from node.server import NodeServer
from node.turn_writes import Gathering, Holding, TurnWrites

READS = 20_000  # per pass, by default


class StandInTransport:
    """Takes writes and forgets them."""

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if key == "peername" else default

    def write(self, data: bytes) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: asyncio.Protocol) -> None:
        pass


class EndOfEveryRead(TurnWrites):
    """The harness ends a turn after every client read (`end_turn`: a WHATSAT is answered
    there), so nothing is left scheduled on the loop; the loop's own call_soon per turn
    (about 1 µs on uvloop) is not in the figures."""

    def add(self, conn: Gathering) -> None:
        self._waiting.append(conn)

    def hold(self, conn: Holding) -> None:
        self._held.append(conn)

    def settle_at_end(self) -> None:
        pass


class NoPlaces:
    """The paths measured here never ask for places."""

    name = "none"

    async def close(self) -> None:
        pass


def make_node(folder: Path) -> tuple[NodeServer, LogBook]:
    names = ("Solo", "Peer", "A", "B")
    doc = {
        "nodes": {name: {"host": "127.0.0.1", "port": 20000 + i} for i, name in enumerate(names)},
        "links": [["Solo", "Peer"], ["Solo", "A"], ["Solo", "B"]],
        "places": {"provider": "offline"},
    }
    config_path = folder / "topology.json"
    config_path.write_text(json.dumps(doc))
    log = LogBook(folder / "Solo.log", max_bytes=1 << 30, backups=1)
    journal = Journal(folder / "journal", fsync="no", log=log.event)
    node = NodeServer(
        load_config(config_path),
        "Solo",
        secret=b"s",
        places=cast(Any, NoPlaces()),
        log=log,
        journal=journal,
    )
    journal.open(node.store)
    node.turn_writes = EndOfEveryRead(node.end_turn)
    for link in node.peers.links.values():  # up, writing to stand-ins
        link.up = True
        link._writer = cast(
            Any, SimpleNamespace(write=lambda data: None, transport=StandInTransport())
        )
    return node, log


def best_of(repeats: int, reads: Callable[[], list[bytes]], feed: Callable[[bytes], None]) -> float:
    """The fastest pass's µs per read."""
    best = float("inf")
    for _ in range(repeats):
        datas = reads()
        started = time.perf_counter()
        for data in datas:
            feed(data)
        best = min(best, (time.perf_counter() - started) / len(datas) * 1e6)
    return best


def measure(repeats: int, reads: int) -> list[tuple[str, float, int]]:
    """(figure, µs per read, records per read)."""
    with tempfile.TemporaryDirectory(prefix="herd-in-process-") as tmp:
        node, log = make_node(Path(tmp))
        client = ClientConnection(node)
        client.connection_made(cast(Any, StandInTransport()))
        peer = PeerConnection(
            node,
            node.peers,
            cast(Any, StandInTransport()),
            peer=b"Peer",
            conn_id=2,
            where="stand-in",
            splitter=LineSplitter(),
            read_paused=False,
            write_paused=False,
        )
        sent = iter(range(10**9))
        links = list(node.peers.links.values())

        def iamats() -> list[bytes]:
            return [
                b"IAMAT c%d +34.068930-118.445127 1700000000.%09d\n" % (i % 10_000, next(sent))
                for i in range(reads)
            ]

        def polls(n: int) -> Callable[[], list[bytes]]:
            return lambda: [b"WHATSAT nobody-yet 0 1\n" * n] * reads

        def changelocs(n: int) -> Callable[[], list[bytes]]:
            def record(k: int) -> bytes:
                seq = next(sent)  # a later time each: every record is new
                return (
                    b"CHANGELOC p%d +34.068930-118.445127 1700000001.%09d 1700000001.%09d A\n"
                    % (
                        k % 10_000,
                        seq,
                        seq,
                    )
                )

            return lambda: [b"".join(record(k) for k in range(n)) for _ in range(reads // n)]

        def client_read(data: bytes) -> None:
            client.data_received(data)
            node.turn_writes.end_turn()  # what the loop would run at the end of the turn

        def peer_read(data: bytes) -> None:
            peer.data_received(data)
            for link in links:  # what the loop would run at the end of the turn
                if link._send_scheduled:
                    link._send_outbox()

        found = [
            ("IAMAT, one per read", best_of(repeats, iamats, client_read), 1),
            (
                "WHATSAT unknown client, one per read",
                best_of(repeats, polls(1), client_read),
                1,
            ),
            (
                "WHATSAT unknown client, four per read",
                best_of(repeats, polls(4), client_read),
                4,
            ),
            ("CHANGELOC new, one per read", best_of(repeats, changelocs(1), peer_read), 1),
            ("CHANGELOC new, 34 per read", best_of(repeats, changelocs(34), peer_read), 34),
        ]
        log.close()
        return found


async def _main(repeats: int, reads: int) -> list[tuple[str, float, int]]:
    return measure(repeats, reads)  # inside a running loop: the node schedules its timers there


def main() -> int:
    parser = argparse.ArgumentParser(description="a node's hot paths, in process")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reads", type=int, default=READS, help="reads per pass")
    args = parser.parse_args()
    found = asyncio.run(_main(args.repeats, args.reads))
    print(f"in process, best of {args.repeats} passes of {args.reads:,} reads")
    for figure, per_read, records in found:
        print(f"  {figure:<40}{per_read:>8.2f} µs per read{per_read / records:>8.2f} µs per record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
