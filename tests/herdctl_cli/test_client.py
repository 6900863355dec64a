"""herdctl.client: the send exchange on real loopback sockets; readiness polling with fakes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import cast

import pytest

from herdctl.client import Unreachable, exchange
from herdctl.messages import NodeRow
from herdctl.probe import port_answers
from herdctl.waiting import not_running, wait_ready
from tests.support import free_ports


@contextlib.contextmanager
def serve_once(handler: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection loopback server running `handler`; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            handler(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(5)


def read_to_eof(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_exchange_half_closes_and_reads_the_whole_reply() -> None:
    got: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        got.append(read_to_eof(conn))  # only returns because the client half-closed
        for piece in (b"AT Hands +0.1 a ", b"+1+1 1\n", b'{\n   "x" : 1\n}\n\n'):
            conn.sendall(piece)

    with serve_once(handler) as port:
        reply = exchange("127.0.0.1", port, b"IAMAT a +1+1 1\n", timeout=5)
    assert got == [b"IAMAT a +1+1 1\n"]
    assert reply == b'AT Hands +0.1 a +1+1 1\n{\n   "x" : 1\n}\n\n'


def test_exchange_to_a_closed_port_says_connection_refused() -> None:
    (port,) = free_ports(1)
    with pytest.raises(Unreachable, match=r"^connection refused$"):
        exchange("127.0.0.1", port, b"x\n", timeout=5)
    assert not asyncio.run(port_answers("127.0.0.1", port, 1.0))


def test_exchange_times_out_when_the_node_never_closes() -> None:
    release = threading.Event()

    def handler(conn: socket.socket) -> None:
        conn.sendall(b"partial")
        release.wait(10)

    with serve_once(handler) as port:
        try:
            with pytest.raises(Unreachable, match=r"no answer within 0\.3s \(after 7 bytes"):
                exchange("127.0.0.1", port, b"x\n", timeout=0.3)
        finally:
            release.set()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def scripted(*frames: dict[str, tuple[str, bool]]) -> Callable[[], list[NodeRow]]:
    """A status source replaying one frame per poll (the last one repeats)."""
    left = list(frames)

    def fetch() -> list[NodeRow]:
        frame = left.pop(0) if len(left) > 1 else left[0]
        return [
            cast(NodeRow, {"name": name, "state": state, "ready": ready})
            for name, (state, ready) in frame.items()
        ]

    return fetch


def test_wait_ready_reports_each_node_once_as_it_becomes_ready() -> None:
    clock = FakeClock()
    fetch = scripted(
        {"A": ("STARTING", False), "B": ("STARTING", False), "R": ("REMOTE", False)},
        {"A": ("RUNNING", True), "B": ("STARTING", True)},  # listening, not yet past startsecs
        {"A": ("RUNNING", True), "B": ("RUNNING", True)},
    )
    events: list[str | None] = []
    result = wait_ready(
        fetch,
        ["A", "B"],
        timeout=10,
        on_change=lambda r, name: events.append(name),
        clock=clock,
        sleep=clock.sleep,
    )
    assert result.ok and result.ready == ["A", "B"]
    assert events == [None, "A", None, "B", None]
    assert clock.now == pytest.approx(0.4)


def test_wait_ready_waits_for_the_others_once_one_is_fatal() -> None:
    clock = FakeClock()
    fetch = scripted(
        {"A": ("STARTING", False), "B": ("BACKOFF", False), "C": ("STARTING", False)},
        {"A": ("RUNNING", True), "B": ("FATAL", False), "C": ("STARTING", False)},
        {"A": ("RUNNING", True), "B": ("FATAL", False), "C": ("RUNNING", True)},
    )
    result = wait_ready(fetch, ["A", "B", "C"], timeout=10, clock=clock, sleep=clock.sleep)
    assert not result.ok
    assert (result.failed, result.ready, result.timed_out) == (["B"], ["A", "C"], [])
    assert result.last["B"]["state"] == "FATAL"
    assert clock.now == pytest.approx(0.4)


def test_wait_ready_names_the_nodes_still_waiting_at_the_deadline() -> None:
    clock = FakeClock()
    fetch = scripted({"A": ("RUNNING", True), "B": ("RUNNING", False), "C": ("BACKOFF", False)})
    result = wait_ready(fetch, ["A", "B", "C"], timeout=2, clock=clock, sleep=clock.sleep)
    assert result.timed_out == ["B", "C"]
    assert result.failed == [] and not result.ok
    assert 2 <= clock.now < 2.5


def test_wait_ready_needs_every_node_ready_in_the_same_poll() -> None:
    clock = FakeClock()
    fetch = scripted(
        {"A": ("RUNNING", True), "B": ("STARTING", False)},
        {"A": ("RUNNING", False), "B": ("RUNNING", True)},  # A lost a link meanwhile
        {"A": ("RUNNING", True), "B": ("RUNNING", True)},
    )
    events: list[str | None] = []
    result = wait_ready(
        fetch,
        ["A", "B"],
        timeout=10,
        on_change=lambda r, name: events.append(name),
        clock=clock,
        sleep=clock.sleep,
    )
    assert result.ok and result.ready == ["A", "B"]
    assert events == ["A", None, "B", None, None]  # each node reported once
    assert clock.now == pytest.approx(0.4)


def test_status_counts_every_local_node_not_running() -> None:
    rows = scripted(
        {
            "A": ("RUNNING", True),
            "B": ("FATAL", False),
            "C": ("STARTING", False),
            "D": ("STOPPED", False),
            "E": ("BACKOFF", False),
            "R": ("REMOTE", False),  # another machine's to run
            "S": ("REMOTE_DOWN", False),  # ... whose port does not answer: shown, not counted
            "U": ("UNMANAGED", False),  # no supervisor, but its port answers
        }
    )()
    assert not_running(rows) == ["B", "C", "D", "E"]
    assert not_running(rows[:1] + rows[-3:]) == []
