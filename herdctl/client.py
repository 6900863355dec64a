"""The CLI's side of the wires: the protocol client for `send`, port probes, readiness polling.

`exchange` speaks to a node the way PROTOCOL.md's clients do: send the bytes, half-close,
read every byte until the node closes. `wait_ready` polls the supervisor's status until the
wanted nodes are ready, one failing, or a deadline; it takes its status source, clock and
sleep as parameters so tests replay histories without processes.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

import psutil

from herdctl.messages import NodeRow
from herdctl.probe import ports_answer
from node.config import HerdConfig

READ_SIZE = 65536
PROBE_TIMEOUT = 1.0  # seconds for each node's port to answer, when there is no supervisor
POLL_INTERVAL = 0.2  # seconds between status polls while waiting for nodes


class Unreachable(Exception):
    """The node could not be reached or did not answer in time; str() is the short reason."""


def exchange(host: str, port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send `data`, half-close, and return every byte the node sends until it closes.

    `timeout` bounds the whole exchange, connecting included.
    """
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise Unreachable(_reason(e, timeout)) from None
    chunks: list[bytes] = []
    with sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(READ_SIZE)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        except OSError as e:
            got = sum(map(len, chunks))
            suffix = f" (after {got} bytes of reply)" if got else ""
            raise Unreachable(_reason(e, timeout) + suffix) from None


def unsupervised_status(config: HerdConfig) -> list[NodeRow]:
    """Each configured node with whether its port answers: all there is to tell without a
    supervisor. State UNMANAGED (something serves the port) or STOPPED; probes run in
    parallel so a remote host that drops packets costs one probe timeout, not one per node.
    """
    specs = list(config.nodes.values())
    answers = ports_answer([(spec.host, spec.port) for spec in specs], PROBE_TIMEOUT)
    return [
        {
            "name": spec.name,
            "state": "UNMANAGED" if answers_ else "STOPPED",
            "pid": None,
            "host": spec.host,
            "port": spec.port,
            "restarts": None,
            "port_open": answers_,
            "message": "port answers, not supervised" if answers_ else None,
        }
        for spec, answers_ in zip(specs, answers, strict=True)
    ]


def wait_gone(pid: int, *, timeout: float, interval: float = 0.05) -> bool:
    """Wait until process `pid` (any process, not only a child) has exited; False on timeout.

    A zombie counts as gone: it holds no resources, and its reaping is its parent's job.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _reason(e: OSError, timeout: float) -> str:
    if isinstance(e, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g}s"
    if isinstance(e, socket.gaierror):
        return f"unknown host ({e.strerror or e})"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset by the node"
    if e.errno is not None and e.errno in errno.errorcode:
        return (e.strerror or errno.errorcode[e.errno]).lower()
    return str(e) or type(e).__name__


# --- waiting for nodes to be ready -----------------------------------------------------------

FAILED_STATES = frozenset({"FATAL"})


@dataclass(slots=True)
class Readiness:
    """What `wait_ready` found: which nodes became ready (in order), and why it stopped."""

    ready: list[str] = field(default_factory=list)  # each node once, when first ready
    current: list[str] = field(default_factory=list)  # ready in the latest poll
    failed: str | None = None  # the node that went FATAL
    timed_out: list[str] = field(default_factory=list)  # nodes not ready at the deadline
    last: dict[str, NodeRow] = field(default_factory=dict)  # name -> last status

    @property
    def ok(self) -> bool:
        return self.failed is None and not self.timed_out


def wait_ready(
    fetch: Callable[[], Iterable[NodeRow]],
    names: Collection[str],
    *,
    timeout: float,
    on_change: Callable[[Readiness, str | None], None] = lambda r, name: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = POLL_INTERVAL,
) -> Readiness:
    """Poll `fetch()` (the status list) until every node in `names` is ready at once.

    Ready means RUNNING (it survived its start period) with its port open and links up.
    Stops early when one goes FATAL. `on_change(result, name)` is called after each poll
    with the node that just became ready for the first time, or None (for a live display).
    """
    result = Readiness()
    deadline = clock() + timeout
    while True:
        result.last = {node["name"]: node for node in fetch() if node["name"] in names}
        for name in names:
            node = result.last.get(name)
            if node is not None and node.get("state") in FAILED_STATES:
                result.failed = name
                return result
            if is_ready(node) and name not in result.ready:
                result.ready.append(name)
                on_change(result, name)
        result.current = [name for name in names if is_ready(result.last.get(name))]
        on_change(result, None)
        if len(result.current) == len(names):
            return result
        if clock() >= deadline:
            result.timed_out = [name for name in names if name not in result.current]
            return result
        sleep(interval)


def is_ready(node: NodeRow | None) -> bool:
    """RUNNING (it survived its start period), its port open and its links up."""
    return node is not None and bool(node.get("ready")) and node.get("state") == "RUNNING"
