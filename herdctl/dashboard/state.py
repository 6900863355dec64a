"""What the dashboard shows, as one JSON snapshot: the topology laid out, each node's status
row with its health and rates, and each link's two directions. Pure.

The caller brings the status rows (herdctl.manager's, as `herdctl status` gets them), the
topology and the time; `RateTracker` turns the nodes' cumulative counters into rates per
second from the deltas between two snapshots, starting afresh when a node's pid changes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypedDict

from herdctl.messages import NodeRow, PeerLink
from node.config import HerdConfig

Point = tuple[float, float]  # in the unit square, (0, 0) top left
Link = tuple[str, str]
SEARCH_UP_TO = 7  # nodes: up to this many, the circle order with fewest crossings is sought
_RADIUS = 0.38

# A node's health, the colour it is drawn in.
UP, PENDING, DOWN, OFF, UNKNOWN = "up", "pending", "down", "off", "unknown"
_HEALTH = {
    "STARTING": PENDING,
    "STOPPING": PENDING,
    "BACKOFF": DOWN,
    "EXITED": DOWN,
    "FATAL": DOWN,
    "STOPPED": OFF,
    "REMOTE_DOWN": DOWN,  # another machine's node whose port does not answer (newer rows)
}


class NodeView(TypedDict):
    """One node as the page draws it: its status row's fields, where it sits, its health."""

    name: str
    host: str
    port: int
    x: float
    y: float
    state: str
    health: str  # UP, PENDING, DOWN, OFF or UNKNOWN
    local: bool
    pid: int | None
    uptime: float | None
    restarts: int | None
    connections: int | None
    clients: int | None
    links_up: int | None
    links_expected: int | None
    cpu_percent: float | None
    memory_rss: int | None
    message: str | None
    rates: dict[str, float] | None  # per second, by counter; None until two looks


class LinkView(TypedDict):
    """One link: each direction's state ("up", "down", "unknown") and the whole's ("up",
    "half": one direction only, "down", "unknown")."""

    a: str
    b: str
    ab: str
    ba: str
    state: str


class Snapshot(TypedDict):
    """The whole page's data, as `/api/state` and each `state` event carry it."""

    time: float  # POSIX time it was taken
    config: str  # the topology file the herd runs
    supervisor_pid: int
    nodes: list[NodeView]
    links: list[LinkView]


def health(row: Mapping[str, object]) -> str:
    """UP (running and ready), PENDING (on its way up or down), DOWN (dead, waiting to be
    restarted, or FATAL), OFF (stopped by hand) or UNKNOWN; a remote node by its port."""
    state = row.get("state")
    if state == "RUNNING":
        return UP if row.get("ready") else PENDING
    if state == "REMOTE":
        return UP if row.get("port_open") else DOWN
    return _HEALTH.get(str(state), UNKNOWN)


def direction(rows: Mapping[str, NodeRow], a: str, b: str) -> str:
    """The state of a's link to b: "up" when a reports its link out is up, or b its link in
    from a; "down" when either reports it is not, or a is down with no word; else "unknown"."""
    said_a = _link(rows.get(a), b)
    said_b = _link(rows.get(b), a)
    if (said_a is not None and said_a["out"]) or (said_b is not None and said_b["in"]):
        return "up"
    if said_a is not None or said_b is not None:
        return "down"
    row = rows.get(a)
    if row is not None and health(row) in (DOWN, OFF):
        return "down"
    return "unknown"


def _link(row: NodeRow | None, neighbour: str) -> PeerLink | None:
    links = row.get("links") if row is not None else None
    return links.get(neighbour) if links else None


def link_state(ab: str, ba: str) -> str:
    """The whole link's state from its two directions'."""
    if ab == ba:
        return ab
    if "up" in (ab, ba):
        return "half"
    return "down"


@dataclass
class _Look:
    pid: int | None
    at: float
    counters: dict[str, int]
    rates: dict[str, float] | None


class RateTracker:
    """Rates per second of each node's cumulative counters, from the deltas between looks.

    A look within `min_interval` of the last one gives the last rates again (two pages asking
    at once must not see the rate of a few milliseconds); a new pid or a counter that went
    down (the node restarted) starts afresh, with no rates until the next look.
    """

    def __init__(self, min_interval: float = 0.5) -> None:
        self.min_interval = min_interval
        self._looks: dict[str, _Look] = {}

    def update(
        self, name: str, pid: int | None, counters: Mapping[str, int] | None, now: float
    ) -> dict[str, float] | None:
        """The node's rates as of `now` (monotonic seconds); None when not known yet."""
        if counters is None:
            self._looks.pop(name, None)
            return None
        last = self._looks.get(name)
        restarted = last is not None and (
            last.pid != pid or any(counters.get(k, v) < v for k, v in last.counters.items())
        )
        if last is None or restarted:
            self._looks[name] = _Look(pid, now, dict(counters), None)
            return None
        elapsed = now - last.at
        if elapsed < self.min_interval:
            return last.rates
        rates = {
            key: round((value - last.counters[key]) / elapsed, 1)
            for key, value in counters.items()
            if key in last.counters
        }
        self._looks[name] = _Look(pid, now, dict(counters), rates)
        return rates

    def keep_only(self, names: Iterable[str]) -> None:
        """Forget the nodes not in `names` (a reload removed them)."""
        keep = set(names)
        for name in [n for n in self._looks if n not in keep]:
            del self._looks[name]


def snapshot(
    config: HerdConfig,
    rows: Sequence[NodeRow],
    rates: RateTracker,
    *,
    now: float,
    wall: float,
    supervisor_pid: int,
) -> Snapshot:
    """The page's data from the status rows (in topology order) at monotonic time `now`."""
    by_name = {row["name"]: row for row in rows}
    where = layout(tuple(config.nodes), tuple(config.links))
    rates.keep_only(by_name)
    nodes: list[NodeView] = []
    for name, spec in config.nodes.items():
        row = by_name.get(name) or _no_row(name, spec.host, spec.port)
        x, y = where[name]
        nodes.append(
            {
                "name": name,
                "host": spec.host,
                "port": spec.port,
                "x": x,
                "y": y,
                "state": row["state"],
                "health": health(row),
                "local": row.get("local", True),
                "pid": row.get("pid"),
                "uptime": row.get("uptime"),
                "restarts": row.get("restarts"),
                "connections": row.get("connections"),
                "clients": row.get("clients"),
                "links_up": row.get("links_up"),
                "links_expected": row.get("links_expected"),
                "cpu_percent": row.get("cpu_percent"),
                "memory_rss": row.get("memory_rss"),
                "message": row.get("message"),
                "rates": rates.update(name, row.get("pid"), row.get("counters"), now),
            }
        )
    links: list[LinkView] = []
    for a, b in config.links:
        ab, ba = direction(by_name, a, b), direction(by_name, b, a)
        links.append({"a": a, "b": b, "ab": ab, "ba": ba, "state": link_state(ab, ba)})
    return {
        "time": wall,
        "config": str(config.path),
        "supervisor_pid": supervisor_pid,
        "nodes": nodes,
        "links": links,
    }


def _no_row(name: str, host: str, port: int) -> NodeRow:
    """A node the rows do not mention (the topology changed between two looks)."""
    return {
        "name": name,
        "state": "UNKNOWN",
        "pid": None,
        "host": host,
        "port": port,
        "restarts": None,
        "port_open": False,
        "message": None,
    }


@lru_cache(maxsize=8)
def layout(names: tuple[str, ...], links: tuple[Link, ...]) -> dict[str, Point]:
    """Each node's place on a circle in the unit square. Up to SEARCH_UP_TO nodes, the
    order around the circle is the one with the fewest crossing links (then the shortest
    links, then the topology's order); beyond, the topology's order."""
    n = len(names)
    if n == 0:
        return {}
    if n == 1:
        return {names[0]: (0.5, 0.5)}
    order = list(names)
    if n <= SEARCH_UP_TO:
        candidates = ([names[0], *perm] for perm in itertools.permutations(names[1:]))
        order = min(candidates, key=lambda candidate: _cost(candidate, links))
    places: dict[str, Point] = {}
    for i, name in enumerate(order):
        angle = -math.pi / 2 + 2 * math.pi * i / n
        places[name] = (
            round(0.5 + _RADIUS * math.cos(angle), 4),
            round(0.5 + _RADIUS * math.sin(angle), 4),
        )
    return places


def _cost(order: Sequence[str], links: Sequence[Link]) -> tuple[int, int]:
    """(crossings, total length in steps around the circle) of the links drawn as chords."""
    at = {name: i for i, name in enumerate(order)}
    n = len(order)
    chords = [tuple(sorted((at[a], at[b]))) for a, b in links if a in at and b in at]
    crossings = sum(
        1 for (a, b), (c, d) in itertools.combinations(chords, 2) if a < c < b < d or c < a < d < b
    )
    length = sum(min(b - a, n - (b - a)) for a, b in chords)
    return crossings, length
