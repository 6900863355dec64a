"""`herdctl`: run the herd. Typer commands only: parse arguments, call, print.

The supervisor daemon (herdctl.supervisor) does the work; the commands reach it through
herdctl.daemon, wait for nodes through herdctl.waiting, talk to nodes through herdctl.client,
read logs through herdctl.logs and print through herdctl.render. Every mistake a user can make
ends as one line on stderr and a non-zero exit (herdctl.console), turned so in `main`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from herdctl import locate, logs, render
from herdctl.client import Unreachable, exchange, unsupervised_status
from herdctl.console import (
    EXIT_INTERRUPTED,
    EXIT_NOT_RUNNING,
    EXIT_REFUSED,
    EXIT_USAGE,
    UserError,
    colour,
    err,
    exit_status,
    interrupt_deferred,
    out,
)
from herdctl.control import ControlError
from herdctl.daemon import (
    SupervisorError,
    answering,
    ask,
    ensure_supervisor,
    left_behind,
    node_rows,
    supervisor_log,
    wait_gone,
)
from herdctl.loadgen.result import BenchError, Mode
from herdctl.messages import NodeRow, Request
from herdctl.topology import Resolved, resolve
from herdctl.waiting import is_ready, not_running, show_until_ready
from node.config import ConfigError, HerdConfig, load_config, parse_config, read_config_text
from node.secret import short_secret_warning

ALL = "all"
SERVING = ("RUNNING", "STARTING")  # what `start` leaves alone
RELOAD_WAIT = 120.0  # seconds between two progress lines of a reload: a stop, a start, a sync

app = typer.Typer(
    name="herdctl",
    help="Run the herd: a supervisor daemon that spawns, watches and restarts every node.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich would cost every --help a tenth of a second
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


def _options(ctx: typer.Context) -> Options:
    options = ctx.find_object(Options)
    assert options is not None, "the app callback sets the options"
    return options


def _ensure(config: HerdConfig) -> int:
    """The supervisor's pid, starting it (and letting it adopt running nodes) if needed."""
    try:
        return ensure_supervisor(config, on_start=lambda pid: _started(config, pid))
    except (SupervisorError, ControlError, OSError) as e:
        raise UserError(f"cannot start the supervisor: {e}") from None


def _started(config: HerdConfig, pid: int) -> None:
    err(f"herdctl: started a supervisor (pid {pid}, log {supervisor_log(config)})")


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


@contextlib.contextmanager
def _ctrl_c_stops_waiting(config: HerdConfig) -> Iterator[None]:
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


# --- commands --------------------------------------------------------------------------------

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


def _complete_names(ctx: typer.Context, incomplete: str) -> list[str]:
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
        autocompletion=_complete_names,
    ),
]


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version  # 40 ms: only for --version

        out(f"herdctl {version('herd')}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    config: ConfigOption = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="Show the version and exit.", is_eager=True, callback=_show_version
        ),
    ] = False,
) -> None:
    ctx.obj = Options(config)


@app.command()
def up(
    ctx: typer.Context, timeout: TimeoutOption = 60.0, config_path: ConfigOption = None
) -> None:
    """Start the supervisor and every local node; wait until all are ready.

    Ctrl-C stops the waiting, not the herd: the nodes come up all the same.
    """
    config = _options(ctx).load(config_path)
    with _ctrl_c_stops_waiting(config):
        with interrupt_deferred():  # never a supervisor that was not asked to start the nodes
            pid = _ensure(config)
            nodes = node_rows(config)
            names = _local(nodes, [ALL])
            if not names:
                out("no local node to start (every node in the topology is remote)")
                return
            by_name = {node["name"]: node for node in nodes}
            pending = [name for name in names if not is_ready(by_name[name])]
            if not pending:
                ready = f"{len(names)} nodes ready (supervisor pid {pid})"
                out(f"herd already up: {ready}; nothing changed")
                return
            idle = [n for n in pending if by_name[n].get("state") not in SERVING]
            if idle:
                ask(config, {"cmd": "start", "names": idle}, timeout=timeout)
                out(f"starting {', '.join(idle)} (supervisor pid {pid})")
        started = time.monotonic()
        show_until_ready(
            config, lambda: node_rows(config), names, timeout, "start", announce=pending
        )
    out(f"herd up: {len(names)} nodes ready in {time.monotonic() - started:.1f}s")


@app.command()
def down(ctx: typer.Context, config_path: ConfigOption = None) -> None:
    """Stop every node, then the supervisor."""
    config = _options(ctx).load(config_path)
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
def start(
    ctx: typer.Context,
    names: NamesArgument,
    timeout: TimeoutOption = 60.0,
    config_path: ConfigOption = None,
) -> None:
    """Start nodes (stopped, exited or FATAL ones) and wait until they are ready; say which
    were running already."""
    config = _options(ctx).load(config_path)
    wanted = _names(config, names)
    with _ctrl_c_stops_waiting(config):
        with interrupt_deferred():
            _ensure(config)
            before = node_rows(config)
            ask(config, {"cmd": "start", "names": wanted}, on_progress=out, timeout=timeout)
        local = _local(before, wanted)
        running = [row for row in before if row["name"] in local and row["state"] in SERVING]
        for row in running:
            out(f"{row['name']}: already running (pid {row.get('pid')}); left as it is")
        fresh = [name for name in local if name not in {row["name"] for row in running}]
        show_until_ready(config, lambda: node_rows(config), fresh, timeout, "start")
    if fresh:
        out(f"started: {', '.join(fresh)}")


@app.command()
def stop(ctx: typer.Context, names: NamesArgument, config_path: ConfigOption = None) -> None:
    """Stop nodes; they stay stopped until started again."""
    config = _options(ctx).load(config_path)
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
    config_path: ConfigOption = None,
) -> None:
    """Restart nodes (stop, then start) and wait until they are ready."""
    config = _options(ctx).load(config_path)
    wanted = _names(config, names)
    with _ctrl_c_stops_waiting(config):
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
def reload(
    ctx: typer.Context, timeout: TimeoutOption = 60.0, config_path: ConfigOption = None
) -> None:
    """Apply an edited topology file: validate it, then restart only what changed (rolling).

    Stops removed nodes, starts added ones and restarts one at a time those whose spec
    changed, and those whose neighbours changed or moved (nodes read their links at start).
    """
    path = _options(ctx).path(config_path)
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
    config_path: ConfigOption = None,
) -> None:
    """Show every node: state, pid, port, uptime, restarts, cpu, memory, links, clients.

    Exits 3 when a local node is not RUNNING (as supervisorctl does), else 0.
    """
    herd = _options(ctx).herd(config_path, note=False)  # the table ends with the drift
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
    table = render.status_table(nodes, colour=colour(sys.stdout))
    out(json.dumps(nodes, indent=2) if as_json else table)
    if herd.drift is not None and not as_json:
        out(herd.drift)
    if not_running(nodes):
        raise typer.Exit(EXIT_NOT_RUNNING)


@app.command()
def tail(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME",
            help="The node whose log to show, or 'all'.",
            autocompletion=_complete_names,
        ),
    ] = None,
    all_nodes: Annotated[
        bool, typer.Option("--all", help="Every node's log, merged by timestamp (as 'all').")
    ] = False,
    lines: Annotated[
        int | None,
        typer.Option(
            "-n",
            "--lines",
            min=0,
            help="How many lines of each log. Default: 10, or every one with --since.",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="AGE|TIME",
            help="Only lines of the last AGE (30s, 5m, 2h, 1d) or since a TIME (ISO, UTC).",
        ),
    ] = None,
    stderr: Annotated[
        bool, typer.Option("--stderr", help="NAME.stderr.log (the node's own output) instead.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines, across rotation.")
    ] = False,
    config_path: ConfigOption = None,
) -> None:
    """Show the last lines of a node's log, or of every node's ('all' or --all)."""
    config = _options(ctx).load(config_path)
    every = all_nodes or name == ALL
    if every == (name not in (None, ALL)):
        raise UserError("name one node, or 'all'", EXIT_USAGE)
    names = list(config.nodes) if every else [config.node(str(name)).name]
    suffix = ".stderr.log" if stderr else ".log"
    paths = {n: config.log_dir / f"{n}{suffix}" for n in names}
    cutoff = None
    if since is not None:
        if stderr:
            raise UserError("--since needs timestamps, and NAME.stderr.log has none", EXIT_USAGE)
        try:
            cutoff = logs.since_stamp(since, datetime.now(UTC))
        except ValueError as e:
            raise UserError(f"--since: {e}", EXIT_USAGE) from None
    where = config.log_dir if every else paths[names[0]]
    if not any(path.exists() for path in paths.values()):
        if not follow:
            raise UserError(f"no log yet at {where} (has the node run?)")
        err(f"herdctl: no log yet at {where}; waiting for it (Ctrl-C to stop)")
    width = max(map(len, names)) if every else 0

    def emit(entries: Iterable[logs.Entry]) -> None:
        for entry in entries:
            text = logs.prefixed(entry, width) if every else entry.lines
            sys.stdout.write("".join(f"{line}\n" for line in text))
        sys.stdout.flush()

    followers = {n: logs.Follower(path) for n, path in paths.items()}
    emit(logs.history(followers, 10 if lines is None and cutoff is None else lines, cutoff))
    if not follow:
        for f in followers.values():
            f.close()
        return
    try:
        for entry in logs.follow(followers):
            emit([entry])
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


@app.command()
def send(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The node to talk to.", autocompletion=_complete_names),
    ],
    message: Annotated[
        list[str],
        typer.Argument(
            metavar="MESSAGE",
            help="The line to send, quoted whole or as words joined by one space; "
            "words starting with '-' go after --.",
        ),
    ],
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds for the whole exchange.")
    ] = 10.0,
    config_path: ConfigOption = None,
) -> None:
    """Send one line to a node and print its whole reply; exit 3 if the node found it invalid.

    Options may come anywhere; after `--` everything is the message:
    `herdctl send Welsh --timeout 2 -- IAMAT syd -33.86+151.20 1520023934.9`.
    """
    config = _options(ctx).load(config_path)
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
    from herdctl import invalid  # the node's protocol checks, only for `send`

    refused = invalid.refused_lines(reply)
    if refused:
        max_line = config.limits.max_line_bytes
        why = "; ".join(invalid.reason(line, max_line=max_line) for line in refused)
        raise UserError(f"{name} found the line invalid: {why}", EXIT_REFUSED)


@app.command()
def check(ctx: typer.Context, config_path: ConfigOption = None) -> None:
    """Validate the topology file and summarise it in one line; warn if $HERD_SECRET is short."""
    config = load_config(_options(ctx).path(config_path))  # the file, never the herd's copy
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
    config_path: ConfigOption = None,
) -> None:
    """Load a running herd and measure it: replies/s, latency, and this generator's own CPU."""
    from herdctl.loadgen.command import bench_herd  # asyncio and the load engine: bench's own
    from herdctl.loadgen.report import summary

    config = _options(ctx).load(config_path)
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
