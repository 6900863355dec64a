"""A herd node that notes when a record passes each step of its path: for bench/hop_steps.py.

    python bench/traced_node.py TRACE.json NAME -c CONFIG

Runs the real node (`node.__main__.main`, from source: see `HERD_NATIVE` below) with thin
wrappers around the methods a record passes through, each noting `time.time_ns()` (the
clock every process shares, like the kernel's packet stamps) and the step's name. On exit,
after SIGTERM, the notes go to TRACE.json as [[ns, step, detail], ...]. The wrappers cost
about half a microsecond each, so a traced hop is a few microseconds slower than an
untraced one.

Steps:
  epoll        the event loop's selector returned with something to do (asyncio loop only:
               uvloop's poll cannot be wrapped from Python)
  read, read>  a connection's data_received began and ended (detail: client or peer)
  answer       a client connection began answering, at the turn's end, the WHATSATs its
               reads brought (`ClientConnection.answer_held`)
  journal<, journal>  the journal's write began and ended (its write system call within)
  flood        the batch's new records were handed to the links
  send<, send> a link's flood write began and ended (detail: the neighbour's name)
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A compiled class's methods cannot be wrapped, and compiled callers would not see the
# wrappers: a traced node runs from source (node.native).
os.environ["HERD_NATIVE"] = "0"

import node.__main__ as node_main
from node.client import ClientConnection
from node.journal import Journal
from node.peers import Peers
from node.peers.inbound import PeerConnection
from node.peers.outbound import PeerLink

Note = tuple[int, str, str]
NOTES: list[Note] = []


def around(
    cls: type, method: str, begin: str, end: str | None, detail: Callable[[Any], str]
) -> None:
    """Wrap `cls.method` to note `begin` before it runs and `end` (if any) after."""
    original = getattr(cls, method)
    note = NOTES.append
    clock = time.time_ns

    @functools.wraps(original)
    def traced(self: Any, *args: Any) -> Any:
        note((clock(), begin, detail(self)))
        try:
            return original(self, *args)
        finally:
            if end is not None:
                note((clock(), end, detail(self)))

    setattr(cls, method, traced)


def trace_selector() -> None:
    """Note each return of asyncio's selector that brought events."""
    selector = selectors.DefaultSelector
    original = selector.select
    note = NOTES.append
    clock = time.time_ns

    def traced(self: Any, timeout: float | None = None) -> Any:
        ready = original(self, timeout)
        if ready:
            note((clock(), "epoll", ""))
        return ready

    selector.select = traced  # type: ignore[method-assign]


def install() -> None:
    trace_selector()
    around(ClientConnection, "data_received", "read", "read>", lambda _: "client")
    around(PeerConnection, "data_received", "read", "read>", lambda c: c.peer.decode())
    around(ClientConnection, "answer_held", "answer", None, lambda _: "client")
    around(Journal, "write", "journal<", "journal>", lambda _: "")
    around(Peers, "flood", "flood", None, lambda _: "")
    around(PeerLink, "_send_outbox", "send<", "send>", lambda link: link.name)


def main() -> int:
    trace_file = Path(sys.argv[1])
    install()
    try:
        return node_main.main(sys.argv[2:])
    finally:
        trace_file.write_text(json.dumps(NOTES))


if __name__ == "__main__":
    sys.exit(main())
