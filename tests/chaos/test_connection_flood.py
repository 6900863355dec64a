"""A connection flood on one node never locks its neighbours out.

Five real nodes; Holiday's client caps are low (300 per address, 500 in all) and a thread
keeps about 2,500 client connections open to it from 127.0.0.1, the address Welsh links in
from too, opening new ones as fast as the node resets the old. Meanwhile Welsh (whose only
neighbour is Holiday) is killed and restarted: its links with Holiday come back up, an IAMAT
sent at Goloman reaches Welsh through Holiday, and Holiday's log stays bounded.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.chaos.lines import LIMITS, send_lines, whatsat_records
from tests.support import Herd, wait_until, write_topology

FLOOD = 2500
Report = Callable[..., None]


class Flood:
    """A thread that keeps `size` connections open to `port`, replacing those reset."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.opened = 0
        self.failed = 0
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for s in self._socks:
            s.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:
                self.failed += 1
                self._stop.wait(0.01)
                continue
            self.opened += 1
            if self.opened % 3 == 0:  # a third talk like clients; the rest sit idle
                with contextlib.suppress(OSError):
                    s.sendall(b"IAMAT flood%d +1+1 1\n" % self.opened)
            self._socks.append(s)
            if len(self._socks) > self.size:
                self._socks.pop(0).close()


@contextlib.contextmanager
def fd_limit_raised() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 16
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def links_up_since(log: str, peer: str, since: int) -> bool:
    """Whether `log`, from byte `since` on, shows the link to `peer` up."""
    return f" LINK_UP peer={peer} " in log[since:]


def test_a_connection_flood_never_keeps_a_neighbour_out(tmp_path: Path, figures: Report) -> None:
    limits = {**LIMITS, "max_connections": 300, "max_connections_total": 500}
    config = write_topology(tmp_path, extra={"limits": limits})
    with fd_limit_raised(), Herd(config) as herd:
        herd.start()
        herd.wait_links_up()
        holiday, welsh = herd.nodes["Holiday"], herd.nodes["Welsh"]
        with Flood(holiday.port, FLOOD) as flood:
            wait_until(lambda: flood.opened >= 2 * FLOOD, "the flood to pass 5,000 connections")
            mark_h, mark_w = len(holiday.log_text()), 0
            started = time.monotonic()
            welsh.stop(signal.SIGKILL)
            welsh.start()
            welsh.wait_ready()
            wait_until(
                lambda: (
                    links_up_since(welsh.log_text(), "Holiday", mark_w)
                    and links_up_since(holiday.log_text(), "Welsh", mark_h)
                ),
                "Welsh and Holiday to link up again under the flood",
            )
            relinked = time.monotonic() - started
            reply, _ = send_lines(herd.nodes["Goloman"].port, b"IAMAT through.flood +5+5 7\n")
            assert reply.startswith(b"AT Goloman ")
            wait_until(
                lambda: (
                    whatsat_records(welsh.port, [b"through.flood"])[b"through.flood"] is not None
                ),
                "the IAMAT at Goloman to reach Welsh",
            )
            opened = flood.opened
        # The count of what a second held back is written when that second is over (the
        # node's sweep), after the flood may have stopped.
        wait_until(
            lambda: " CONN_REFUSED_SUPPRESSED " in holiday.log_text(),
            "the refusals past ten a second to be summarised",
        )
        log = holiday.log_text()
        refused_lines = log.count(" CONN_REFUSED ")
        suppressed = sum(
            int(line.split("count=")[1].split()[0])
            for line in log.splitlines()
            if " CONN_REFUSED_SUPPRESSED " in line
        )
        assert suppressed > 0, "a flood this size must be summarised, not logged line by line"
        assert refused_lines < opened / 4, (refused_lines, opened)
        assert " LOOP_ERROR " not in log  # the cap kept the node clear of its fd limit
        figures(
            opened=opened,
            refused_logged=refused_lines,
            refused_summarised=suppressed,
            relinked_s=round(relinked, 2),
        )
