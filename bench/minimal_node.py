"""The ceiling for one Python process: a deliberately minimal IAMAT server.

    .venv/bin/python bench/minimal_node.py PORT [--loop auto|asyncio|uvloop]

One asyncio.Protocol on uvloop when it is installed (unless `--loop asyncio`): no log, no
journal, no flooding, no validation beyond the field count. It splits each read into lines
with bytes.split, stores the record in a dict and answers the AT line with the diff in
exact integer nanoseconds; any other line gets `? LINE`. `make bench` compares the full node
with this one under the same load: the ratio says how much of one Python process the real
node's features cost.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from typing import cast

from node.eventloop import LoopUnavailable
from node.eventloop import loop_factory as choose_loop

NS = 1_000_000_000
NAME = b"Minimal"


def diff_ns(received_ns: int, time_sent: bytes) -> bytes:
    """`received - sent` as a signed 9-decimal string (times with at most 9 decimals)."""
    whole, _, frac = time_sent.partition(b".")
    d = received_ns - (int(whole) * NS + int(frac[:9].ljust(9, b"0")))
    sign = b"-" if d < 0 else b"+"
    s, ns = divmod(abs(d), NS)
    return b"%s%d.%09d" % (sign, s, ns)


class MinimalProtocol(asyncio.Protocol):
    """One client connection: lines in, AT replies out, one write per read."""

    def __init__(self, store: dict[bytes, tuple[bytes, bytes, int]]) -> None:
        self.store = store
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        data = self.buf + data
        lines = data.split(b"\n")
        self.buf = lines.pop()
        out: list[bytes] = []
        now = time.time_ns()
        store = self.store
        for line in lines:
            fields = line.split()
            if len(fields) == 4 and fields[0] == b"IAMAT":
                _, client, location, sent = fields
                store[client] = (location, sent, now)
                out.append(
                    b"AT %s %s %s %s %s\n" % (NAME, diff_ns(now, sent), client, location, sent)
                )
            elif fields:
                out.append(b"? " + line.rstrip(b"\r") + b"\n")
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def eof_received(self) -> bool:
        if self.buf:
            self.data_received(b"\n")
        return False  # close once written


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    store: dict[bytes, tuple[bytes, bytes, int]] = {}
    server = await loop.create_server(
        lambda: MinimalProtocol(store), "127.0.0.1", port, reuse_address=True, backlog=1024
    )
    try:
        await until_stopped(f"minimal node: listening on 127.0.0.1:{port}")
    finally:
        server.close()


async def until_stopped(listening: str) -> None:
    """Say `listening` (and on which loop) on stderr, then wait for SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    kind = type(loop).__module__.split(".")[0]
    print(f"{listening} ({kind})", file=sys.stderr, flush=True)
    await stop.wait()


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        return choose_loop(choice)[1]
    except LoopUnavailable as e:
        raise SystemExit(str(e)) from None


def main() -> int:
    parser = argparse.ArgumentParser(description="the minimal IAMAT node (bench baseline)")
    parser.add_argument("port", type=int)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
