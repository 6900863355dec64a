"""One node as the supervisor sees it (its `Slot`), and the status row made from it.

Pure: the caller brings what was looked up (which ports answer, the node's status file, the
time), so the row can be checked with fakes.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from herdctl.messages import NodeRow, PeerLink
from herdctl.policy import EXIT_CONFIG, NodePolicy, State
from herdctl.procs import NodeProc
from node.config import NodeSpec
from node.status import NodeStatus

SERVING = frozenset({State.STARTING, State.RUNNING})


@dataclass
class Slot:
    """One node as the supervisor sees it."""

    spec: NodeSpec
    local: bool
    policy: NodePolicy
    proc: NodeProc | None = None
    message: str | None = None  # why it last stopped or failed, stamped; None once ready
    cpu: float | None = None
    rss: int | None = None


def node_row(
    slot: Slot,
    neighbours: Sequence[str],
    up: Mapping[str, bool],
    status: NodeStatus | None,
    now: float,
) -> NodeRow:
    """The node's row: what its slot knows, which ports answer (`up`, by node name), its
    status file (if fresh and its own) and the wall-clock time `now` (for the uptime)."""
    spec = slot.spec
    row: NodeRow = {
        "name": spec.name,
        # Another machine's herdctl runs it: what we see is whether its port answers.
        "state": "REMOTE" if up[spec.name] else "REMOTE_DOWN",
        "pid": None,
        "host": spec.host,
        "port": spec.port,
        "local": slot.local,
        "uptime": None,
        "restarts": 0,
        "cpu_percent": None,
        "memory_rss": None,
        "links_up": None,
        "links_expected": len(neighbours),
        "connections": None,
        "clients": None,
        "links": None,
        "counters": None,
        "ready": up[spec.name],
        "port_open": up[spec.name],
        "exit_code": None,
        "message": None,
    }
    if not slot.local:
        return row
    proc, policy = slot.proc, slot.policy
    links = status_links(status)
    linked = [nb for nb in neighbours if link_of(links, nb).get("out") is True]
    clients = status.get("clients") if status else None
    connections = status.get("connections") if status else None
    journal_error = status.get("journal_error") if status else None
    row["state"] = str(policy.state)
    row["pid"] = proc.pid if proc else None
    row["uptime"] = round(max(0.0, now - proc.started_at), 3) if proc else None
    row["restarts"] = policy.restarts
    row["cpu_percent"] = slot.cpu
    row["memory_rss"] = slot.rss
    row["links_up"] = len(linked)
    row["connections"] = connections if isinstance(connections, int) else None
    row["clients"] = clients if isinstance(clients, int) else None
    if status is not None:
        row["links"] = {nb: peer_link(link_of(links, nb)) for nb in neighbours}
        row["counters"] = counters_of(status)
    row["ready"] = (
        policy.state in SERVING
        and up[spec.name]
        and all(nb in linked for nb in neighbours if up[nb])
    )
    row["exit_code"] = policy.exit_code
    if isinstance(journal_error, str) and policy.state in SERVING:
        row["message"] = f"journal refusing writes: {journal_error}"
    elif not back_to_normal(row):  # once it is, why it last stopped is history (herdctl.log)
        row["message"] = slot.message
    return row


def back_to_normal(row: NodeRow) -> bool:
    """RUNNING (past its start period) and ready: a message about its past is stale."""
    return row.get("state") == State.RUNNING and bool(row.get("ready"))


def stamped(when: float, text: str) -> str:
    """`text` after the local time of day of `when` (POSIX time): `12:03:04 text`."""
    return f"{time.strftime('%H:%M:%S', time.localtime(when))} {text}"


def status_links(status: NodeStatus | None) -> Mapping[str, object]:
    """The status file's links by neighbour name; none when it has no (readable) links."""
    links = status.get("links") if status else None
    return links if isinstance(links, dict) else {}


def link_of(links: Mapping[str, object], name: str) -> Mapping[str, object]:
    """One neighbour's entry of `status_links`; empty when there is none."""
    link = links.get(name)
    return link if isinstance(link, dict) else {}


def peer_link(link: Mapping[str, object]) -> PeerLink:
    """One neighbour's link for a status row: each direction up or not (absent: not)."""
    return {
        "out": link.get("out") is True,
        "in": link.get("in") is True,
        "synced": link.get("synced") is True,
    }


def counters_of(status: Mapping[str, object]) -> dict[str, int] | None:
    """The node's cumulative counters (requests answered, records received and flooded),
    when its status file has them: a node of another version may not."""
    counters = status.get("counters")
    if not isinstance(counters, dict):
        return None
    return {
        str(key): value
        for key, value in counters.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }


def describe_exit(code: int | None, last_line: str | None, name: str = "") -> str:
    """How a process ended, for the `message` column; `last_line` is its last line on stderr,
    where the node named `name` says why it stopped (`node NAME: ` is left out)."""
    if last_line and name:
        last_line = last_line.removeprefix(f"node {name}: ")
    if code is None:
        return "exited (status unknown: adopted, so not a child of this supervisor)"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    if code == EXIT_CONFIG:
        return f"cannot start: {last_line or f'exited with code {code}'}"
    if code and last_line:
        return f"exited with code {code}: {last_line}"
    return f"exited with code {code}"
