"""`herdctl`: run the herd. Typer commands only: parse arguments, call, print.

The supervisor daemon (herdctl.supervisor) does the work; the commands reach it through
herdctl.daemon, wait for nodes through herdctl.waiting, talk to nodes through herdctl.client,
read logs through herdctl.logs and print through herdctl.render. Every mistake a user can make
ends as one line on stderr and a non-zero exit (herdctl.console), turned so in `main`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from herdctl import logs, render
from herdctl.client import Unreachable, exchange, unsupervised_status
from herdctl.console import EXIT_INTERRUPTED, EXIT_USAGE, UserError, err, exit_status, out
from herdctl.control import ControlError
from herdctl.daemon import (
    SupervisorError,
    answering,
    ask,
    ensure_supervisor,
    left_behind,
    node_rows,
    wait_gone,
)
from herdctl.loadgen.command import bench_herd
from herdctl.loadgen.report import summary
from herdctl.loadgen.result import BenchError, Mode
from herdctl.messages import NodeRow, Request
from herdctl.topology import Resolved, resolve
from herdctl.waiting import is_ready, show_until_ready
from node.config import (
    HerdConfig,
    default_config_path,
    load_config,
    parse_config,
    read_config_text,
)
from node.secret import short_secret_warning

ALL = "all"
RELOAD_WAIT = 120.0  # seconds between two progress lines of a reload: a stop, a start, a sync

app = typer.Typer(
    name="herdctl",
    help="Run the herd: a supervisor daemon that spawns, watches and restarts every node.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass(frozen=True, slots=True)
class Options:
    """The global options, shared by every command through the typer context."""

    config_path: Path

    def load(self) -> HerdConfig:
        """The topology to work on: the running herd's own (whatever the file says now),
        else the file's (herdctl.topology); a note on stderr when they differ."""
        return self.herd().config

    def herd(self) -> Resolved:
        herd = resolve(self.config_path)
        if herd.drift is not None:
            err(f"herdctl: note: {herd.drift}")
        return herd


def _options(ctx: typer.Context) -> Options:
    options = ctx.find_object(Options)
    assert options is not None, "the app callback sets the options"
    return options


def _ensure(config: HerdConfig) -> int:
    """The supervisor's pid, starting it (and letting it adopt running nodes) if needed."""
    try:
        return ensure_supervisor(config)
    except (SupervisorError, ControlError, OSError) as e:
        raise UserError(f"cannot start the supervisor: {e}") from None


def _names(config: HerdConfig, names: Sequence[str]) -> list[str]:
    """The names as given, checked against the topology (["all"] for all); no duplicates."""
    if not names:
        raise UserError("name at least one node, or 'all'", EXIT_USAGE)
    if ALL in names:
        return [ALL]
    for name in names:
        config.node(name)  # ConfigError naming the known nodes
    return list(dict.fromkeys(names))


def _local(nodes: Iterable[NodeRow], names: Sequence[str]) -> list[str]:
    """The local nodes among `names` (or all local nodes for ["all"]), in status order."""
    wanted = set(names)
    return [
        node["name"]
        for node in nodes
        if node.get("local", True) and (ALL in wanted or node["name"] in wanted)
    ]


# --- commands --------------------------------------------------------------------------------

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "-c",
        "--config",
        metavar="PATH",
        help="Topology file. Default: $HERD_CONFIG, else ./topology.yaml.",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the nodes to be ready.")
]
NamesArgument = Annotated[
    list[str], typer.Argument(metavar="NAME", help="Node names, or 'all'.", show_default=False)
]


@app.callback()
def _global(ctx: typer.Context, config: ConfigOption = None) -> None:
    ctx.obj = Options(config or default_config_path())


@app.command()
def up(ctx: typer.Context, timeout: TimeoutOption = 60.0) -> None:
    """Start the supervisor and every local node; wait until all are ready."""
    config = _options(ctx).load()
    pid = _ensure(config)
    nodes = node_rows(config)
    names = _local(nodes, [ALL])
    if not names:
        out("no local node to start (every node in the topology is remote)")
        return
    by_name = {node["name"]: node for node in nodes}
    pending = [name for name in names if not is_ready(by_name[name])]
    if not pending:
        out(f"herd already up: {len(names)} nodes ready (supervisor pid {pid}); nothing changed")
        return
    idle = [name for name in pending if by_name[name].get("state") not in ("RUNNING", "STARTING")]
    if idle:
        ask(config, {"cmd": "start", "names": idle}, timeout=timeout)
        out(f"starting {', '.join(idle)} (supervisor pid {pid})")
    started = time.monotonic()
    show_until_ready(config, lambda: node_rows(config), names, timeout, "start", announce=pending)
    out(f"herd up: {len(names)} nodes ready in {time.monotonic() - started:.1f}s")


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every node, then the supervisor."""
    config = _options(ctx).load()
    pid = answering(config)
    if pid is None:
        if not left_behind(config):
            out("no supervisor running; nothing to stop")
            return
        pid = _ensure(config)  # adopt what a dead supervisor left, so nothing is orphaned
    ask(config, {"cmd": "shutdown"}, on_progress=out, timeout=60.0)
    if not wait_gone(pid, timeout=30.0):
        raise UserError(f"the supervisor (pid {pid}) is still running 30s after shutdown")
    out("herd down: every node stopped, supervisor exited")


@app.command()
def start(ctx: typer.Context, names: NamesArgument, timeout: TimeoutOption = 60.0) -> None:
    """Start nodes (stopped, exited or FATAL ones) and wait until they are ready."""
    config = _options(ctx).load()
    wanted = _names(config, names)
    _ensure(config)
    ask(config, {"cmd": "start", "names": wanted}, on_progress=out, timeout=timeout)
    local = _local(node_rows(config), wanted)
    show_until_ready(config, lambda: node_rows(config), local, timeout, "start")
    out(f"started: {', '.join(wanted)}")


@app.command()
def stop(ctx: typer.Context, names: NamesArgument) -> None:
    """Stop nodes; they stay stopped until started again."""
    config = _options(ctx).load()
    wanted = _names(config, names)
    _ensure(config)
    ask(config, {"cmd": "stop", "names": wanted}, on_progress=out, timeout=60.0)
    out(f"stopped: {', '.join(wanted)}")


@app.command()
def restart(
    ctx: typer.Context,
    names: NamesArgument,
    rolling: Annotated[
        bool,
        typer.Option(
            "--rolling", help="One node at a time, each caught up before the next is stopped."
        ),
    ] = False,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Restart nodes (stop, then start) and wait until they are ready."""
    config = _options(ctx).load()
    wanted = _names(config, names)
    _ensure(config)
    request: Request = {"cmd": "restart", "names": wanted, "rolling": rolling}
    ask(config, request, on_progress=out, timeout=timeout)
    local = _local(node_rows(config), wanted)
    announce = () if rolling else None
    show_until_ready(
        config, lambda: node_rows(config), local, timeout, "restart", announce=announce
    )
    out(f"restarted: {', '.join(wanted)}")


@app.command()
def reload(ctx: typer.Context, timeout: TimeoutOption = 60.0) -> None:
    """Apply an edited topology file: validate it, then restart only what changed (rolling).

    Stops removed nodes, starts added ones and restarts one at a time those whose spec
    changed, and those whose neighbours changed or moved (nodes read their links at start).
    """
    path = _options(ctx).config_path
    text = read_config_text(path)
    config = parse_config(text, path)  # an invalid file changes nothing: ConfigError, exit 2
    if answering(config) is None:
        raise UserError(
            "no supervisor running: nothing to reload (`herdctl up` starts the herd on the file)"
        )
    answer = ask(config, {"cmd": "reload", "text": text}, on_progress=out, timeout=RELOAD_WAIT)
    changes, failed = answer.get("changes", []), answer.get("failed", [])
    if not changes:
        out(f"{path.name}: nothing to change; the herd runs it as it is")
        return
    if failed:
        raise UserError(f"reload: {', '.join(failed)} did not come back (see above)")
    touched = answer.get("touched", [])
    show_until_ready(config, lambda: node_rows(config), touched, timeout, "reload", announce=())
    out(f"reloaded {path.name}: {len(changes)} change{'s' * (len(changes) != 1)} applied")


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list, one object per node.")] = (
        False
    ),
) -> None:
    """Show every node: state, pid, port, uptime, restarts, cpu, memory, links, clients."""
    herd = resolve(_options(ctx).config_path)
    config = herd.config
    nodes: list[NodeRow]
    if answering(config) is not None or left_behind(config):
        _ensure(config)
        nodes = node_rows(config)
        for node in nodes:
            node["topology_changed"] = herd.drift is not None
    else:
        err("no supervisor running (`herdctl up` starts one); showing whether each port answers")
        nodes = unsupervised_status(config)
    out(json.dumps(nodes, indent=2) if as_json else render.status_table(nodes))
    if herd.drift is not None and not as_json:
        out(herd.drift)


@app.command()
def tail(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="The node whose log to show.")
    ] = None,
    all_nodes: Annotated[
        bool, typer.Option("--all", help="Every node's log, merged by timestamp.")
    ] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many lines.")] = 10,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines, across rotation.")
    ] = False,
) -> None:
    """Show the last lines of a node's log, or of every node's (--all)."""
    config = _options(ctx).load()
    if all_nodes == (name is not None):
        raise UserError("name one node, or use --all", EXIT_USAGE)
    names = list(config.nodes) if name is None else [config.node(name).name]
    paths = {n: config.log_dir / f"{n}.log" for n in names}
    if not follow and not any(path.exists() for path in paths.values()):
        where = paths[names[0]] if name is not None else config.log_dir
        raise UserError(f"no log yet at {where} (has the node run?)")
    width = max(map(len, names)) if name is None else 0

    def emit(entries: Iterable[logs.Entry]) -> None:
        for entry in entries:
            text = entry.lines if name is not None else logs.prefixed(entry, width)
            sys.stdout.write("".join(f"{line}\n" for line in text))
        sys.stdout.flush()

    followers = {n: logs.Follower(path) for n, path in paths.items()}
    emit(logs.history(followers, lines))
    if not follow:
        for f in followers.values():
            f.close()
        return
    try:
        for entry in logs.follow(followers):
            emit([entry])
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


@app.command(
    # Everything after NAME is the message, even words like -33.86+151.20 or --help.
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
def send(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The node to talk to.")],
    message: Annotated[
        list[str],
        typer.Argument(
            metavar="MESSAGE", help="The line to send; several words are joined by one space."
        ),
    ],
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds for the whole exchange.")
    ] = 10.0,
) -> None:
    """Send one message line to a node and print its whole reply (options go before NAME)."""
    config = _options(ctx).load()
    spec = config.node(name)
    data = os.fsencode(" ".join(message))  # the argument's own bytes, UTF-8 or not
    if not data.endswith(b"\n"):
        data += b"\n"
    try:
        reply = exchange(spec.host, spec.port, data, timeout=timeout)
    except Unreachable as e:
        raise UserError(f"cannot reach {name} at {spec.host}:{spec.port}: {e}") from None
    sys.stdout.buffer.write(reply)
    sys.stdout.buffer.flush()


@app.command()
def check(ctx: typer.Context) -> None:
    """Validate the topology file and summarise it in one line; warn if $HERD_SECRET is short."""
    config = load_config(_options(ctx).config_path)  # the file itself, never the herd's copy
    out(render.check_summary(config))
    warning = short_secret_warning()
    if warning is not None:
        err(f"herdctl: {warning}")


@app.command("bench")
def bench_command(
    ctx: typer.Context,
    mode: Annotated[Mode, typer.Option("--mode", help="The load, or propagation timing.")] = (
        Mode.IAMAT
    ),
    conns: Annotated[int, typer.Option("--conns", min=1, help="Connections.")] = 32,
    pipeline: Annotated[
        int, typer.Option("--pipeline", min=1, help="Requests in flight per connection.")
    ] = 64,
    duration: Annotated[
        float, typer.Option("--duration", min=0.1, help="Seconds measured, after a warm-up.")
    ] = 5.0,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            min=1,
            help="Open loop: requests/s over all connections (propagate: background IAMATs"
            " into the targets). Default: closed loop (propagate: no background).",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            metavar="NODE",
            help="Node to load; repeat for several. Default: Welsh (propagate: the --from node).",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        str, typer.Option("--from", metavar="NODE", help="Propagate: where the IAMAT goes.")
    ] = "Welsh",
    dest: Annotated[
        str, typer.Option("--to", metavar="NODE", help="Propagate: where WHATSAT polls.")
    ] = "Hands",
    samples: Annotated[int, typer.Option("--samples", min=1, help="Propagate: how many.")] = 200,
    loop: Annotated[
        str, typer.Option("--loop", metavar="auto|uvloop|asyncio", help="Event loop.")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="LoadResult as one JSON object.")] = False,
) -> None:
    """Load a running herd and measure it: replies/s, latency, and this generator's own CPU."""
    config = _options(ctx).load()
    if loop not in ("auto", "uvloop", "asyncio"):
        raise UserError(f"--loop must be auto, uvloop or asyncio, not {loop!r}", EXIT_USAGE)
    try:
        result, names = bench_herd(
            config,
            mode=mode,
            conns=conns,
            pipeline=pipeline,
            duration=duration,
            rate=rate,
            targets=target,
            source=source,
            dest=dest,
            samples=samples,
            loop=loop,
        )
    except BenchError as e:
        raise UserError(str(e)) from None
    out(json.dumps(result.as_dict(), indent=2) if as_json else summary(result, names))


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: run the app; every user error becomes one line and a status."""
    return exit_status(lambda: app(args=argv, prog_name="herdctl"))
