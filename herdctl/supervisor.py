"""The supervisor daemon: `python -m herdctl.supervisor -c CONFIG`.

On start it takes `run_dir/herdctl.pid` (an exclusive lock held for its whole life, so a
second supervisor for the same run_dir refuses to start; a stale file is simply taken over),
adopts the nodes an earlier supervisor left running (pid file + create time + command line),
and answers control requests on `run_dir/herdctl.sock`. It spawns nodes only when asked
(`start`), restarts those that die (herdctl.policy), and logs one line per event to
`log_dir/herdctl.log`. The CLI starts it with `herdctl.daemon.ensure_supervisor`.

SIGTERM or SIGINT ends the daemon WITHOUT stopping the nodes: they keep serving and the next
supervisor adopts them. Only the `shutdown` request stops every node first. The nodes also
survive a SIGKILL of the daemon, since each runs in its own session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import psutil

from herdctl import control
from herdctl.daemon import LOG_NAME, SupervisorError, socket_for
from herdctl.dashboard.service import DashboardService
from herdctl.manager import Manager
from herdctl.messages import Answer
from herdctl.procs import PsLauncher, identity, read_json
from herdctl.reload import Reloader
from herdctl.topology import Owned, write_copy
from node.config import ConfigError, LogRotation, default_config_path
from node.private import open_private, private_dir
from node.rotation import rotate_if_full

EXIT_USAGE = 2
EXIT_RUNNING = 1


class AlreadyRunning(Exception):
    """Another live supervisor holds the pid file."""


class EventLog:
    """Appends one UTC-timestamped line per event, written at once (events are rare).
    The file is 0600, like every log of the herd."""

    def __init__(self, path: Path, rotation: LogRotation) -> None:
        private_dir(path.parent)
        with contextlib.suppress(OSError):  # a full disk: the log just grows
            rotate_if_full(path, rotation.max_bytes, rotation.backups)
        fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        self._file: TextIO = open(fd, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def event(self, text: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        # A full disk must not take the supervisor down.
        with contextlib.suppress(OSError):
            self._file.write(f"{stamp}.{int(now % 1 * 1e6):06d}Z {text}\n")

    def close(self) -> None:
        self._file.close()


def acquire_pid_file(path: Path) -> int:
    """Lock and fill `path` with our pid and create time; the open fd holds the lock."""
    while True:
        fd = open_private(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = (read_json(path) or {}).get("pid", "?")
            raise AlreadyRunning(f"a supervisor is already running (pid {pid})") from None
        try:  # the holder we raced with may have unlinked it: then lock the new file
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        me = psutil.Process()
        data = {**identity(me), "cmdline": me.cmdline()}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(data) + "\n").encode())
        return fd


def release_pid_file(path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.close(fd)


async def serve(owned: Owned, log: EventLog, *, stop_timeout: float = 10.0) -> int:
    """Adopt, serve the control socket (and the dashboard, when the topology asks for one)
    and monitor until a signal or `shutdown`.

    Nodes are started from the supervisor's own copy of the topology (herdctl.topology),
    which only `herdctl reload` changes (herdctl.reload)."""
    config = owned.config
    sock = socket_for(config)
    launcher = PsLauncher(write_copy(owned))
    manager = Manager(config, launcher, log=log.event, stop_timeout=stop_timeout)

    def save(new: Owned) -> None:
        launcher.config = write_copy(new)

    async def handle(raw: Mapping[str, object], progress: control.Progress) -> Answer:
        """The control channel's handler, which the dashboard's buttons call too."""
        answer = await reloader.handle(raw, progress)
        if raw.get("cmd") == "ping":
            answer["dashboard"] = dashboard.info()
        return answer

    dashboard = DashboardService(manager, handle, log=log.event)
    reloader = Reloader(
        manager,
        owned,
        save=save,
        log=log.event,
        retune=lambda new: dashboard.apply(new.dashboard),
    )
    manager.adopt_all()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await dashboard.apply(config.dashboard)  # before `ping` answers: `up` prints where it is
    server = await control.serve(sock, handle)
    monitor = loop.create_task(manager.run())
    ends = [loop.create_task(stop.wait()), loop.create_task(manager.finished.wait())]
    await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
    reason = "shutdown" if manager.finished.is_set() else "signal (nodes left running)"
    server.close()
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    await dashboard.stop()
    for task in (monitor, *ends):
        task.cancel()
    await asyncio.gather(monitor, *ends, return_exceptions=True)
    log.event(f"SUPERVISOR_EXIT pid={os.getpid()} reason={reason}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m herdctl.supervisor", description="Run the herd's supervisor daemon."
    )
    parser.add_argument(
        "-c", "--config", help="topology file (default: $HERD_CONFIG, else ./topology.yaml)"
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        help="seconds a node gets to exit after SIGTERM before SIGKILL (default: 10)",
    )
    args = parser.parse_args(argv)
    try:
        owned = Owned.read(args.config or default_config_path())
        config = owned.config
        socket_for(config)
    except (ConfigError, SupervisorError) as e:
        return _fail(str(e), EXIT_USAGE)
    pid_path = control.pid_path(config.run_dir)
    try:
        private_dir(config.run_dir)
        fd = acquire_pid_file(pid_path)
    except AlreadyRunning as e:
        return _fail(str(e), EXIT_RUNNING)
    except OSError as e:
        return _fail(f"cannot use run_dir {config.run_dir}: {e.strerror or e}", EXIT_USAGE)
    try:
        log = EventLog(config.log_dir / LOG_NAME, config.log_rotation)
    except OSError as e:
        release_pid_file(pid_path, fd)
        return _fail(f"cannot write to log_dir {config.log_dir}: {e.strerror or e}", EXIT_USAGE)
    log.event(f"SUPERVISOR_START pid={os.getpid()} config={config.path}")
    try:
        return asyncio.run(serve(owned, log, stop_timeout=args.stop_timeout))
    except ConfigError as e:  # its copy of the topology could not be made faithful
        log.event(f"SUPERVISOR_FAILED error={e}")
        return _fail(str(e), EXIT_USAGE)
    except OSError as e:  # the control socket (or the topology's copy) could not be written
        log.event(f"SUPERVISOR_FAILED error={e}")
        return _fail(f"cannot serve {control.socket_path(config.run_dir)}: {e}", EXIT_USAGE)
    finally:
        release_pid_file(pid_path, fd)
        log.close()


def _fail(message: str, code: int) -> int:
    print(f"herdctl supervisor: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
