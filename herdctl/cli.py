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
from collections.abc import Sequence
from typing import Annotated

import typer

from herdctl import cli_files, plain_params, render, tailing
from herdctl.arguments import (
    ALL,
    ConfigOption,
    NamesArgument,
    Options,
    TimeoutOption,
    checked_names,
    complete_names,
    ctrl_c_stops_waiting,
    ensure,
    local_names,
    options_of,
    show_version,
)
from herdctl.client import Unreachable, exchange, unsupervised_status
from herdctl.console import (
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
from herdctl.daemon import (
    answering,
    ask,
    left_behind,
    node_rows,
    wait_gone,
)
from herdctl.dashboard import command as dashboard
from herdctl.loadgen.result import BenchError, Mode
from herdctl.messages import NodeRow, Request
from herdctl.waiting import is_ready, not_running, show_until_ready
from node.config import load_config, parse_config, read_config_text
from node.secret import short_secret_warning

plain_params.install()  # before any command runs: see herdctl.plain_params

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
app.add_typer(cli_files.topology_app, name="topology")
app.add_typer(cli_files.export_app, name="export")


@app.callback()
def _global(
    ctx: typer.Context,
    config: ConfigOption = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="Show the version and exit.", is_eager=True, callback=show_version
        ),
    ] = False,
) -> None:
    ctx.obj = Options(config)


@app.command()
def up(ctx: typer.Context, timeout: TimeoutOption = 60.0, config_path: ConfigOption = None) -> None:
    """Start the supervisor and every local node; wait until all are ready.

    Ctrl-C stops the waiting, not the herd: the nodes come up all the same.
    """
    config = options_of(ctx).load(config_path)
    with ctrl_c_stops_waiting(config):
        with interrupt_deferred():  # never a supervisor that was not asked to start the nodes
            pid = ensure(config)
            nodes = node_rows(config)
            names = local_names(nodes, [ALL])
            if not names:
                out("no local node to start (every node in the topology is remote)")
                return
            by_name = {node["name"]: node for node in nodes}
            pending = [name for name in names if not is_ready(by_name[name])]
            if not pending:
                ready = f"{len(names)} nodes ready (supervisor pid {pid})"
                out(f"herd already up: {ready}; nothing changed")
                dashboard.announce(config)
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
    dashboard.announce(config)


@app.command()
def down(ctx: typer.Context, config_path: ConfigOption = None) -> None:
    """Stop every node, then the supervisor."""
    config = options_of(ctx).load(config_path)
    pid = answering(config)
    if pid is None:
        if not left_behind(config):
            out("no supervisor running; nothing to stop")
            return
        pid = ensure(config)  # adopt what a dead supervisor left, so nothing is orphaned
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
    config = options_of(ctx).load(config_path)
    wanted = checked_names(config, names)
    with ctrl_c_stops_waiting(config):
        with interrupt_deferred():
            ensure(config)
            before = node_rows(config)
            ask(config, {"cmd": "start", "names": wanted}, on_progress=out, timeout=timeout)
        local = local_names(before, wanted)
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
    config = options_of(ctx).load(config_path)
    wanted = checked_names(config, names)
    ensure(config)
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
    config = options_of(ctx).load(config_path)
    wanted = checked_names(config, names)
    with ctrl_c_stops_waiting(config):
        ensure(config)
        request: Request = {"cmd": "restart", "names": wanted, "rolling": rolling}
        ask(config, request, on_progress=out, timeout=timeout)
        local = local_names(node_rows(config), wanted)
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
    path = options_of(ctx).path(config_path)
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


@app.command("dashboard")
def dashboard_command(
    ctx: typer.Context,
    open_browser: Annotated[bool, typer.Option("--open", help="Open it in a browser too.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """Print the address of the herd's dashboard (with its token); --open opens it.

    The topology's `dashboard:` key turns it on: {host: 127.0.0.1, port: 12110}.
    """
    dashboard.show(options_of(ctx).load(config_path), open_browser=open_browser)


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
    herd = options_of(ctx).herd(config_path, note=False)  # the table ends with the drift
    config = herd.config
    nodes: list[NodeRow]
    if answering(config) is not None or left_behind(config):
        ensure(config)
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
            autocompletion=complete_names,
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
    config = options_of(ctx).load(config_path)
    every = all_nodes or name == ALL
    if every == (name not in (None, ALL)):
        raise UserError("name one node, or 'all'", EXIT_USAGE)
    tailing.show(config, name, every, stderr=stderr, since=since, lines=lines, follow=follow)


@app.command()
def send(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The node to talk to.", autocompletion=complete_names),
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
    config = options_of(ctx).load(config_path)
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
    """Validate the topology file and summarise it: nodes, links, diameter, cut vertices.

    Warns when the links leave the herd in parts, and when $HERD_SECRET is short.
    """
    config = load_config(options_of(ctx).path(config_path))  # the file, never the herd's copy
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

    config = options_of(ctx).load(config_path)
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
