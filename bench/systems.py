"""The systems `make bench` compares, started as real processes on loopback and always stopped.

- `start_herd`: our five-node herd, `python -m node NAME -c topology.yaml` per node, from a
  temporary folder with a generated topology on free ports (default logging, journal fsync
  `everysec`, offline places).
- `start_minimal`: bench/minimal_node.py, one process.
- `start_minimal_herd`: bench/minimal_herd.py, five processes on the same links.
- `start_node_herd`: bench/nodejs/herd.js, the same five nodes and links.

Every process gets its own session (process group); `Procs.stop` signals each group with
SIGTERM, waits a bounded time, then SIGKILLs what is left. Readiness is checked through the
protocol itself: an IAMAT at every node must become visible to a WHATSAT at every other one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def run_this_tree() -> None:
    """Make this tree's `node` and `herdctl` the ones imported, here and in every process
    started from here. `.venv` holds the herd as an editable install of the clone that made
    it, and a script's `sys.path[0]` is its own folder: a bench run from a worktree (an A/B
    against an older commit) would otherwise measure that clone's code, not its own."""
    if sys.path[:1] != [str(REPO)]:
        sys.path.insert(0, str(REPO))
    inherited = os.environ.get("PYTHONPATH", "")
    if inherited.split(os.pathsep)[0] != str(REPO):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), inherited) if p)


run_this_tree()
HOST = "127.0.0.1"
NAMES = ("Goloman", "Hands", "Holiday", "Welsh", "Wilkes")
LINKS = (
    ("Goloman", "Hands"),
    ("Goloman", "Holiday"),
    ("Goloman", "Wilkes"),
    ("Hands", "Wilkes"),
    ("Holiday", "Welsh"),
    ("Holiday", "Wilkes"),
)
STOP_GRACE = 5.0  # seconds a process gets after SIGTERM before SIGKILL
READY_TIMEOUT = 30.0
# 10,000 idle clients plus the active ones plus peer links all come from 127.0.0.1.
MAX_CONNECTIONS = 12_000

Address = tuple[str, int]


class BenchError(Exception):
    """A system could not be started or checked; the message says which and why."""


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the kernel has just handed out (and we released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Proc:
    """One process we started, in its own session."""

    name: str
    popen: subprocess.Popen[bytes]
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Procs:
    """Processes to stop together; stopping is idempotent and bounded."""

    procs: list[Proc] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        cwd: Path,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        log_dir.mkdir(parents=True, exist_ok=True)
        stderr_path = log_dir / f"{name}.stderr.log"
        with open(stderr_path, "wb") as err:
            popen = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
                env=None if env is None else dict(env),
            )
        proc = Proc(name, popen, stderr_path)
        self.procs.append(proc)
        return proc

    def cpu_seconds(self) -> float:
        """User + system CPU time of every live process here, threads included."""
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(proc.pid).cpu_times()
                total += t.user + t.system
        return total

    def stop(self) -> None:
        live = [p for p in self.procs if p.popen.poll() is None]
        for p in live:
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for p in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            _signal_group(p.pid, signal.SIGKILL)  # whatever it left behind in its group
            if p.popen.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.popen.wait(STOP_GRACE)
        self.procs.clear()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass
class System:
    """A running system under test: where to send load, and what to stop."""

    label: str
    key: str  # ours | minimal | nodejs
    addresses: dict[str, Address]
    procs: Procs
    folder: Path
    metrics_ports: dict[str, int] = field(default_factory=dict)  # node -> its /metrics port

    def address(self, name: str) -> Address:
        """The named node's address; a one-process system answers for every name."""
        return self.addresses.get(name) or next(iter(self.addresses.values()))

    def stop(self) -> None:
        self.procs.stop()


def topology(ports: Sequence[int], folder: Path, *, names: Sequence[str] = NAMES) -> dict[str, Any]:
    """The topology both herds read (ours as YAML, which JSON is a subset of)."""
    return {
        "nodes": {
            name: {"host": HOST, "port": port} for name, port in zip(names, ports, strict=True)
        },
        "links": [list(link) for link in LINKS if link[0] in names and link[1] in names],
        "places": {"provider": "offline"},
        "limits": {"max_connections": MAX_CONNECTIONS},
        "journal": {"fsync": "everysec"},
        "log_dir": str(folder / "logs"),
        "data_dir": str(folder / "data"),
        "run_dir": str(folder / "run"),
    }


FLOOD_COUNTERS = ("sent", "spared", "received", "applied")  # herd_records_<kind>_total
FloodCounters = dict[str, dict[str, float]]  # node -> kind -> its count, over all neighbours


def flood_counters(metrics_ports: Mapping[str, int]) -> FloodCounters:
    """Each node's flood counters, summed over its neighbours, from its /metrics."""
    found: FloodCounters = {}
    for name, port in metrics_ports.items():
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        counts = dict.fromkeys(FLOOD_COUNTERS, 0.0)
        for line in text.splitlines():
            metric = line.split("{", 1)[0].split(" ", 1)[0]
            kind = metric.removeprefix("herd_records_").removesuffix("_total")
            if kind in counts and metric == f"herd_records_{kind}_total":
                counts[kind] += float(line.rsplit(" ", 1)[1])
        found[name] = counts
    return found


def settled_flood_counters(
    metrics_ports: Mapping[str, int], before: FloodCounters, applied: float, timeout: float
) -> FloodCounters:
    """The counters once `applied` more records have been applied across the nodes (every
    update has reached every node), or as they stand after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        after = flood_counters(metrics_ports)
        done = sum(after[n]["applied"] - before[n]["applied"] for n in after)
        if done >= applied or time.monotonic() > deadline:
            return after
        time.sleep(0.05)


def write_topology(
    folder: Path, names: Sequence[str] = NAMES, *, metrics: bool = False
) -> tuple[Path, dict[str, Any]]:
    """The topology file in `folder`, on free ports; with `metrics`, each node serves
    /metrics on a free port too (`metrics_port`)."""
    folder.mkdir(parents=True, exist_ok=True)
    ports = free_ports(2 * len(names) if metrics else len(names))
    topo = topology(ports[: len(names)], folder, names=names)
    if metrics:
        for name, port in zip(names, ports[len(names) :], strict=True):
            topo["nodes"][name]["metrics_port"] = port
    path = folder / "topology.yaml"
    path.write_text(json.dumps(topo, indent=2) + "\n")
    return path, topo


def node_argv(name: str, config: Path) -> list[str]:
    return [sys.executable, "-m", "node", name, "-c", str(config)]


def tree_env(tree: Path) -> dict[str, str]:
    """This process's environment, but with `tree`'s `node` and `herdctl` imported first."""
    env = dict(os.environ)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *rest])
    return env


def start_herd(
    folder: Path, tree: Path = REPO, *, metrics: bool = False, native_dir: Path | None = None
) -> System:
    """Our five nodes, each `python -m node NAME -c topology.yaml`, run from `tree` (another
    checkout for an A/B, see bench/ab.py), with /metrics when asked, and with the compiled
    core built in `native_dir` (`HERD_NATIVE_DIR`) when one is named; waits until flooding
    works."""
    config, topo = write_topology(folder, metrics=metrics)
    procs = Procs()
    addresses = {n: (HOST, int(topo["nodes"][n]["port"])) for n in NAMES}
    system = System("herd (Python)", "ours", addresses, procs, folder)
    system.metrics_ports = {
        n: int(spec["metrics_port"]) for n, spec in topo["nodes"].items() if "metrics_port" in spec
    }
    env = None if tree == REPO else tree_env(tree)
    if native_dir is not None:
        env = {**(env or os.environ), "HERD_NATIVE_DIR": str(native_dir)}
    try:
        for name in NAMES:
            procs.spawn(name, node_argv(name, config), tree, folder / "logs", env)
        wait_ready(system)
    except BaseException:
        procs.stop()
        raise
    return system


def event_loop_of(system: System) -> str:
    """`uvloop` when the system's first process has uvloop's extension loaded, else `asyncio`."""
    with contextlib.suppress(psutil.Error, IndexError):
        maps = psutil.Process(system.procs.procs[0].pid).memory_maps(grouped=True)
        if any("uvloop" in m.path for m in maps):
            return "uvloop"
    return "asyncio"


def compiled_core_of(system: System) -> str:
    """`compiled` when the system's first process runs the compiled core (`node.native`),
    else `source`."""
    with contextlib.suppress(psutil.Error, IndexError):
        maps = psutil.Process(system.procs.procs[0].pid).memory_maps(grouped=True)
        if any("core__mypyc" in m.path for m in maps):
            return "compiled"
    return "source"


def start_minimal(folder: Path, *, loop: str = "auto") -> System:
    """The minimal node, one process, on `loop` (auto: uvloop when installed)."""
    folder.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    procs = Procs()
    argv = [sys.executable, str(BENCH_DIR / "minimal_node.py"), str(port), "--loop", loop]
    system = System("minimal node", "minimal", {"Minimal": (HOST, port)}, procs, folder)
    try:
        procs.spawn("minimal", argv, REPO, folder)
        wait_listening(system, READY_TIMEOUT)
    except BaseException:
        procs.stop()
        raise
    return system


def _start_json_herd(
    folder: Path, label: str, key: str, argv: Callable[[str, Path], list[str]]
) -> System:
    """Five processes on the herd's names and links, each started with `argv(name, config)`
    where config is the topology as JSON; waits until flooding works."""
    folder.mkdir(parents=True, exist_ok=True)
    topo = topology(free_ports(len(NAMES)), folder)
    config = folder / "topology.json"
    config.write_text(json.dumps(topo, indent=2) + "\n")
    procs = Procs()
    addresses = {n: (HOST, int(topo["nodes"][n]["port"])) for n in NAMES}
    system = System(label, key, addresses, procs, folder)
    try:
        for name in NAMES:
            procs.spawn(name, argv(name, config), REPO, folder / "logs")
        wait_ready(system)
    except BaseException:
        procs.stop()
        raise
    return system


def start_minimal_herd(folder: Path, *, loop: str = "auto") -> System:
    """bench/minimal_herd.py on the same five names and links, on `loop`: the propagation
    figures' floor for a Python herd."""
    script = str(BENCH_DIR / "minimal_herd.py")
    return _start_json_herd(
        folder,
        "minimal herd",
        "minimal",
        lambda name, config: [sys.executable, script, name, str(config), "--loop", loop],
    )


def node_binary() -> str | None:
    return shutil.which("node")


def start_node_herd(folder: Path, *, log: bool = True) -> System:
    """The Node.js herd on the same topology (as JSON: Node has no YAML parser built in)."""
    binary = node_binary()
    if binary is None:
        raise BenchError("Node.js (`node`) is not on PATH")
    script = str(BENCH_DIR / "nodejs" / "herd.js")
    flags = [] if log else ["--no-log"]
    return _start_json_herd(
        folder,
        "herd (Node.js)",
        "nodejs",
        lambda name, config: [binary, script, name, str(config), *flags],
    )


# -- readiness ---------------------------------------------------------------------------


def exchange(address: Address, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, half-close, read until the node closes: its whole answer."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _check_alive(system: System) -> None:
    for p in system.procs.procs:
        if p.popen.poll() is not None:
            raise BenchError(
                f"{system.label}: {p.name} exited with status {p.popen.returncode}\n{p.tail()}"
            )


def wait_listening(system: System, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for name, address in system.addresses.items():
        while True:
            _check_alive(system)
            try:
                socket.create_connection(address, timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"{system.label}: {name} not listening on {address}") from None
                time.sleep(0.05)


def wait_ready(system: System, timeout: float = READY_TIMEOUT) -> None:
    """Every node listens, and an IAMAT at each node reaches every other node."""
    deadline = time.monotonic() + timeout
    wait_listening(system, timeout)
    stamp = time.time_ns()
    for i, (name, address) in enumerate(system.addresses.items()):
        client = b"ready-probe-%d-%d" % (stamp, i)
        reply = exchange(address, b"IAMAT %s +0.0+0.0 %d.0\n" % (client, int(time.time())))
        if not reply.startswith(b"AT "):
            raise BenchError(f"{system.label}: {name} answered {reply[:80]!r} to IAMAT")
        for other, other_address in system.addresses.items():
            if other == name:
                continue
            while not exchange(other_address, b"WHATSAT %s 1 1\n" % client).startswith(b"AT "):
                _check_alive(system)
                if time.monotonic() > deadline:
                    raise BenchError(f"{system.label}: an IAMAT at {name} never reached {other}")
                time.sleep(0.05)


@contextlib.contextmanager
def running(system: System) -> Iterator[System]:
    try:
        yield system
    finally:
        system.stop()


def log_text(system: System, name: str) -> str:
    """The node's log (ours: log_dir/NAME.log), for lines such as JOURNAL_REPLAY."""
    path = system.folder / "logs" / f"{name}.log"
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")
    return ""
