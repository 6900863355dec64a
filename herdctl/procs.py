"""Node processes on this machine, through psutil and the OS: spawn, adopt, signal, sample.

Everything the supervisor needs from the operating system is behind `Launcher` and
`NodeProc`, so its loop can be driven by fakes in tests.

Each node runs as `python -m node NAME -c CONFIG` in its own session (so its own process
group), stdin from /dev/null, stdout and stderr appended to `log_dir/NAME.stderr.log`.
`run_dir/NAME.pid` (JSON: pid, create_time, cmdline) lets a later supervisor adopt it. It is
also the node's record (`Record`: restarts, state, message): it stays while the node is meant
to run, even once its process is gone, and is removed only when the node is stopped on
purpose, so a later supervisor restarts a node that died while none was watching.
Every file and folder made here is private to the user (node.private: 0600 and 0700).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import psutil

import herdctl
import node
from herdctl.logs import last_lines
from node.config import HerdConfig
from node.private import open_private, private_dir, replace_json
from node.rotation import rotate_if_full
from node.status import NodeStatus, status_path

STDERR_SUFFIX = ".stderr.log"
_TAIL_BYTES = 4096  # of a node's stderr log searched for its last line
# A process is known again by when it started. As seconds since boot (clock ticks from
# /proc/PID/stat) that never changes; as wall-clock time (psutil's create_time) it moves with
# the boot time the kernel derives from the clock, which a clock adjustment can step by a
# second between two readings: a supervisor then took its own live nodes for dead ones and
# spawned second copies that found their ports taken. Pid files older than `since_boot`
# are compared by wall clock, a second either way (the command line is checked as well).
_SINCE_BOOT_SLACK = 0.005  # seconds: less than one clock tick
_WALL_CLOCK_SLACK = 1.05


@dataclass(frozen=True, slots=True)
class Record:
    """What a supervisor noted about a node it means to run, for the next one."""

    pid: int | None  # the process last spawned or adopted, if any
    restarts: int
    state: str | None  # policy.State when noted; None in a file from an older herdctl
    message: str | None  # why it last stopped or went FATAL


class NodeProc(Protocol):
    """One live (or just dead) node process."""

    @property
    def pid(self) -> int: ...

    @property
    def started_at(self) -> float:
        """Wall-clock start time (seconds since the epoch)."""
        ...

    def poll(self) -> tuple[bool, int | None]:
        """(exited, exit status if known); reaps our own children."""
        ...

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the node's process group, unless it has already exited."""
        ...

    def sample(self) -> tuple[float, int] | None:
        """(cpu % since the last sample, resident bytes), or None if unreadable."""
        ...

    def listening(self, port: int) -> bool | None:
        """Whether the process has a listening socket on `port`; None if psutil cannot tell."""
        ...

    def last_error(self) -> str | None:
        """The last line the node wrote to stderr since it was spawned or adopted."""
        ...


class Launcher(Protocol):
    """Creates and finds node processes; reads what nodes publish under `run_dir`."""

    def spawn(self, name: str) -> NodeProc: ...

    def adopt(self, name: str) -> NodeProc | None: ...

    def note(self, name: str, restarts: int, state: str, message: str | None) -> None:
        """Remember beside its pid that the node is meant to run, and how it is doing."""
        ...

    def noted(self, name: str) -> Record | None:
        """The node's record, if a supervisor meant it to run; None if it was stopped on
        purpose (or never started)."""
        ...

    def forget(self, name: str) -> None:
        """The node was stopped on purpose: remove its pid file and record."""
        ...

    def read_status(self, name: str) -> NodeStatus | None:
        """The node's status file, if there is one holding a JSON object with its pid."""
        ...

    def is_local(self, host: str) -> bool: ...

    async def probe(self, host: str, port: int) -> bool: ...


def node_cmdline(name: str, config_path: Path) -> list[str]:
    return [sys.executable, "-m", "node", name, "-c", str(config_path)]


def runs_node(cmdline: list[str], name: str) -> bool:
    """Whether a command line is `... -m node NAME ...`."""
    return any(cmdline[i : i + 3] == ["-m", "node", name] for i in range(len(cmdline)))


def spawn_detached(cmdline: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start `cmdline` with no shell in its own session, stdout and stderr appended to `log`
    (created 0600, or tightened to 0600 if it was wider)."""
    with os.fdopen(open_private(log, os.O_WRONLY | os.O_APPEND), "ab") as out:
        return subprocess.Popen(
            cmdline,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
            env=child_env(),
        )


def child_env() -> dict[str, str]:
    """This environment, with our own source tree first on PYTHONPATH so children run it."""
    roots = {str(Path(pkg.__file__ or "").resolve().parent.parent) for pkg in (herdctl, node)}
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*sorted(roots), *([old] if old else [])])}


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def stderr_log(log_dir: Path, name: str) -> Path:
    return log_dir / f"{name}{STDERR_SUFFIX}"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None if it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def since_boot(pid: int) -> float | None:
    """When process `pid` started, in seconds since boot (field 22 of /proc/PID/stat, in
    clock ticks: the clock never moves it); None where there is no such file."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def identity(proc: psutil.Process) -> dict[str, Any]:
    """What a pid file says of a process so that a later reader knows it again."""
    started = since_boot(proc.pid)
    return {
        "pid": proc.pid,
        "create_time": proc.create_time(),
        **({"since_boot": started} if started is not None else {}),
    }


def live_process(info: Mapping[str, Any]) -> psutil.Process | None:
    """The process a pid file names (`identity`), if it is alive, not a zombie, and the one
    that started then (not a later process given the same pid)."""
    pid, create_time, started = info.get("pid"), info.get("create_time"), info.get("since_boot")
    if not isinstance(pid, int) or not isinstance(create_time, int | float) or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if isinstance(started, int | float) and (now_started := since_boot(pid)) is not None:
            if abs(now_started - started) > _SINCE_BOOT_SLACK:
                return None
        elif abs(proc.create_time() - create_time) > _WALL_CLOCK_SLACK:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return proc


def kill_group(pid: int, sig: int) -> None:
    """Signal the process group led by `pid`; a group that is gone or not ours is ignored."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class PsProc:
    """A node process with a long-lived psutil handle (so cpu_percent measures something)."""

    def __init__(
        self, handle: psutil.Process, popen: subprocess.Popen[bytes] | None, stderr: Path
    ) -> None:
        self._handle = handle
        self._popen = popen
        self._started_at = handle.create_time()
        self._stderr = stderr
        self._stderr_from = _size(stderr)
        self._exited = False
        self._code: int | None = None
        with contextlib.suppress(psutil.Error):
            handle.cpu_percent(None)  # the first reading is always 0.0; this primes it

    @property
    def handle(self) -> psutil.Process:
        return self._handle

    @property
    def pid(self) -> int:
        return int(self._handle.pid)

    @property
    def started_at(self) -> float:
        return self._started_at

    def poll(self) -> tuple[bool, int | None]:
        if self._exited:
            return True, self._code
        if self._popen is not None:
            code = self._popen.poll()  # reaps: no zombie is left behind
            self._exited = code is not None
            self._code = code
        else:  # adopted: not our child, so only psutil can tell, and never the status
            try:
                alive = self._handle.is_running()
                self._exited = not alive or self._handle.status() == psutil.STATUS_ZOMBIE
            except psutil.Error:
                self._exited = True
        return self._exited, self._code

    def signal_group(self, sig: int) -> None:
        # Once reaped, the pid (and group id) may belong to someone else.
        if not self.poll()[0]:
            kill_group(self.pid, sig)

    def sample(self) -> tuple[float, int] | None:
        try:
            with self._handle.oneshot():
                return self._handle.cpu_percent(None), int(self._handle.memory_info().rss)
        except psutil.Error:
            return None

    def listening(self, port: int) -> bool | None:
        try:
            conns = self._handle.net_connections(kind="inet")
        except psutil.AccessDenied:
            return None
        except psutil.Error:
            return False
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns
        )

    def last_error(self) -> str | None:
        start = self._stderr_from if self._stderr_from <= _size(self._stderr) else 0  # rotated
        try:  # every line of the window: as many as it has bytes, at most
            tail = last_lines(self._stderr, _TAIL_BYTES, start=start, limit=_TAIL_BYTES)
        except OSError:
            return None
        lines = [part.strip() for line in tail for part in line.splitlines()]
        lines = [line for line in lines if line]
        return lines[-1] if lines else None


class PsLauncher:
    """The real `Launcher`: subprocess + psutil, pid files under `run_dir`."""

    def __init__(self, config: HerdConfig, *, probe_timeout: float = 0.5) -> None:
        self.config = config
        self.probe_timeout = probe_timeout
        self._local = local_addresses()

    def spawn(self, name: str) -> NodeProc:
        config = self.config
        private_dir(config.log_dir)
        private_dir(config.run_dir)
        log = stderr_log(config.log_dir, name)
        with contextlib.suppress(OSError):  # a full disk: the log just grows
            rotate_if_full(log, config.log_rotation.max_bytes, config.log_rotation.backups)
        cmdline = node_cmdline(name, config.path)
        popen = spawn_detached(cmdline, log, config.path.parent)
        try:  # a child that died at once is a zombie until polled, so this still works
            proc = PsProc(psutil.Process(popen.pid), popen, log)
        except psutil.Error as e:
            popen.poll()
            raise OSError(f"cannot watch node {name} (pid {popen.pid}): {e}") from None
        info = {**identity(proc.handle), "cmdline": cmdline}
        replace_json(pid_file(config.run_dir, name), info)
        return proc

    def adopt(self, name: str) -> NodeProc | None:
        """The node's process named in its pid file, if it is still alive and still the node;
        the file stays either way (see `noted`)."""
        info = read_json(pid_file(self.config.run_dir, name))
        if info is None:
            return None
        handle = live_process(info)
        try:
            ours = handle is not None and runs_node(handle.cmdline(), name)
        except psutil.Error:
            ours = False
        if handle is None or not ours:
            return None
        return PsProc(handle, None, stderr_log(self.config.log_dir, name))

    def forget(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            pid_file(self.config.run_dir, name).unlink()

    def note(self, name: str, restarts: int, state: str, message: str | None) -> None:
        private_dir(self.config.run_dir)
        path = pid_file(self.config.run_dir, name)
        info = read_json(path) or {}
        replace_json(path, {**info, "restarts": restarts, "state": state, "message": message})

    def noted(self, name: str) -> Record | None:
        path = pid_file(self.config.run_dir, name)
        info = read_json(path)
        if info is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # unreadable: nothing can be learnt from it
            return None
        pid, restarts = info.get("pid"), info.get("restarts")
        state, message = info.get("state"), info.get("message")
        return Record(
            pid=pid if isinstance(pid, int) else None,
            restarts=restarts if isinstance(restarts, int) and restarts >= 0 else 0,
            state=state if isinstance(state, str) else None,
            message=message if isinstance(message, str) else None,
        )

    def read_status(self, name: str) -> NodeStatus | None:
        status = read_json(status_path(self.config.run_dir, name))
        if status is None or not isinstance(status.get("pid"), int):
            return None
        return cast(NodeStatus, status)  # the other fields are checked where they are read

    def is_local(self, host: str) -> bool:
        return is_local(host, self._local)

    async def probe(self, host: str, port: int) -> bool:
        from herdctl.probe import port_answers  # asyncio: the supervisor's, not the CLI's

        return await port_answers(host, port, self.probe_timeout)


def local_addresses() -> frozenset[str]:
    """Every address of this machine's interfaces, plus the names that always mean here."""
    found = {"localhost", "0.0.0.0", "::", "::1", socket.gethostname()}
    with contextlib.suppress(OSError):
        for addrs in psutil.net_if_addrs().values():
            for addr in addrs:
                if addr.family in (socket.AF_INET, socket.AF_INET6):
                    found.add(addr.address.split("%", 1)[0])
    return frozenset(found)


def is_local(host: str, addresses: frozenset[str]) -> bool:
    """Whether `host` (a name or an address) is this machine."""
    if host in addresses:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:  # a host name: local if any address it resolves to is
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return False
        return any(_is_local_ip(str(info[4][0]), addresses) for info in infos)
    return _is_local_ip(str(ip), addresses)


def _is_local_ip(address: str, addresses: frozenset[str]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_loopback or ip.is_unspecified or str(ip) in addresses


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
