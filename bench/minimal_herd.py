"""The floor for a Python herd: five deliberately minimal nodes that flood.

    .venv/bin/python bench/minimal_herd.py NAME topology.json [--loop auto|asyncio|uvloop]

What the propagation figures need a herd to do, and nothing more: an IAMAT is stored,
answered and flooded to every neighbour as `CHANGELOC AT-LINE` in the same callback that
read it; a CHANGELOC whose client time is newer than the stored one is stored and flooded to
every neighbour but the one it came from; a WHATSAT for a known client gets the stored AT
line and a fixed empty Nearby Search body, one for an unknown client `? LINE`. Each node
keeps one outbound link per neighbour (`HELLO NAME`, then its whole state, then each record
as it comes) and redials a lost one every 50 ms.

No log, no journal, no validation beyond the field count, no peer authentication, no flood
window, no limits: `make bench` runs it beside our herd so the propagation rows have a
"minimal" column, i.e. what the same prober measures when a hop costs only what asyncio and
the kernel charge. Ties (equal client times) keep the first record: it is a floor, not a
herd that converges.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from minimal_node import diff_ns, loop_factory, until_stopped

PLACES = b'{"html_attributions":[],"results":[],"status":"ZERO_RESULTS"}\n\n'
REDIAL_S = 0.05

Record = tuple[float, bytes]  # (client time, AT line without its newline)


class Node:
    """The state one process shares between its connections."""

    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.records: dict[bytes, Record] = {}
        self.links: dict[str, asyncio.Transport] = {}

    def flood(self, lines: list[bytes], source: str | None) -> None:
        data = b"".join(lines)
        for name, link in self.links.items():
            if name != source:
                link.write(data)

    def apply(self, client: bytes, at_line: bytes, when: float) -> bool:
        known = self.records.get(client)
        if known is not None and known[0] >= when:
            return False
        self.records[client] = (when, at_line)
        return True


class Inbound(asyncio.Protocol):
    """A client, or a neighbour once it has said `HELLO NAME`."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.buf = b""
        self.peer: str | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        lines = (self.buf + data).split(b"\n")
        self.buf = lines.pop()
        node, out, flood = self.node, [], []
        now = time.time_ns()
        for line in lines:
            fields = line.split()
            if not fields:
                continue
            kind = fields[0]
            if kind == b"IAMAT" and len(fields) == 4:
                _, client, location, sent = fields
                at_line = b"AT %s %s %s %s %s" % (
                    node.name,
                    diff_ns(now, sent),
                    client,
                    location,
                    sent,
                )
                out.append(at_line + b"\n")
                if node.apply(client, at_line, float(sent)):
                    flood.append(b"CHANGELOC " + at_line + b"\n")
            elif kind == b"WHATSAT" and len(fields) == 4:
                known = node.records.get(fields[1])
                if known is None:
                    out.append(b"? " + line + b"\n")
                else:
                    out.append(known[1] + b"\n" + PLACES)
            elif kind == b"CHANGELOC" and len(fields) == 7:
                at_line = line[len(b"CHANGELOC ") :]
                if node.apply(fields[4], at_line, float(fields[6])):
                    flood.append(line + b"\n")
            elif kind == b"HELLO" and len(fields) == 2:
                self.peer = fields[1].decode(errors="replace")
            else:
                out.append(b"? " + line + b"\n")
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if flood:
            node.flood(flood, self.peer)


class Outbound(asyncio.Protocol):
    """Our link to one neighbour: written to, never read (a neighbour sends nothing back)."""

    def __init__(self, node: Node, name: str, lost: asyncio.Event) -> None:
        self.node, self.name, self.lost = node, name, lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        link = cast(asyncio.Transport, transport)
        state = b"".join(b"CHANGELOC %s\n" % at_line for _, at_line in self.node.records.values())
        link.write(b"HELLO %s\n%s" % (self.node.name, state))
        self.node.links[self.name] = link

    def connection_lost(self, exc: Exception | None) -> None:
        self.node.links.pop(self.name, None)
        self.lost.set()


async def keep_linked(node: Node, name: str, address: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        lost = asyncio.Event()
        try:
            await loop.create_connection(functools.partial(Outbound, node, name, lost), *address)
        except OSError:
            await asyncio.sleep(REDIAL_S)
            continue
        await lost.wait()
        await asyncio.sleep(REDIAL_S)


async def serve(name: str, topology: dict[str, Any]) -> None:
    nodes = {n: (spec["host"], int(spec["port"])) for n, spec in topology["nodes"].items()}
    neighbours = {
        b if a == name else a: nodes[b if a == name else a]
        for a, b in topology["links"]
        if name in (a, b)
    }
    node = Node(name)
    loop = asyncio.get_running_loop()
    host, port = nodes[name]
    server = await loop.create_server(
        lambda: Inbound(node), host, port, reuse_address=True, backlog=1024
    )
    links = [asyncio.create_task(keep_linked(node, n, a)) for n, a in neighbours.items()]
    try:
        await until_stopped(f"minimal herd: {name} on {host}:{port}")
    finally:
        for task in links:
            task.cancel()
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="a minimal herd node (bench baseline)")
    parser.add_argument("name")
    parser.add_argument("topology", type=Path)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args()
    topology = json.loads(args.topology.read_text())
    if args.name not in topology["nodes"]:
        raise SystemExit(f"unknown node {args.name}")
    factory: Callable[[], asyncio.AbstractEventLoop] = loop_factory(args.loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.name, topology))
    return 0


if __name__ == "__main__":
    sys.exit(main())
