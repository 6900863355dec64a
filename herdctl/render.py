"""Human output for herdctl: units, the status table, `up` progress, the `check` summary. Pure.

Status rows (messages.NodeRow) are read with `.get`: a row from an older supervisor, or one
made without a supervisor, lacks fields, and a missing field shows as "-" or "?".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from herdctl.messages import NodeRow
from node.config import HerdConfig

MIB = 1024 * 1024
DASH = "-"
COLUMNS = (
    "NODE",
    "STATE",
    "PID",
    "PORT",
    "UPTIME",
    "RESTARTS",
    "CPU%",
    "MEM(MiB)",
    "LINKS",
    "CONNS",
    "CLIENTS",
)
_RIGHT = frozenset(COLUMNS) - {"NODE", "STATE"}


def duration(seconds: float | None) -> str:
    """A short human duration: 45s, 3m12s, 2h05m, 3d04h; "-" when unknown."""
    if seconds is None or seconds < 0:
        return DASH
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def mebibytes(size: int | None) -> str:
    """Bytes as MiB with one decimal; "-" when unknown."""
    return DASH if size is None else f"{size / MIB:.1f}"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def _number(value: object) -> str:
    return DASH if value is None else str(value)


def _links(node: NodeRow) -> str:
    up, expected = node.get("links_up"), node.get("links_expected")
    if up is None or expected is None:
        return DASH
    return f"{up}/{expected}"


def status_row(node: NodeRow) -> list[str]:
    """One node's cells, in COLUMNS order."""
    return [
        str(node.get("name", "?")),
        str(node.get("state", "?")),
        _number(node.get("pid")),
        _number(node.get("port")),
        duration(node.get("uptime")),
        _number(node.get("restarts")),
        percent(node.get("cpu_percent")),
        mebibytes(node.get("memory_rss")),
        _links(node),
        _number(node.get("connections")),
        _number(node.get("clients")),
    ]


Paint = Callable[[str, str], str]  # (column name, padded cell) -> the cell as shown


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    right: frozenset[str],
    paint: Paint | None = None,
) -> str:
    """Aligned columns separated by two spaces; the columns named in `right` align right.
    `paint` may colour each body cell once it is padded, so colour never moves a column."""
    rows = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        cells = [
            cell.rjust(width) if name in right else cell.ljust(width)
            for cell, width, name in zip(row, widths, header, strict=True)
        ]
        if paint is not None and i > 0:
            cells = [paint(name, cell) for name, cell in zip(header, cells, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


GREEN, YELLOW, RED = "32", "33", "31"  # ANSI SGR colours
STATE_COLOURS = {
    "RUNNING": GREEN,
    "UNMANAGED": GREEN,  # no supervisor, but its port answers
    "STARTING": YELLOW,
    "STOPPING": YELLOW,
    "BACKOFF": YELLOW,
    "STOPPED": YELLOW,
    "EXITED": RED,
    "FATAL": RED,
    "REMOTE_DOWN": RED,  # another machine's node whose port does not answer
}


def paint_state(column: str, cell: str) -> str:
    """The STATE column in its state's colour, the padding left outside; others as they are."""
    text = cell.rstrip()
    code = STATE_COLOURS.get(text) if column == "STATE" else None
    if code is None:
        return cell
    return f"\x1b[{code}m{text}\x1b[0m{cell[len(text) :]}"


def status_table(nodes: Iterable[NodeRow], *, colour: bool = False) -> str:
    """The `herdctl status` table; a node's message (why FATAL, BACKOFF, ...) ends its row.
    With `colour`, each STATE in its colour (for a terminal)."""
    nodes = list(nodes)
    rows = [status_row(node) for node in nodes]
    header: list[str] = list(COLUMNS)
    if any(node.get("message") for node in nodes):
        header.append("MESSAGE")
        for row, node in zip(rows, nodes, strict=True):
            row.append(str(node.get("message") or ""))
    return table(header, rows, _RIGHT, paint_state if colour else None)


def ready_line(node: NodeRow, elapsed: float) -> str:
    """`up`'s line for a node that just became ready."""
    return (
        f"  {node.get('name')}: ready  pid {_number(node.get('pid'))}  "
        f"port {_number(node.get('port'))}  links {_links(node)}  ({elapsed:.1f}s)"
    )


def waiting_for(node: NodeRow | None) -> str:
    """What a node that is not ready yet is waiting for, in a word or two ("?": no row)."""
    if node is None:
        return "?"
    state = str(node.get("state", "?"))
    if state != "RUNNING":
        return state
    if not node.get("port_open"):
        return "port closed"
    return f"links {_links(node)}"


def progress_line(
    names: Sequence[str],
    ready: Sequence[str],
    last: Mapping[str, NodeRow],
    width: int = 0,
) -> str:
    """`up`'s compact live line: how many are ready, what the others wait for; cut to `width`."""
    waiting = [f"{name} ({waiting_for(last.get(name))})" for name in names if name not in ready]
    text = f"ready {len(ready)}/{len(names)}"
    if waiting:
        text += f"; waiting for {', '.join(waiting)}"
    if width > 1 and len(text) > width:
        text = text[: width - 1] + "\u2026"
    return text


def check_summary(config: HerdConfig) -> str:
    """`check`'s summary: a line for the file (how many nodes and links, the provider, and a
    warning when the links leave the herd in several parts, so an update could not reach
    every node), then one for its shape (`graph_summary`)."""
    from herdctl import graph  # `check`'s alone: no other command's start pays for it

    n, m = len(config.nodes), len(config.links)
    text = (
        f"{config.path}: ok: {n} node{'s' * (n != 1)}, {m} link{'s' * (m != 1)}, "
        f"places provider {config.places.provider}"
    )
    parts = graph.connected_parts(config.nodes, config.links)
    if len(parts) > 1:
        shown = " | ".join(", ".join(part) for part in parts)
        text += f"; warning: the herd is split into {len(parts)} parts ({shown})"
    return f"{text}\n{graph_summary(config)}"


SHOWN_CUTS = 10  # cut vertices named before "and N more"


def graph_summary(config: HerdConfig) -> str:
    """The herd's shape in a line: its diameter (the most hops an update takes to reach
    every node) and between which nodes, and its cut vertices (nodes whose loss would
    leave the others unable to hear of each other)."""
    from herdctl import graph

    shape = graph.adjacency(config.nodes, config.links)
    span = graph.diameter(shape)
    if span is None:
        reach = "no diameter (the herd is split)"
    elif span.hops == 0:
        reach = "diameter 0"
    else:
        reach = f"diameter {span.hops} ({span.ends[0]} to {span.ends[1]})"
    cuts = graph.cut_vertices(shape)
    named = ", ".join(cuts[:SHOWN_CUTS]) + (
        f" and {len(cuts) - SHOWN_CUTS} more" if len(cuts) > SHOWN_CUTS else ""
    )
    if not cuts:
        loss = "no cut vertex: the loss of any one node leaves the others connected"
    elif len(cuts) == 1:
        loss = f"cut vertex {named}: its loss would split the herd"
    else:
        loss = f"cut vertices {named}: the loss of any one would split the herd"
    return f"  {reach}; {loss}"
