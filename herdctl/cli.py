"""`herdctl`: run the herd. Typer commands only: parse arguments, call, print.

The supervisor daemon (herdctl.supervisor) does the work; this module talks to it over the
control channel (herdctl.control), to nodes over their sockets (herdctl.client), and reads
logs (herdctl.logs). Every mistake a user can make ends as one line on stderr and a non-zero
exit: 2 for a bad topology or argument, 1 for everything else.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from herdctl import logs, render
from herdctl.bench import (
    LOAD_MODES,
    BenchError,
    Mode,
    progress_bar,
    run_load,
    run_propagate,
    run_sync,
    summary,
)
from herdctl.client import (
    Readiness,
    Unreachable,
    exchange,
    is_ready,
    unsupervised_status,
    wait_gone,
    wait_ready,
)
from herdctl.control import ControlError, pid_path, request_sync, socket_path
from herdctl.daemon import SupervisorError, ensure_supervisor
from herdctl.messages import Answer, NodeRow, Request
from herdctl.procs import pid_file
from node.config import ConfigError, HerdConfig, default_config_path, load_config
from node.secret import short_secret_warning

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
LOG_TAIL = 10  # lines of a failed node's logs shown by `up`
ALL = "all"

app = typer.Typer(
    name="herdctl",
    help="Run the herd: a supervisor daemon that spawns, watches and restarts every node.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class UserError(Exception):
    """A mistake or failure to report as one message and an exit status, not a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED, details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details


@dataclass(frozen=True, slots=True)
class Options:
    """The global options, shared by every command through the typer context."""

    config_path: Path

    def load(self) -> HerdConfig:
        return load_config(self.config_path)


# --- plumbing --------------------------------------------------------------------------------


def _options(ctx: typer.Context) -> Options:
    options = ctx.find_object(Options)
    assert options is not None, "the app callback sets the options"
    return options


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _out(text: str) -> None:
    print(text, flush=True)


def _ensure(config: HerdConfig) -> int:
    """The supervisor's pid, starting it (and letting it adopt running nodes) if needed."""
    try:
        return ensure_supervisor(config.path)
    except (SupervisorError, ControlError, OSError) as e:
        raise UserError(f"cannot start the supervisor: {e}") from None


def _ask(
    config: HerdConfig,
    payload: Request,
    *,
    on_progress: Callable[[str], None] | None = None,
    timeout: float | None = 30.0,
) -> Answer:
    return request_sync(
        socket_path(config.run_dir), payload, on_progress=on_progress, timeout=timeout
    )


def _running_supervisor(config: HerdConfig) -> int | None:
    """The pid of a supervisor that answers ping, else None."""
    try:
        return int(_ask(config, {"cmd": "ping"}, timeout=5.0)["pid"])
    except ControlError:
        return None


def _left_behind(config: HerdConfig) -> bool:
    """Whether a supervisor ran here and ended without `down`: its nodes may still run."""
    files = [pid_path(config.run_dir), *(pid_file(config.run_dir, name) for name in config.nodes)]
    return any(path.exists() for path in files)


def _status(config: HerdConfig) -> list[NodeRow]:
    return list(_ask(config, {"cmd": "status"})["nodes"])


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


def _logs_of(config: HerdConfig, name: str) -> str:
    return "\n".join(
        logs.excerpt(config.log_dir / f"{name}{suffix}", LOG_TAIL)
        for suffix in (".stderr.log", ".log")
    )


def _describe(node: NodeRow | None) -> str:
    if node is None:
        return "unknown state"
    message = node.get("message")
    return f"{node['state']}: {message}" if message else node["state"]


def _wait(
    config: HerdConfig,
    names: list[str],
    timeout: float,
    verb: str,
    *,
    announce: Collection[str] | None = None,
) -> None:
    """Show progress until every node in `names` is ready; UserError naming a failed one.

    A line is printed for each node in `announce` (default: all) as it becomes ready, or,
    on a terminal, one live line is redrawn; an empty `announce` prints nothing.
    """
    if not names:
        return
    announce = names if announce is None else announce
    live = sys.stdout.isatty() and bool(announce)
    started = time.monotonic()

    def show(result: Readiness, name: str | None) -> None:
        if not live:  # a line per node as it becomes ready
            if name is not None and name in announce:
                _out(render.ready_line(result.last[name], time.monotonic() - started))
        elif name is None:  # one live line, redrawn once per poll
            columns = shutil.get_terminal_size().columns - 1
            line = render.progress_line(names, result.current, result.last, columns)
            sys.stdout.write(f"\r\x1b[K{line}")
            sys.stdout.flush()

    try:
        result = wait_ready(lambda: _status(config), names, timeout=timeout, on_change=show)
    finally:
        if live:
            sys.stdout.write("\n")
            sys.stdout.flush()
    if result.failed is not None:
        node = result.last.get(result.failed)
        raise UserError(
            f"{result.failed} failed to {verb}: {_describe(node)}",
            details=_logs_of(config, result.failed),
        )
    if result.timed_out:
        waiting = ", ".join(
            f"{name} ({_describe(result.last.get(name))})" for name in result.timed_out
        )
        raise UserError(
            f"timed out after {timeout:g}s waiting for {waiting}",
            details="\n".join(_logs_of(config, name) for name in result.timed_out),
        )


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
    nodes = _status(config)
    names = _local(nodes, [ALL])
    if not names:
        _out("no local node to start (every node in the topology is remote)")
        return
    by_name = {node["name"]: node for node in nodes}
    pending = [name for name in names if not is_ready(by_name[name])]
    if not pending:
        _out(f"herd already up: {len(names)} nodes ready (supervisor pid {pid}); nothing changed")
        return
    idle = [name for name in pending if by_name[name].get("state") not in ("RUNNING", "STARTING")]
    if idle:
        _ask(config, {"cmd": "start", "names": idle}, timeout=timeout)
        _out(f"starting {', '.join(idle)} (supervisor pid {pid})")
    started = time.monotonic()
    _wait(config, names, timeout, "start", announce=pending)
    _out(f"herd up: {len(names)} nodes ready in {time.monotonic() - started:.1f}s")


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every node, then the supervisor."""
    config = _options(ctx).load()
    pid = _running_supervisor(config)
    if pid is None:
        if not _left_behind(config):
            _out("no supervisor running; nothing to stop")
            return
        pid = _ensure(config)  # adopt what a dead supervisor left, so nothing is orphaned
    _ask(config, {"cmd": "shutdown"}, on_progress=_out, timeout=60.0)
    if not wait_gone(pid, timeout=30.0):
        raise UserError(f"the supervisor (pid {pid}) is still running 30s after shutdown")
    _out("herd down: every node stopped, supervisor exited")


@app.command()
def start(ctx: typer.Context, names: NamesArgument, timeout: TimeoutOption = 60.0) -> None:
    """Start nodes (stopped, exited or FATAL ones) and wait until they are ready."""
    config = _options(ctx).load()
    wanted = _names(config, names)
    _ensure(config)
    _ask(config, {"cmd": "start", "names": wanted}, on_progress=_out, timeout=timeout)
    _wait(config, _local(_status(config), wanted), timeout, "start")
    _out(f"started: {', '.join(wanted)}")


@app.command()
def stop(ctx: typer.Context, names: NamesArgument) -> None:
    """Stop nodes; they stay stopped until started again."""
    config = _options(ctx).load()
    wanted = _names(config, names)
    _ensure(config)
    _ask(config, {"cmd": "stop", "names": wanted}, on_progress=_out, timeout=60.0)
    _out(f"stopped: {', '.join(wanted)}")


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
    payload: Request = {"cmd": "restart", "names": wanted, "rolling": rolling}
    _ask(config, payload, on_progress=_out, timeout=timeout)
    local = _local(_status(config), wanted)
    _wait(config, local, timeout, "restart", announce=() if rolling else None)
    _out(f"restarted: {', '.join(wanted)}")


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list, one object per node.")] = (
        False
    ),
) -> None:
    """Show every node: state, pid, port, uptime, restarts, cpu, memory, links, clients."""
    config = _options(ctx).load()
    nodes: list[NodeRow]
    if _running_supervisor(config) is not None or _left_behind(config):
        _ensure(config)
        nodes = _status(config)
    else:
        _err("no supervisor running (`herdctl up` starts one); showing whether each port answers")
        nodes = unsupervised_status(config)
    _out(json.dumps(nodes, indent=2) if as_json else render.status_table(nodes))


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
    config = _options(ctx).load()
    _out(render.check_summary(config))
    warning = short_secret_warning()
    if warning is not None:
        _err(f"herdctl: {warning}")


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
    default = [source] if mode == Mode.PROPAGATE else ["Welsh"]
    specs = [config.node(name) for name in dict.fromkeys(target or default)]
    names = {f"{spec.host}:{spec.port}": spec.name for spec in specs}
    addresses = [(spec.host, spec.port) for spec in specs]
    live = sys.stderr.isatty()
    unit = "samples" if mode == Mode.PROPAGATE else "replies"
    total = float(samples) if mode == Mode.PROPAGATE else duration + 0.5  # 0.5 s warm-up

    def show(elapsed: float, done: int) -> None:
        sys.stderr.write(f"\r\x1b[K{progress_bar(elapsed, total, done, unit)}")
        sys.stderr.flush()

    if mode in LOAD_MODES:
        run = run_load(
            addresses,
            mode=mode,
            conns=conns,
            pipeline=pipeline,
            duration=duration,
            rate=rate,
            progress=show if live else None,
        )
    else:
        src, dst = config.node(source), config.node(dest)
        names.update({f"{s.host}:{s.port}": s.name for s in (src, dst)})
        run = run_propagate(
            (src.host, src.port),
            (dst.host, dst.port),
            samples=samples,
            background=addresses if target or rate else None,
            background_rate=rate,
            progress=show if live else None,
        )
    try:
        result = run_sync(run, loop)
    except BenchError as e:
        message = str(e)
        for where, name in names.items():  # "cannot reach 127.0.0.1:12003: ..." names Welsh
            message = message.replace(where, f"{name} at {where}")
        raise UserError(message) from None
    finally:
        if live:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
    _out(json.dumps(result.as_dict(), indent=2) if as_json else summary(result, names))


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: run the app; turn every user error into one line and a status."""
    try:
        app(args=argv, prog_name="herdctl")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_FAILED)
    except UserError as e:
        _err(f"herdctl: {e}")
        if e.details:
            _err(e.details)
        return e.code
    except ConfigError as e:
        _err(f"herdctl: {e}")
        return EXIT_USAGE
    except ControlError as e:
        _err(f"herdctl: {e}")
        return EXIT_FAILED
    except BrokenPipeError:  # `herdctl tail --all | head`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        _err(f"herdctl: {e.strerror or e}{where}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0
