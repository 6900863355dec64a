"""The node's status file, `run_dir/NAME.status.json`: what a supervisor on this machine
needs to know of a node. Its shape (`NodeStatus`) and where it is; the node keeps it fresh
(`status_file.StatusFile`), the supervisor reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NotRequired, TypedDict

# One neighbour's link as the node sees it: `out` our link to it is up (since `out_since`,
# POSIX time; 0.0 before the first), `in` its link to us is up, `synced` it has sent us its
# whole state on that link, `buffered` bytes waiting to go out to it.
LinkStatus = TypedDict(
    "LinkStatus",
    {"out": bool, "out_since": float, "in": bool, "synced": bool, "buffered": int},
)


class StatusCounters(TypedDict):
    """Running totals since the node started, for rates: client lines answered, CHANGELOC
    records received from neighbours, and records flooded to them (summed over links)."""

    requests: int
    records_in: int
    records_out: int


class NodeStatus(TypedDict):
    """The status file's object. A reader must expect a file written by another version of
    the node, with keys missing or added: check each value where it is used."""

    name: str
    pid: int
    host: str
    port: int
    state: str  # "starting", "running" or "stopping"
    started_at: float  # POSIX time
    clients: int  # client records held
    connections: int
    links: dict[str, LinkStatus]  # by neighbour name
    journal_error: str | None  # the errno name while the journal refuses writes
    counters: NotRequired[StatusCounters]
    updated_at: NotRequired[float]  # POSIX time; added by StatusFile when it writes


def status_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.status.json"
