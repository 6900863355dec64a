"""herdctl.dashboard.state: health, link directions, rates and the layout, without a network."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, cast

import pytest

from herdctl.dashboard.state import (
    DOWN,
    OFF,
    PENDING,
    UNKNOWN,
    UP,
    RateTracker,
    _cost,
    direction,
    health,
    layout,
    link_state,
    snapshot,
)
from herdctl.messages import NodeRow, PeerLink
from node.config import parse_config
from tests.support import LINKS, NAMES

TOPOLOGY = """
nodes:
  A: {port: 12000}
  B: {port: 12001}
  C: {port: 12002}
links: [[A, B], [B, C]]
"""


def link(out: bool, in_: bool) -> PeerLink:
    return {"out": out, "in": in_, "synced": out and in_}


def row(name: str, state: str = "RUNNING", **fields: Any) -> NodeRow:
    base: dict[str, Any] = {
        "name": name,
        "state": state,
        "pid": 100,
        "host": "127.0.0.1",
        "port": 12000,
        "restarts": 0,
        "ready": state == "RUNNING",
        "port_open": state == "RUNNING",
        "message": None,
        "links": None,
        "counters": None,
    }
    base.update(fields)
    return cast(NodeRow, base)


@pytest.mark.parametrize(
    ("state", "ready", "port_open", "want"),
    [
        ("RUNNING", True, True, UP),
        ("RUNNING", False, True, PENDING),
        ("STARTING", False, False, PENDING),
        ("STOPPING", False, False, PENDING),
        ("EXITED", False, False, DOWN),
        ("BACKOFF", False, False, DOWN),
        ("FATAL", False, False, DOWN),
        ("STOPPED", False, False, OFF),
        ("REMOTE", False, True, UP),
        ("REMOTE", False, False, DOWN),
        ("REMOTE_DOWN", False, False, DOWN),
        ("UNMANAGED", False, True, UNKNOWN),
    ],
)
def test_health(state: str, ready: bool, port_open: bool, want: str) -> None:
    assert health(row("A", state, ready=ready, port_open=port_open)) == want


def test_a_direction_is_up_when_either_end_says_so() -> None:
    rows = {
        "A": row("A", links={"B": link(out=True, in_=False)}),
        "B": row("B", links={"A": link(out=False, in_=False)}),
    }
    assert direction(rows, "A", "B") == "up"  # A's link out
    assert direction(rows, "B", "A") == "down"  # B's out is down, and A does not see it in
    rows["A"] = row("A", links={"B": link(out=False, in_=True)})
    assert direction(rows, "B", "A") == "up"  # A sees B's link in, though B said otherwise


def test_a_direction_with_no_word_from_either_end() -> None:
    rows = {"A": row("A", "EXITED"), "B": row("B", "STARTING")}
    assert direction(rows, "A", "B") == "down"  # A is dead: its link out is gone
    assert direction(rows, "B", "A") == "unknown"  # B has not said yet


def test_link_state_from_its_two_directions() -> None:
    assert link_state("up", "up") == "up"
    assert link_state("up", "down") == "half"
    assert link_state("unknown", "up") == "half"
    assert link_state("down", "unknown") == "down"
    assert link_state("unknown", "unknown") == "unknown"


def test_rates_come_from_deltas_between_looks() -> None:
    rates = RateTracker(min_interval=0.5)
    assert rates.update("A", 1, {"requests": 100, "records_in": 5}, now=10.0) is None
    assert rates.update("A", 1, {"requests": 300, "records_in": 5}, now=12.0) == {
        "requests": 100.0,
        "records_in": 0.0,
    }
    # too soon after the last look: the same rates again, the baseline kept
    assert rates.update("A", 1, {"requests": 301, "records_in": 5}, now=12.1) == {
        "requests": 100.0,
        "records_in": 0.0,
    }
    assert rates.update("A", 1, {"requests": 400, "records_in": 9}, now=13.0) == {
        "requests": 100.0,
        "records_in": 4.0,
    }


def test_rates_start_afresh_after_a_restart_and_without_counters() -> None:
    rates = RateTracker()
    rates.update("A", 1, {"requests": 500}, now=0.0)
    assert rates.update("A", 2, {"requests": 10}, now=1.0) is None  # a new pid
    assert rates.update("A", 2, {"requests": 30}, now=2.0) == {"requests": 20.0}
    assert rates.update("A", 2, {"requests": 5}, now=3.0) is None  # counters went back
    assert rates.update("A", 2, None, now=4.0) is None  # a node of another version
    assert rates.update("A", 2, {"requests": 50}, now=5.0) is None
    rates.keep_only(["B"])
    assert rates.update("A", 2, {"requests": 60}, now=6.0) is None


def test_the_default_herd_is_drawn_without_crossings() -> None:
    places = layout(NAMES, LINKS)
    assert set(places) == set(NAMES)
    order = sorted(NAMES, key=lambda name: _angle_order(places[name]))
    assert _cost(order, LINKS)[0] == 0
    assert all(0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 for x, y in places.values())
    assert places["Goloman"] == (0.5, 0.12)  # the first node at the top


def _angle_order(point: tuple[float, float]) -> float:
    import math

    return (math.atan2(point[1] - 0.5, point[0] - 0.5) + math.pi / 2) % (2 * math.pi)


def test_crossings_are_counted_as_chords() -> None:
    square = ["A", "B", "C", "D"]
    assert _cost(square, [("A", "C"), ("B", "D")]) == (1, 4)
    assert _cost(square, [("A", "B"), ("C", "D")]) == (0, 2)


def test_layout_of_tiny_and_large_herds() -> None:
    assert layout((), ()) == {}
    assert layout(("A",), ()) == {"A": (0.5, 0.5)}
    names = tuple(f"N{i}" for i in range(12))  # beyond the search: the topology's order
    ring = tuple(itertools.pairwise(names))
    places = layout(names, ring)
    assert places["N0"] == (0.5, 0.12) and len(set(places.values())) == 12


def test_snapshot_shape() -> None:
    config = parse_config(TOPOLOGY, Path("/tmp/hdstate/topology.yaml"))
    rows = [
        row("A", pid=11, links={"B": link(True, True)}, counters={"requests": 10}),
        row("B", pid=12, links={"A": link(True, True), "C": link(False, False)}),
        row("C", "EXITED", pid=None, ready=False, message="12:00:00 killed by SIGKILL"),
    ]
    rates = RateTracker()
    first = snapshot(config, rows, rates, now=1.0, wall=1_700_000_000.0, supervisor_pid=7)
    assert first["config"] == "/tmp/hdstate/topology.yaml" and first["supervisor_pid"] == 7
    assert [n["name"] for n in first["nodes"]] == ["A", "B", "C"]
    a, _, c = first["nodes"]
    assert (a["health"], a["pid"], a["rates"]) == (UP, 11, None)
    assert (c["health"], c["message"]) == (DOWN, "12:00:00 killed by SIGKILL")
    assert first["links"] == [
        {"a": "A", "b": "B", "ab": "up", "ba": "up", "state": "up"},
        {"a": "B", "b": "C", "ab": "down", "ba": "down", "state": "down"},
    ]
    rows[0] = row("A", pid=11, links={"B": link(True, True)}, counters={"requests": 40})
    later = snapshot(config, rows, rates, now=2.0, wall=1_700_000_001.0, supervisor_pid=7)
    assert later["nodes"][0]["rates"] == {"requests": 30.0}


def test_snapshot_of_a_node_the_rows_leave_out() -> None:
    config = parse_config(TOPOLOGY, Path("/tmp/hdstate/topology.yaml"))
    shot = snapshot(config, [row("A")], RateTracker(), now=0.0, wall=0.0, supervisor_pid=1)
    assert [n["state"] for n in shot["nodes"]] == ["RUNNING", "UNKNOWN", "UNKNOWN"]
    assert shot["nodes"][1]["port"] == 12001
