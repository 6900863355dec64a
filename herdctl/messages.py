"""What crosses the control channel (herdctl.control) between `herdctl` and its supervisor.

A request names a command; the final answer is `{"ok": true, ...}` with what the command
gives back, or `{"ok": false, "error": ...}`; `status` gives one `NodeRow` per node, the row
`herdctl status` prints, whether a supervisor or the CLI alone (ports only) made it. Types and
the check of a request as it arrives; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NotRequired, TypedDict

COMMANDS = ("ping", "status", "start", "stop", "restart", "shutdown")
_WITHOUT_NAMES = ("ping", "status", "shutdown")  # shutdown: every local node


class RequestError(Exception):
    """A control request that cannot be carried out; str() is the one-line answer."""


class Request(TypedDict):
    """One command for the supervisor."""

    cmd: str  # one of COMMANDS
    names: NotRequired[list[str]]  # start, stop, restart: node names, or ["all"]
    rolling: NotRequired[bool]  # restart: one node at a time, each caught up
    text: NotRequired[str]  # reload: the topology file's text, as the CLI validated it


# One neighbour's link as a node reports it (node.status.LinkStatus, the booleans): `out` its
# link to the neighbour is up, `in` the neighbour's link to it, `synced` the neighbour has
# sent it its whole state on that link.
PeerLink = TypedDict("PeerLink", {"out": bool, "in": bool, "synced": bool})


class NodeRow(TypedDict):
    """One node in `status`. A supervisor fills every field; without one, the CLI can only
    tell whether each port answers, and the fields it cannot know are absent."""

    name: str
    state: str  # policy.State, REMOTE, or (no supervisor) UNMANAGED or STOPPED
    pid: int | None
    host: str
    port: int
    local: NotRequired[bool]
    uptime: NotRequired[float | None]  # seconds
    restarts: int | None
    cpu_percent: NotRequired[float | None]
    memory_rss: NotRequired[int | None]  # bytes
    links_up: NotRequired[int | None]
    links_expected: NotRequired[int]
    connections: NotRequired[int | None]  # client connections open now (not peer links)
    clients: NotRequired[int | None]  # client records the node holds (clients it knows of)
    links: NotRequired[dict[str, PeerLink] | None]  # by neighbour; None: no word from the node
    counters: NotRequired[dict[str, int] | None]  # cumulative, as the node reports them
    ready: NotRequired[bool]  # RUNNING, port open, a link to every neighbour that is up
    port_open: bool
    exit_code: NotRequired[int | None]
    message: str | None  # why FATAL, EXITED, ...; None when there is nothing to say
    topology_changed: NotRequired[bool]  # the file on disk differs from what the herd runs


class DashboardInfo(TypedDict):
    """Where the supervisor's dashboard is (herdctl.dashboard): `url` while it is served
    (with its token: the address as a browser opens it), `error` when it could not be; both
    None when the topology asks for none."""

    url: str | None
    error: str | None


class Answer(TypedDict):
    """The final line of an exchange; which fields come with `ok` depends on the command."""

    ok: bool
    error: NotRequired[str]  # when not ok: one clear sentence
    pid: NotRequired[int]  # ping: the supervisor's
    config: NotRequired[str]  # ping: its topology file
    topology: NotRequired[str]  # ping: that file's text as the herd runs it (herdctl.topology)
    changes: NotRequired[list[str]]  # reload: what differed, one line each
    failed: NotRequired[list[str]]  # reload: the nodes that did not come back
    touched: NotRequired[list[str]]  # reload: the nodes it started or restarted, here
    nodes: NotRequired[list[NodeRow]]  # status: in topology order
    dashboard: NotRequired[DashboardInfo]  # ping: where the supervisor serves its page


class ProgressNote(TypedDict):
    """A line before the answer, saying how a long command is getting on."""

    progress: str


def checked_request(raw: Mapping[str, object]) -> Request:
    """`raw` (a JSON object as received) as a Request: a known command, with a non-empty
    list of names where the command needs one. RequestError says what is wrong."""
    cmd = raw.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise RequestError(f"unknown command {cmd!r} (known: {', '.join(COMMANDS)})")
    if cmd in _WITHOUT_NAMES:
        return {"cmd": cmd}
    names = raw.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RequestError("'names' must be a non-empty list of node names (or ['all'])")
    return {"cmd": cmd, "names": [str(n) for n in names], "rolling": bool(raw.get("rolling"))}


RELOAD = "reload"  # answered by herdctl.reload, in front of the manager's COMMANDS


def checked_reload(raw: Mapping[str, object]) -> str:
    """The topology text of a `reload` request; RequestError if it has none."""
    text = raw.get("text")
    if not isinstance(text, str):
        raise RequestError("'text' must be the topology file's text")
    return text
