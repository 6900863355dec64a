"""What every `herdctl` command shares: the global options and the topology they name, the
argument types, starting the supervisor, node names checked, and Ctrl-C while waiting."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from herdctl import locate, render
from herdctl.console import EXIT_INTERRUPTED, EXIT_USAGE, UserError, colour, err, out
from herdctl.control import ControlError
from herdctl.daemon import SupervisorError, ask, ensure_supervisor, supervisor_log
from herdctl.messages import NodeRow
from herdctl.topology import Resolved, resolve
from node.config import ConfigError, HerdConfig, load_config

ALL = "all"


@dataclass(frozen=True, slots=True)
class Options:
    """The global options, shared by every command through the typer context."""

    config_path: Path | None  # -c before the command

    def path(self, config_path: Path | None = None) -> Path:
        """The topology file: -c after the command, else -c before it, else $HERD_CONFIG,
        else the nearest topology.yaml from here upwards (herdctl.locate)."""
        return locate.config_path(config_path or self.config_path)

    def load(self, config_path: Path | None = None) -> HerdConfig:
        """The topology to work on: the running herd's own (whatever the file says now),
        else the file's (herdctl.topology); a note on stderr when they differ."""
        return self.herd(config_path).config

    def herd(self, config_path: Path | None = None, *, note: bool = True) -> Resolved:
        """herdctl.topology's `resolve` of `path()`. With no file found, the herd a
        supervisor runs from here on its own copy still counts (the file may be gone)."""
        try:
            path = self.path(config_path)
        except ConfigError as missing:  # no file here or above: is a herd running from here?
            try:
                herd = resolve(Path(locate.CONFIG_NAME))
            except ConfigError:
                raise missing from None
            if not herd.supervised:
                raise missing from None
        else:
            herd = resolve(path)
        if note and herd.drift is not None:
            err(f"herdctl: note: {herd.drift}")
        return herd


def options_of(ctx: typer.Context) -> Options:
    options = ctx.find_object(Options)
    assert options is not None, "the app callback sets the options"
    return options


def ensure(config: HerdConfig) -> int:
    """The supervisor's pid, starting it (and letting it adopt running nodes) if needed."""
    try:
        return ensure_supervisor(config, on_start=lambda pid: started(config, pid))
    except (SupervisorError, ControlError, OSError) as e:
        raise UserError(f"cannot start the supervisor: {e}") from None


def started(config: HerdConfig, pid: int) -> None:
    err(f"herdctl: started a supervisor (pid {pid}, log {supervisor_log(config)})")


def checked_names(config: HerdConfig, names: Sequence[str]) -> list[str]:
    """The names as given, checked against the topology (["all"] for all); no duplicates."""
    if not names:
        raise UserError("name at least one node, or 'all'", EXIT_USAGE)
    if ALL in names:
        return [ALL]
    for name in names:
        config.node(name)  # ConfigError naming the known nodes
    return list(dict.fromkeys(names))


def local_names(nodes: Iterable[NodeRow], names: Sequence[str]) -> list[str]:
    """The local nodes among `names` (or all local nodes for ["all"]), in status order."""
    wanted = set(names)
    return [
        node["name"]
        for node in nodes
        if node.get("local", True) and (ALL in wanted or node["name"] in wanted)
    ]


@contextlib.contextmanager
def ctrl_c_stops_waiting(config: HerdConfig) -> Iterator[None]:
    """Ctrl-C ends the wait, never the herd: show what runs now and exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        try:
            nodes = list(ask(config, {"cmd": "status"}, timeout=5.0)["nodes"])
        except ControlError as e:
            err(f"herdctl: interrupted; no status from the supervisor: {e}")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        err(
            "herdctl: interrupted: stopped waiting; the supervisor carries on with what it "
            "started (`herdctl down` stops the herd)"
        )
        out(render.status_table(nodes, colour=colour(sys.stdout)))
        raise typer.Exit(EXIT_INTERRUPTED) from None


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "-c",
        "--config",
        metavar="PATH",
        help="Topology file. Default: $HERD_CONFIG, else the nearest topology.yaml in this"
        " folder or one above it.",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the nodes to be ready.")
]


def complete_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of NAME: the topology's nodes, and 'all'."""
    given = ctx.params.get("config_path") or ctx.find_root().params.get("config")
    try:
        config = load_config(locate.config_path(given))
    except ConfigError:
        return []
    return [name for name in (*config.nodes, ALL) if name.startswith(incomplete)]


NamesArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="NAME",
        help="Node names, or 'all'.",
        show_default=False,
        autocompletion=complete_names,
    ),
]


def show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version  # 40 ms: only for --version

        out(f"herdctl {version('herd')}")
        raise typer.Exit()
