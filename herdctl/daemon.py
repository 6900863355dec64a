"""Finding, starting, asking and outliving the supervisor daemon, for the CLI.

`ensure_supervisor(config_path)` is the one call `herdctl` needs before any request: it
returns the pid of a supervisor that answers `ping`, starting one (detached, in its own
session) when none is running, and cleaning a stale pid file or socket first. `ask` sends it
one request; `wait_gone` sees it exit after `shutdown`.

herdctl.procs (and psutil under it, 10 ms) is imported by the calls that look at processes,
not here: `herdctl status` and `--help` never need it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from herdctl import control
from herdctl.logs import last_lines
from herdctl.messages import Answer, NodeRow, Request
from node.config import HerdConfig, load_config
from node.private import private_dir

LOG_NAME = "herdctl.log"
MAX_SOCKET_PATH = 107  # bytes: sun_path is 108 including the terminating NUL
START_TIMEOUT = 10.0


class SupervisorError(Exception):
    """The supervisor cannot be started or reached; str() says why (with its log's tail)."""


def socket_for(config: HerdConfig) -> Path:
    """The control socket of `config`'s supervisor, or SupervisorError if the path is too long."""
    sock = control.socket_path(config.run_dir)
    size = len(os.fsencode(sock))
    if size > MAX_SOCKET_PATH:
        raise SupervisorError(
            f"the control socket path {sock} is {size} bytes, more than the {MAX_SOCKET_PATH} "
            f"a Unix socket allows; set run_dir in {config.path.name} to a shorter path"
        )
    return sock


def supervisor_log(config: HerdConfig) -> Path:
    return config.log_dir / LOG_NAME


def supervisor_cmdline(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "herdctl.supervisor", "-c", str(config_path)]


def running_supervisor(run_dir: Path) -> int | None:
    """The pid in `run_dir/herdctl.pid` if that process is alive and is a supervisor."""
    import psutil

    from herdctl.procs import live_process, read_json

    info = read_json(control.pid_path(run_dir)) or {}
    proc = live_process(info)
    if proc is None:
        return None
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return None
    return proc.pid if "herdctl.supervisor" in cmdline else None


def ping(sock: Path, timeout: float = 2.0) -> int | None:
    """The pid of the supervisor answering on `sock`, or None."""
    try:
        answer = control.request(sock, {"cmd": "ping"}, timeout=timeout)
    except control.ControlError:
        return None
    pid = answer.get("pid")
    return pid if isinstance(pid, int) else None


def ask(
    config: HerdConfig,
    request: Request,
    *,
    on_progress: Callable[[str], None] | None = None,
    timeout: float | None = 30.0,
) -> Answer:
    """Send `request` to `config`'s supervisor; its answer when ok, else ControlError."""
    sock = control.socket_path(config.run_dir)
    return control.request(sock, request, on_progress=on_progress, timeout=timeout)


def node_rows(config: HerdConfig) -> list[NodeRow]:
    """Every node's status row, from the supervisor, in topology order."""
    return list(ask(config, {"cmd": "status"})["nodes"])


def answering(config: HerdConfig) -> int | None:
    """The pid of a supervisor for `config` that answers ping, else None."""
    return ping(control.socket_path(config.run_dir), timeout=5.0)


def left_behind(config: HerdConfig) -> bool:
    """Whether a supervisor ran here and ended without `down`: its nodes may still run."""
    from herdctl.procs import pid_file

    run_dir = config.run_dir
    files = [control.pid_path(run_dir), *(pid_file(run_dir, name) for name in config.nodes)]
    return any(path.exists() for path in files)


def wait_gone(pid: int, *, timeout: float, interval: float = 0.05) -> bool:
    """Wait until process `pid` (any process, not only a child) has exited; False on timeout.

    A zombie counts as gone: it holds no resources, and its reaping is its parent's job.
    """
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(path: Path, lines: int = 10) -> str:
    """The last `lines` lines of a log file (of its last 16 KiB), or a note that there is none."""
    try:
        return "\n".join(last_lines(path, lines, limit=16384))
    except OSError:
        return f"(no log at {path})"


def ensure_supervisor(
    config_path: HerdConfig | str | os.PathLike[str],
    timeout: float = START_TIMEOUT,
    *,
    daemon_args: Sequence[str] = (),
    on_start: Callable[[int], None] | None = None,
) -> int:
    """The pid of a live supervisor for this topology, started (detached) if needed.

    `daemon_args` are extra options for a daemon started here (e.g. `--stop-timeout 3`);
    `on_start(pid)` is called when the supervisor that answers is one this call started.
    A HerdConfig is taken as it is (the running herd's own, herdctl.topology); a path is read.
    Raises node.config.ConfigError for a bad topology file, SupervisorError otherwise.
    """
    config = config_path if isinstance(config_path, HerdConfig) else load_config(config_path)
    sock = socket_for(config)
    pid = ping(sock)
    if pid is not None:
        return pid
    daemon: subprocess.Popen[bytes] | None = None
    if running_supervisor(config.run_dir) is None:
        # A stale pid file needs nothing here: the new daemon takes its lock and rewrites it.
        with contextlib.suppress(OSError):
            sock.unlink()
        daemon = start_daemon(config, daemon_args)
    deadline = time.monotonic() + timeout
    while True:
        pid = ping(sock, timeout=1.0)
        if pid is not None:
            if on_start is not None and daemon is not None and daemon.pid == pid:
                on_start(pid)
            return pid
        if daemon is not None and daemon.poll() is not None:
            # Another herdctl may have won the race to start one; otherwise this is fatal.
            if running_supervisor(config.run_dir) is None:
                raise SupervisorError(
                    f"the supervisor exited with code {daemon.returncode}; "
                    f"last lines of {supervisor_log(config)}:\n{log_tail(supervisor_log(config))}"
                )
            daemon = None
        if time.monotonic() >= deadline:
            raise SupervisorError(
                f"the supervisor did not answer on {sock} within {timeout:g}s; "
                f"last lines of {supervisor_log(config)}:\n{log_tail(supervisor_log(config))}"
            )
        time.sleep(0.05)


def start_daemon(config: HerdConfig, args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Start `python -m herdctl.supervisor` in its own session, output to its log."""
    from herdctl.procs import spawn_detached

    private_dir(config.log_dir)
    cmdline = [*supervisor_cmdline(config.path), *args]
    return spawn_detached(cmdline, supervisor_log(config), config.path.parent)
