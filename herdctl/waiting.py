"""Waiting until nodes are ready: the poll of the supervisor's status, and how the CLI shows it.

`wait_ready` polls until each wanted node is ready or has failed, or a deadline; it takes its
status source, clock and sleep as parameters so tests replay histories without processes.
`show_until_ready` is what `up`, `start` and `restart` run: a line per node as it becomes
ready (or one live line on a terminal); if any fails, every node's state and a UserError with
the logs of those that failed.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from herdctl import logs, render
from herdctl.console import UserError, out
from herdctl.messages import NodeRow
from node.config import HerdConfig

POLL_INTERVAL = 0.2  # seconds between status polls while waiting for nodes
FAILED_STATES = frozenset({"FATAL"})
LOG_TAIL = 10  # lines of each of a failed node's logs shown with the error


@dataclass(slots=True)
class Readiness:
    """What `wait_ready` found: which nodes became ready (in order), and why it stopped."""

    ready: list[str] = field(default_factory=list)  # each node once, when first ready
    current: list[str] = field(default_factory=list)  # ready in the latest poll
    failed: list[str] = field(default_factory=list)  # FATAL in the latest poll
    timed_out: list[str] = field(default_factory=list)  # nodes not ready at the deadline
    last: dict[str, NodeRow] = field(default_factory=dict)  # name -> last status

    @property
    def ok(self) -> bool:
        return not self.failed and not self.timed_out


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
    """Poll `fetch()` (the status list) until every node in `names` is settled at once:
    ready, or FATAL (so one node that cannot start does not hide how the others did).

    Ready means RUNNING (it survived its start period) with its port open and links up.
    `on_change(result, name)` is called after each poll with the node that just became ready
    for the first time, or None (for a live display).
    """
    result = Readiness()
    deadline = clock() + timeout
    while True:
        result.last = {node["name"]: node for node in fetch() if node["name"] in names}
        for name in names:
            if is_ready(result.last.get(name)) and name not in result.ready:
                result.ready.append(name)
                on_change(result, name)
        result.current = [name for name in names if is_ready(result.last.get(name))]
        result.failed = [name for name in names if _failed(result.last.get(name))]
        on_change(result, None)
        if len(result.current) + len(result.failed) == len(names):
            return result
        if clock() >= deadline:
            settled = {*result.current, *result.failed}
            result.timed_out = [name for name in names if name not in settled]
            return result
        sleep(interval)


def _failed(node: NodeRow | None) -> bool:
    return node is not None and node.get("state") in FAILED_STATES


def is_ready(node: NodeRow | None) -> bool:
    """RUNNING (it survived its start period), its port open and its links up."""
    return node is not None and bool(node.get("ready")) and node.get("state") == "RUNNING"


# What `status` counts as running: RUNNING under a supervisor, a port that answers without
# one (UNMANAGED). A remote node (REMOTE, or REMOTE_DOWN when its port does not answer) is
# run by another machine's herdctl: shown, not counted.
RUNNING_STATES = frozenset({"RUNNING", "UNMANAGED"})
REMOTE_STATES = frozenset({"REMOTE", "REMOTE_DOWN"})


def not_running(nodes: Iterable[NodeRow]) -> list[str]:
    """The nodes that make `status` exit 3: local ones not RUNNING (or not answering)."""
    return [
        node["name"] for node in nodes if node.get("state") not in RUNNING_STATES | REMOTE_STATES
    ]


def show_until_ready(
    config: HerdConfig,
    fetch: Callable[[], Iterable[NodeRow]],
    names: list[str],
    timeout: float,
    verb: str,
    *,
    announce: Collection[str] | None = None,
) -> None:
    """Show progress until every node in `names` is ready; else the status table of them
    all (which are running, which failed and why) and a UserError naming the failed ones.

    A line is printed for each node in `announce` (default: all) as it becomes ready, or,
    on a terminal, one live line is redrawn; an empty `announce` prints nothing.
    """
    if not names:
        return
    announce = names if announce is None else announce
    live = sys.stdout.isatty() and bool(announce)
    started = time.monotonic()

    def show(result: Readiness, name: str | None) -> None:
        if not live:  # a line per node as it becomes ready
            if name is not None and name in announce:
                out(render.ready_line(result.last[name], time.monotonic() - started))
        elif name is None:  # one live line, redrawn once per poll
            columns = shutil.get_terminal_size().columns - 1
            line = render.progress_line(names, result.current, result.last, columns)
            sys.stdout.write(f"\r\x1b[K{line}")
            sys.stdout.flush()

    try:
        result = wait_ready(fetch, names, timeout=timeout, on_change=show)
    finally:
        if live:
            sys.stdout.write("\n")
            sys.stdout.flush()
    if result.ok:
        return
    out(render.status_table([result.last[name] for name in names if name in result.last]))
    problems = [
        f"{name} failed to {verb}: {describe(result.last.get(name))}" for name in result.failed
    ]
    if result.timed_out:
        waiting = ", ".join(
            f"{name} ({describe(result.last.get(name))})" for name in result.timed_out
        )
        problems.append(f"timed out after {timeout:g}s waiting for {waiting}")
    raise UserError(
        "; ".join(problems),
        details="\n".join(logs_of(config, name) for name in [*result.failed, *result.timed_out]),
    )


def describe(node: NodeRow | None) -> str:
    """A node's state, and its message when it has one; "unknown state" with no row."""
    if node is None:
        return "unknown state"
    message = node.get("message")
    return f"{node['state']}: {message}" if message else node["state"]


def logs_of(config: HerdConfig, name: str) -> str:
    """The last lines of a node's stderr log and log, each under a header naming it."""
    return "\n".join(
        logs.excerpt(config.log_dir / f"{name}{suffix}", LOG_TAIL)
        for suffix in (".stderr.log", ".log")
    )
