"""herdctl.render: human units and the status table."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from herdctl import render
from herdctl.messages import NodeRow
from node.config import parse_config


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-1, "-"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (192, "3m12s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7500, "2h05m"),
        (86399, "23h59m"),
        (86400 * 3 + 4 * 3600 + 59, "3d04h"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert render.duration(seconds) == text


def test_mebibytes_and_percent() -> None:
    assert render.mebibytes(None) == "-"
    assert render.mebibytes(0) == "0.0"
    assert render.mebibytes(31_457_280) == "30.0"
    assert render.mebibytes(1_572_864) == "1.5"
    assert render.percent(None) == "-"
    assert render.percent(3.14159) == "3.1"


def node(**fields: Any) -> NodeRow:
    base: dict[str, Any] = {
        "name": "Goloman",
        "state": "RUNNING",
        "pid": 4242,
        "host": "127.0.0.1",
        "port": 12000,
        "local": True,
        "uptime": 192.5,
        "restarts": 1,
        "cpu_percent": 0.25,
        "memory_rss": 31_457_280,
        "links_up": 3,
        "links_expected": 3,
        "connections": 2,
        "clients": 7,
        "ready": True,
        "port_open": True,
        "exit_code": None,
        "message": None,
    }
    base.update(fields)
    return cast(NodeRow, base)


def test_status_table_aligns_every_column() -> None:
    text = render.status_table(
        [
            node(),
            node(
                name="Hands",
                state="STOPPED",
                pid=None,
                uptime=None,
                cpu_percent=None,
                memory_rss=None,
                links_up=0,
                restarts=12,
                connections=None,
                clients=0,
                port=12001,
            ),
        ]
    )
    assert text.splitlines() == [
        "NODE     STATE     PID   PORT  UPTIME  RESTARTS  CPU%  MEM(MiB)  LINKS  CONNS  CLIENTS",
        "Goloman  RUNNING  4242  12000   3m12s         1   0.2      30.0    3/3      2        7",
        "Hands    STOPPED     -  12001       -        12     -         -    0/3      -        0",
    ]


def test_colour_paints_the_state_only_and_keeps_the_columns() -> None:
    nodes = [node(), node(name="Hands", state="FATAL"), node(name="Welsh", state="REMOTE")]
    plain = render.status_table(nodes)
    painted = render.status_table(nodes, colour=True)
    assert "\x1b[32mRUNNING\x1b[0m  " in painted
    assert "\x1b[31mFATAL\x1b[0m    " in painted
    assert "REMOTE" in painted and "m" + "REMOTE" not in painted  # no colour of its own
    unpainted = painted.replace("\x1b[32m", "").replace("\x1b[31m", "").replace("\x1b[0m", "")
    assert unpainted == plain
    assert render.paint_state("PID", "RUNNING ") == "RUNNING "


def test_status_table_shows_why_a_node_failed() -> None:
    text = render.status_table(
        [node(), node(name="Welsh", state="FATAL", message="port 12003 in use by pid 9 (nc)")]
    )
    header, first, second = text.splitlines()
    assert header.endswith("CLIENTS  MESSAGE")
    assert first.endswith("7")  # no trailing blanks for a node without a message
    assert second.endswith("7  port 12003 in use by pid 9 (nc)")


def test_status_table_tolerates_missing_fields() -> None:
    older = cast(NodeRow, {"name": "Wilkes", "state": "STOPPED", "port": 12004})  # a bare row
    text = render.status_table([older])
    assert text.splitlines()[1].split() == ["Wilkes", "STOPPED", "-", "12004"] + ["-"] * 7


def test_progress_lines() -> None:
    names = ["Goloman", "Hands", "Welsh", "Wilkes"]
    last = {
        "Hands": node(name="Hands", state="STARTING"),
        "Welsh": node(name="Welsh", links_up=0, links_expected=1),
        "Wilkes": node(name="Wilkes", port_open=False),
    }
    assert render.progress_line(names, ["Goloman"], last) == (
        "ready 1/4; waiting for Hands (STARTING), Welsh (links 0/1), Wilkes (port closed)"
    )
    assert (
        render.progress_line(names, ["Goloman"], last, 30) == "ready 1/4; waiting for Hands \u2026"
    )
    assert render.progress_line(names, names, last) == "ready 4/4"
    assert render.ready_line(node(), 1.234) == (
        "  Goloman: ready  pid 4242  port 12000  links 3/3  (1.2s)"
    )


def test_check_summary(tmp_path: Path) -> None:
    one = parse_config(
        "nodes: {Solo: {port: 1}}\nplaces: {provider: offline}\n", tmp_path / "t.yaml"
    )
    assert render.check_summary(one) == (
        f"{tmp_path / 't.yaml'}: ok: 1 node, 0 links, places provider offline\n"
        "  diameter 0; no cut vertex: the loss of any one node leaves the others connected"
    )
    split = parse_config(
        "nodes: {A: {port: 1}, B: {port: 2}, C: {port: 3}}\nlinks: [[A, C]]\n", tmp_path / "t.yaml"
    )
    assert render.check_summary(split).endswith(
        "ok: 3 nodes, 1 link, places provider auto; "
        "warning: the herd is split into 2 parts (A, C | B)\n"
        "  no diameter (the herd is split); no cut vertex: the loss of any one node leaves"
        " the others connected"
    )


def test_graph_summary_names_the_diameter_and_the_cut_vertices(tmp_path: Path) -> None:
    def summary(links: str, names: Sequence[str] = "ABCDE") -> str:
        nodes = ", ".join(f"{name}: {{port: {i + 1}}}" for i, name in enumerate(names))
        config = parse_config(f"nodes: {{{nodes}}}\nlinks: {links}\n", tmp_path / "t.yaml")
        return render.graph_summary(config)

    assert summary("[[A, B], [B, C], [C, D], [D, E]]") == (
        "  diameter 4 (A to E); cut vertices B, C, D: the loss of any one would split the herd"
    )
    assert summary("[[A, B], [B, C], [C, D], [D, E], [E, A]]") == (
        "  diameter 2 (A to C); no cut vertex: the loss of any one node leaves the others connected"
    )
    star = "[" + ", ".join(f"[A, {name}]" for name in "BCDE") + "]"
    assert summary(star) == "  diameter 2 (B to C); cut vertex A: its loss would split the herd"
    chain = [f"n{i:02d}" for i in range(14)]
    links = "[" + ", ".join(f"[{a}, {b}]" for a, b in itertools.pairwise(chain)) + "]"
    assert summary(links, chain).endswith(
        "cut vertices n01, n02, n03, n04, n05, n06, n07, n08, n09, n10 and 2 more:"
        " the loss of any one would split the herd"
    )
