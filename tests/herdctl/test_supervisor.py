"""The supervisor: its loop on fake processes and a fake clock, then the real daemon.

The fake half replays histories in milliseconds (honcho-style). The real half runs
`python -m herdctl.supervisor` against a three-node topology on free ports and checks what
an operator relies on: start, status, crash recovery, stop, restart, rolling restart,
adoption after the supervisor is killed, shutdown leaving no process, and FATAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import psutil
import pytest

from herdctl import control
from herdctl.daemon import SupervisorError, ensure_supervisor, running_supervisor, socket_for
from herdctl.manager import Manager
from herdctl.messages import Answer, NodeRow, Request, RequestError
from herdctl.policy import EXIT_CONFIG, PolicyConfig, State
from herdctl.procs import Record, is_local, runs_node
from herdctl.slot import stamped
from herdctl.supervisor import AlreadyRunning, acquire_pid_file, release_pid_file
from herdctl.supervisor import main as supervisor_main
from node.config import HerdConfig, load_config, parse_config
from node.status import LinkStatus, NodeStatus
from tests.support import exchange_sync, free_ports, port_open, wait_until, write_topology

# -- fakes ------------------------------------------------------------------------------

FAKE_TOPOLOGY = """
nodes:
  A: {port: 12000}
  B: {port: 12001}
  C: {port: 12002}
  R: {host: 10.99.0.1, port: 12003}
links: [[A, B], [B, C], [C, R]]
"""


class FakeClock:
    """Monotonic and wall time the test controls; `sleep` advances it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class FakeProc:
    """A node process that dies when told to; SIGTERM can be ignored, SIGKILL cannot."""

    def __init__(self, pid: int, started_at: float, *, ignore_term: bool = False) -> None:
        self.pid = pid
        self.started_at = started_at
        self.ignore_term = ignore_term
        self.alive = True
        self.code: int | None = None
        self.signals: list[int] = []
        self.stderr: str | None = "node: listening"

    def die(self, code: int | None, stderr: str | None = None) -> None:
        self.alive, self.code = False, code
        self.stderr = stderr or self.stderr

    def poll(self) -> tuple[bool, int | None]:
        return not self.alive, self.code

    def signal_group(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGKILL:
            self.die(-9)
        elif sig == signal.SIGTERM and not self.ignore_term:
            self.die(0)

    def sample(self) -> tuple[float, int] | None:
        return (12.5, 40_000_000) if self.alive else None

    def listening(self, port: int) -> bool | None:
        return self.alive

    def last_error(self) -> str | None:
        return self.stderr


class FakeLauncher:
    """Hands out FakeProcs and fakes each node's status file from who is alive."""

    def __init__(self, config: HerdConfig, clock: FakeClock) -> None:
        self.config = config
        self.clock = clock
        self.next_pid = 1000
        self.current: dict[str, FakeProc] = {}
        self.spawned: list[str] = []
        self.adoptable: dict[str, FakeProc] = {}
        self.forgotten: list[str] = []
        self.synced = True
        self.ignore_term: set[str] = set()
        self.spawn_error: OSError | None = None
        self.open_remote: set[tuple[str, int]] = set()
        self.records: dict[str, Record] = {}  # what the supervisor noted, by node
        self.counters: dict[str, object] = {}  # a status file's `counters`, by node

    def spawn(self, name: str) -> FakeProc:
        if self.spawn_error is not None:
            raise self.spawn_error
        self.next_pid += 1
        proc = FakeProc(self.next_pid, self.clock.wall(), ignore_term=name in self.ignore_term)
        self.current[name] = proc
        self.spawned.append(name)
        return proc

    def adopt(self, name: str) -> FakeProc | None:
        proc = self.adoptable.pop(name, None)
        if proc is not None:
            self.current[name] = proc
        return proc

    def forget(self, name: str) -> None:
        self.forgotten.append(name)
        self.records.pop(name, None)

    def note(self, name: str, restarts: int, state: str, message: str | None) -> None:
        proc = self.current.get(name)
        self.records[name] = Record(proc.pid if proc else None, restarts, state, message)

    def noted(self, name: str) -> Record | None:
        return self.records.get(name)

    def alive(self, name: str) -> bool:
        proc = self.current.get(name)
        return proc is not None and proc.alive

    def read_status(self, name: str) -> NodeStatus | None:
        if not self.alive(name):
            return None
        links: dict[str, LinkStatus] = {
            nb: {
                "out": self.alive(nb),
                "out_since": 0.0,
                "in": self.alive(nb),
                "synced": self.alive(nb) and self.synced,
                "buffered": 0,
            }
            for nb in self.config.neighbours(name)
        }
        proc = self.current[name]
        spec = self.config.node(name)
        status: NodeStatus = {
            "name": name,
            "pid": proc.pid,
            "host": spec.host,
            "port": spec.port,
            "state": "running",
            "started_at": proc.started_at,
            "clients": 3,
            "connections": 2,
            "links": links,
            "journal_error": None,
            "updated_at": self.clock.wall(),
        }
        if name in self.counters:
            cast(dict[str, object], status)["counters"] = self.counters[name]
        return status

    def is_local(self, host: str) -> bool:
        return host == "127.0.0.1"

    async def probe(self, host: str, port: int) -> bool:
        return (host, port) in self.open_remote


async def no_progress(text: str) -> None:
    pass


@pytest.fixture
def world() -> tuple[Manager, FakeLauncher, FakeClock, list[str]]:
    config = parse_config(FAKE_TOPOLOGY, Path("/tmp/hdfake/topology.yaml"))
    clock = FakeClock()
    launcher = FakeLauncher(config, clock)
    log: list[str] = []
    return fake_manager(config, launcher, clock, log), launcher, clock, log


def fake_manager(
    config: HerdConfig, launcher: FakeLauncher, clock: FakeClock, log: list[str]
) -> Manager:
    """A supervisor's manager on the fakes, with short stop and catch-up limits."""
    return Manager(
        config,
        launcher,
        log=log.append,
        clock=clock,
        wall=clock.wall,
        sleep=clock.sleep,
        policy=PolicyConfig(startretries=2),
        stop_timeout=10.0,
        catchup_timeout=5.0,
    )


World = tuple[Manager, FakeLauncher, FakeClock, list[str]]


async def status(manager: Manager) -> dict[str, NodeRow]:
    return {row["name"]: row for row in await manager.status()}


async def test_start_all_spawns_local_nodes_only(world: World) -> None:
    manager, launcher, clock, _ = world
    assert await manager.handle({"cmd": "start", "names": ["all"]}, no_progress) == {"ok": True}
    assert launcher.spawned == ["A", "B", "C"]
    nodes = await status(manager)
    assert [n["state"] for n in nodes.values()] == ["STARTING"] * 3 + ["REMOTE_DOWN"]
    clock.now = 1.0
    manager.step()
    a = (await status(manager))["A"]
    assert a["state"] == "RUNNING"
    assert a["pid"] == launcher.current["A"].pid
    assert (a["uptime"], a["restarts"], a["cpu_percent"], a["memory_rss"]) == (1.0, 0, 12.5, 4e7)
    assert (a["links_up"], a["links_expected"], a["connections"], a["clients"]) == (1, 1, 2, 3)
    assert a["ready"] and a["port_open"] and a["local"]
    assert (a["exit_code"], a["message"]) == (None, None)


async def test_rows_carry_each_link_and_the_counters_a_node_reports(world: World) -> None:
    manager, launcher, _, _ = world
    await manager.handle({"cmd": "start", "names": ["A", "B"]}, no_progress)
    launcher.counters["A"] = {"requests": 7, "records_in": 3, "records_out": 2, "odd": "x"}
    launcher.counters["B"] = "garbled"
    nodes = await status(manager)
    a, b, c = nodes["A"], nodes["B"], nodes["C"]
    assert a["links"] == {"B": {"out": True, "in": True, "synced": True}}
    assert b["links"] == {
        "A": {"out": True, "in": True, "synced": True},
        "C": {"out": False, "in": False, "synced": False},
    }
    assert a["counters"] == {"requests": 7, "records_in": 3, "records_out": 2}
    assert b["counters"] is None  # not a mapping: as if absent (a node of another version)
    assert (c["links"], c["counters"]) == (None, None)  # not running: no word from it


async def test_remote_node_shows_whether_its_port_answers(world: World) -> None:
    manager, launcher, _, _ = world
    r = (await status(manager))["R"]
    assert (r["state"], r["local"], r["pid"], r["port_open"], r["ready"]) == (
        "REMOTE_DOWN",
        False,
        None,
        False,
        False,
    )
    launcher.open_remote.add(("10.99.0.1", 12003))
    r = (await status(manager))["R"]
    assert r["state"] == "REMOTE" and r["port_open"] and r["ready"]
    launcher.open_remote.clear()  # its machine's herdctl stopped it, or the network failed
    assert (await status(manager))["R"]["state"] == "REMOTE_DOWN"
    with pytest.raises(RequestError, match="not this machine"):
        await manager.handle({"cmd": "start", "names": ["R"]}, no_progress)


async def test_unknown_names_and_commands_are_refused(world: World) -> None:
    manager, launcher, _, _ = world
    with pytest.raises(RequestError, match=r"unknown node 'X' \(known: A, B, C, R\)"):
        await manager.handle({"cmd": "start", "names": ["A", "X"]}, no_progress)
    with pytest.raises(RequestError, match="non-empty list"):
        await manager.handle({"cmd": "stop", "names": []}, no_progress)
    with pytest.raises(RequestError, match="unknown command 'dance'"):
        await manager.handle({"cmd": "dance"}, no_progress)
    assert launcher.spawned == []
    ping = await manager.handle({"cmd": "ping"}, no_progress)
    assert ping["pid"] == os.getpid()


async def test_a_crashed_node_is_respawned_and_counted(world: World) -> None:
    manager, launcher, clock, log = world
    manager.start(["A", "B"])
    clock.now = 2.0
    manager.step()
    first = launcher.current["A"]
    first.die(-9)
    manager.step()
    a = (await status(manager))["A"]
    assert (a["state"], a["pid"], a["exit_code"], a["message"]) == (
        "EXITED",
        None,
        -9,
        stamped(clock.wall(), "killed by SIGKILL"),
    )
    assert not a["ready"]
    assert (await status(manager))["B"]["ready"]  # A is down: its link is not expected
    clock.now = 2.49
    manager.step()
    assert launcher.spawned == ["A", "B"]
    clock.now = 2.5
    manager.step()
    a = (await status(manager))["A"]
    assert (a["state"], a["restarts"]) == ("STARTING", 1)
    assert a["pid"] != first.pid
    assert launcher.forgotten == []  # not stopped on purpose: its record stays
    assert launcher.records["A"] == Record(a["pid"], 1, "STARTING", a["message"])
    assert any(line.startswith("EXITED node=A") and "code=-9" in line for line in log)


async def test_a_message_is_stamped_and_cleared_once_the_node_is_ready(world: World) -> None:
    manager, launcher, clock, _ = world
    manager.start(["A"])
    clock.now = 2.0
    manager.step()
    launcher.current["A"].die(-9)
    manager.step()
    killed = stamped(clock.wall(), "killed by SIGKILL")
    assert killed[2] == killed[5] == ":" and killed[8:] == " killed by SIGKILL"
    clock.now = 2.5
    manager.step()  # respawned: STARTING, not ready yet, so the reason still shows
    assert (await status(manager))["A"]["message"] == killed
    clock.now = 3.5
    a = (await status(manager))["A"]
    assert (a["state"], a["ready"], a["message"], a["exit_code"]) == ("RUNNING", True, None, -9)
    assert manager.slots["A"].message is None  # gone for good, not just hidden


async def test_a_node_that_cannot_start_goes_fatal_with_its_error(world: World) -> None:
    manager, launcher, clock, _ = world
    manager.start(["C"])
    for _ in range(3):
        launcher.current["C"].die(1, "node C: ImportError: no module named 'aiohttp'")
        manager.step()
        clock.now += 10
        manager.step()
    c = (await status(manager))["C"]
    assert c["state"] == "FATAL"
    assert c["message"] == stamped(
        clock.wall() - 10, "exited with code 1: ImportError: no module named 'aiohttp'"
    )
    assert launcher.spawned == ["C"] * 3
    clock.now += 100
    manager.step()
    assert launcher.spawned == ["C"] * 3
    manager.start(["C"])
    assert (await status(manager))["C"]["state"] == "STARTING"


async def test_a_node_that_cannot_start_as_configured_is_fatal_at_once(world: World) -> None:
    manager, launcher, clock, log = world
    manager.start(["C"])
    clock.now = 1.5  # a slow failing start on a loaded machine: it counts as RUNNING
    manager.step()
    held = "port 12002 on 127.0.0.1 is already in use (held by pid 4242: python3)"
    launcher.current["C"].die(EXIT_CONFIG, f"node C: {held}")
    manager.step()
    c = (await status(manager))["C"]
    assert (c["state"], c["exit_code"], c["restarts"]) == ("FATAL", 78, 0)
    assert c["message"] == stamped(clock.wall(), f"cannot start: {held}")
    clock.now += 100
    manager.step()
    assert launcher.spawned == ["C"]
    assert "STATE node=C RUNNING -> FATAL" in log


async def test_spawn_failure_backs_off(world: World) -> None:
    manager, launcher, clock, _ = world
    launcher.spawn_error = OSError("no python here")
    manager.start(["A"])
    a = (await status(manager))["A"]
    assert (a["state"], a["message"]) == (
        "BACKOFF",
        stamped(clock.wall(), "cannot spawn: no python here"),
    )


async def test_stop_terminates_the_group_and_it_stays_stopped(world: World) -> None:
    manager, launcher, clock, _ = world
    manager.start(["A", "B"])
    proc = launcher.current["B"]
    await manager.handle({"cmd": "stop", "names": ["B"]}, no_progress)
    assert proc.signals == [signal.SIGTERM]
    clock.now = 1000.0
    manager.step()
    nodes = await status(manager)
    assert (nodes["B"]["state"], nodes["B"]["pid"]) == ("STOPPED", None)
    assert launcher.spawned == ["A", "B"]
    assert nodes["A"]["ready"]  # its only neighbour is stopped: nothing to link to


async def test_stop_escalates_to_sigkill_after_the_bounded_wait(world: World) -> None:
    manager, launcher, clock, log = world
    launcher.ignore_term.add("A")
    manager.start(["A"])
    proc = launcher.current["A"]
    await manager.stop(["A"])
    assert proc.signals == [signal.SIGTERM, signal.SIGKILL]
    assert 10.0 <= clock.now < 10.5
    assert manager.slots["A"].policy.state is State.STOPPED
    assert any(line.startswith("KILL node=A") for line in log)


async def test_restart_changes_only_that_pid(world: World) -> None:
    manager, launcher, _, _ = world
    manager.start(["A", "B", "C"])
    before = {n: p.pid for n, p in launcher.current.items()}
    await manager.handle({"cmd": "restart", "names": ["B"]}, no_progress)
    after = {n: p.pid for n, p in launcher.current.items()}
    assert after["A"] == before["A"] and after["C"] == before["C"]
    assert after["B"] != before["B"]
    assert manager.slots["B"].policy.restarts == 0


async def test_rolling_restart_goes_one_by_one_and_reports_progress(world: World) -> None:
    manager, launcher, _, _ = world
    manager.start(["A", "B", "C"])
    lines: list[str] = []

    async def progress(text: str) -> None:
        lines.append(text)

    before = {n: p.pid for n, p in launcher.current.items()}
    await manager.handle({"cmd": "restart", "names": ["all"], "rolling": True}, progress)
    assert all(launcher.current[n].pid != before[n] for n in before)
    assert launcher.spawned == ["A", "B", "C", "A", "B", "C"]
    assert [line.split(":")[0] for line in lines] == ["A"] * 3 + ["B"] * 3 + ["C"] * 3
    assert lines[2].startswith("A: caught up")


async def test_rolling_restart_fails_naming_a_node_that_does_not_catch_up(world: World) -> None:
    manager, launcher, clock, _ = world
    manager.start(["A", "B", "C"])
    launcher.synced = False
    with pytest.raises(RequestError, match=r"A did not catch up .* within 5s \(waiting for: B\)"):
        await manager.restart(["A", "B"], rolling=True, progress=no_progress)
    assert 5.0 <= clock.now < 6.0
    assert launcher.spawned == ["A", "B", "C", "A"]


async def test_adopted_nodes_keep_their_pids(world: World) -> None:
    manager, launcher, clock, log = world
    old = FakeProc(77, clock.wall() - 3600)
    launcher.adoptable["B"] = old
    launcher.records["B"] = Record(77, 4, "RUNNING", None)  # what the one before us noted
    manager.adopt_all()
    b = (await status(manager))["B"]
    assert (b["state"], b["pid"], b["uptime"], b["restarts"]) == ("RUNNING", 77, 3600.0, 4)
    assert launcher.spawned == []
    assert "ADOPTED node=B pid=77 state=RUNNING" in log
    await manager.handle({"cmd": "start", "names": ["all"]}, no_progress)
    assert launcher.spawned == ["A", "C"]


def successor(world: World) -> Manager:
    """A new supervisor taking over `world`'s launcher, as after a kill -9 of the first."""
    manager, launcher, clock, log = world
    launcher.adoptable = {n: p for n, p in launcher.current.items() if p.alive}
    return fake_manager(manager.config, launcher, clock, log)


async def test_a_node_that_died_unwatched_is_restarted_by_the_next_supervisor(
    world: World,
) -> None:
    manager, launcher, clock, log = world
    manager.start(["A", "B", "C"])
    clock.now = 2.0
    manager.step()
    launcher.current["A"].die(-9)
    manager.step()  # A crashes, counted, respawned: restarts 1
    clock.now = 3.0
    manager.step()
    await manager.stop(["C"])  # stopped on purpose
    dead = launcher.current["B"]
    dead.die(-9)  # ... while no supervisor watches: nobody counts this one yet
    clock.now = 10.0
    second = successor(world)
    second.adopt_all()
    b = (await status(second))["B"]
    assert (b["state"], b["restarts"]) == ("STARTING", 1)
    assert b["pid"] not in (None, dead.pid)
    assert b["message"] == stamped(
        clock.wall(), f"died while no supervisor was watching (pid {dead.pid})"
    )
    assert f"LOST node=B pid={dead.pid} was=RUNNING" in "\n".join(log)
    a, c = (await status(second))["A"], (await status(second))["C"]
    assert (a["state"], a["restarts"], a["pid"]) == ("RUNNING", 1, launcher.current["A"].pid)
    assert (c["state"], c["pid"]) == ("STOPPED", None)  # stays stopped
    assert "C" not in launcher.records
    assert launcher.spawned == ["A", "B", "C", "A", "B"]


async def test_the_next_supervisor_keeps_fatal_and_finishes_a_stop(world: World) -> None:
    _, launcher, clock, _ = world
    launcher.records["A"] = Record(None, 2, "FATAL", "12:00:00 cannot start: port taken")
    launcher.records["B"] = Record(41, 0, "STOPPING", None)  # its stop ended unwatched
    launcher.records["C"] = Record(42, 0, "no such state", None)  # a newer herdctl's file?
    second = successor(world)
    second.adopt_all()
    found = await status(second)
    assert (found["A"]["state"], found["A"]["restarts"]) == ("FATAL", 2)
    assert found["A"]["message"] == "12:00:00 cannot start: port taken"
    assert found["B"]["state"] == "STOPPED" and "B" not in launcher.records
    assert found["C"]["state"] == "STARTING"  # meant to run: restarted
    assert launcher.spawned == ["C"]
    clock.now += 100
    second.step()
    assert launcher.spawned == ["C"]
    await second.stop(["A"])  # stopping a FATAL node forgets it
    assert (await status(second))["A"]["state"] == "STOPPED" and "A" not in launcher.records


async def test_shutdown_stops_everything_then_finishes(world: World) -> None:
    manager, launcher, _, _ = world
    manager.start(manager.local_names())
    await manager.handle({"cmd": "shutdown"}, no_progress)
    assert manager.finished.is_set()
    assert not any(p.alive for p in launcher.current.values())
    assert {s.policy.state for s in manager.slots.values() if s.local} == {State.STOPPED}


async def test_the_monitor_loop_respawns_until_finished(world: World) -> None:
    manager, launcher, clock, _ = world
    manager.start(["A"])
    launcher.current["A"].die(1)

    async def stop_later() -> None:
        while launcher.spawned.count("A") < 2:
            await asyncio.sleep(0)
        manager.finished.set()

    await asyncio.wait_for(asyncio.gather(manager.run(), stop_later()), 5)
    assert 0.5 <= clock.now < 1.0


def test_local_addresses() -> None:
    here = frozenset({"192.0.2.7"})
    assert is_local("127.0.0.1", here) and is_local("127.3.4.5", here) and is_local("::1", here)
    assert is_local("0.0.0.0", here) and is_local("192.0.2.7", here) and is_local("localhost", here)
    assert not is_local("198.51.100.1", here)
    assert not is_local("no-such-host.invalid", here)
    assert runs_node(["/x/python", "-m", "node", "Hands", "-c", "t.yaml"], "Hands")
    assert not runs_node(["/x/python", "-m", "node", "Handsome"], "Hands")


# -- the real daemon ---------------------------------------------------------------------

NAMES = ("Goloman", "Hands", "Holiday")
LINKS = (("Goloman", "Hands"), ("Hands", "Holiday"))
DAEMON_ARGS = ("--stop-timeout", "4")


def short_dir() -> Path:
    """A temp dir short enough for a Unix socket path."""
    return Path(tempfile.mkdtemp(prefix="hd", dir="/tmp"))


def processes_under(folder: Path) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line mentions `folder`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(str(folder) in a for a in cmdline):
            found.append(proc)
    return found


def kill_everything_under(folder: Path) -> None:
    """Test cleanup: SIGKILL every process group started for `folder`, and reap ours."""
    for proc in processes_under(folder):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.wait(5)  # reaps it if it is our child


def request(config: HerdConfig, cmd: str, **args: Any) -> Answer:
    payload = cast(Request, {"cmd": cmd, **args})
    return control.request(socket_for(config), payload, timeout=60)


def nodes(config: HerdConfig) -> dict[str, dict[str, Any]]:
    """The status rows as the wire carries them (JSON), for tests that read them loosely."""
    return {n["name"]: cast(dict[str, Any], n) for n in request(config, "status")["nodes"]}


def all_ready(config: HerdConfig) -> bool:
    return all(n["ready"] for n in nodes(config).values())


def gone_or_not_ours(pid: int) -> bool:
    """The process has exited (a zombie whose parent is not a supervisor counts as exited)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def herd() -> Iterator[HerdConfig]:
    """A running daemon with three nodes started; everything is killed at the end."""
    folder = short_dir()
    config = load_config(write_topology(folder, NAMES, LINKS))
    try:
        ensure_supervisor(config.path, daemon_args=DAEMON_ARGS)
        request(config, "start", names=["all"])
        wait_until(lambda: all_ready(config), "every node ready")
        yield config
    finally:
        kill_everything_under(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_real_start_all_and_status(herd: HerdConfig) -> None:
    found = nodes(herd)
    assert list(found) == list(NAMES)
    hands = found["Hands"]
    assert set(hands) == {
        "name", "state", "pid", "host", "port", "local", "uptime", "restarts", "cpu_percent",
        "memory_rss", "links_up", "links_expected", "connections", "clients", "links",
        "counters", "ready", "port_open", "exit_code", "message",
    }  # fmt: skip
    assert hands["local"] and hands["port_open"] and hands["links_expected"] == 2
    assert hands["port"] == herd.nodes["Hands"].port
    assert len({n["pid"] for n in found.values()}) == 3
    assert all(port_open(herd.nodes[n].port) for n in NAMES)
    wait_until(lambda: nodes(herd)["Hands"]["memory_rss"] is not None, "a cpu/memory sample")
    hands = nodes(herd)["Hands"]
    assert hands["cpu_percent"] >= 0 and hands["memory_rss"] > 1_000_000
    assert hands["links_up"] == 2 and hands["uptime"] > 0
    reply = exchange_sync(herd.nodes["Goloman"].port, b"IAMAT kiwi +34.06-118.44 1520023934.9\n")
    assert reply.startswith(b"AT Goloman")
    wait_until(
        lambda: all(n["clients"] == 1 for n in nodes(herd).values()), "the record everywhere"
    )
    pid_file = herd.run_dir / "Hands.pid"
    assert f'"pid": {hands["pid"]}' in pid_file.read_text()


def test_real_kill_9_node_comes_back(herd: HerdConfig) -> None:
    old = nodes(herd)["Hands"]
    os.kill(old["pid"], signal.SIGKILL)

    def back() -> bool:
        hands = nodes(herd)["Hands"]
        return hands["pid"] not in (None, old["pid"]) and hands["ready"]

    wait_until(back, "Hands to come back")
    wait_until(lambda: nodes(herd)["Hands"]["state"] == "RUNNING", "Hands past its start")
    hands = nodes(herd)["Hands"]
    assert hands["restarts"] == old["restarts"] + 1
    assert (hands["exit_code"], hands["message"]) == (-9, None)  # ready: the reason is history
    assert not psutil.pid_exists(old["pid"])  # reaped: no zombie
    log = (herd.log_dir / "herdctl.log").read_text()
    assert f"EXITED node=Hands pid={old['pid']} code=-9" in log


def test_real_stop_stays_stopped(herd: HerdConfig) -> None:
    old = nodes(herd)["Holiday"]["pid"]
    request(herd, "stop", names=["Holiday"])
    assert not psutil.pid_exists(old)
    assert not (herd.run_dir / "Holiday.pid").exists()
    # Watch for longer than the first respawn delay (0.5 s): it must not come back.
    until = time.monotonic() + 1.2
    while time.monotonic() < until:
        assert nodes(herd)["Holiday"]["state"] == "STOPPED"
    assert not port_open(herd.nodes["Holiday"].port)
    found = nodes(herd)
    assert found["Hands"]["ready"]  # Holiday is down, so its link is not expected up
    request(herd, "start", names=["Holiday"])
    wait_until(lambda: all_ready(herd), "Holiday started again")


def test_real_restart_changes_only_its_pid(herd: HerdConfig) -> None:
    before = {n: row["pid"] for n, row in nodes(herd).items()}
    restarts = nodes(herd)["Goloman"]["restarts"]
    request(herd, "restart", names=["Goloman"])
    wait_until(lambda: all_ready(herd), "every node ready after the restart")
    after = {n: row["pid"] for n, row in nodes(herd).items()}
    assert after["Goloman"] != before["Goloman"]
    assert {n: after[n] for n in ("Hands", "Holiday")} == {
        n: before[n] for n in ("Hands", "Holiday")
    }
    assert nodes(herd)["Goloman"]["restarts"] == restarts


def test_real_rolling_restart(herd: HerdConfig) -> None:
    before = {n: row["pid"] for n, row in nodes(herd).items()}
    lines: list[str] = []
    answer = control.request(
        socket_for(herd),
        {"cmd": "restart", "names": ["all"], "rolling": True},
        on_progress=lines.append,
        timeout=60,
    )
    assert answer == {"ok": True}
    assert [line.split(":")[0] for line in lines if "caught up in" in line] == list(NAMES)
    after = nodes(herd)
    assert all(after[n]["pid"] != before[n] for n in NAMES)
    # Each node caught up before the next went down, so the record survived everywhere.
    wait_until(lambda: all(n["clients"] == 1 for n in nodes(herd).values()), "the record kept")


def test_real_supervisor_killed_then_adopted(herd: HerdConfig) -> None:
    # RUNNING too, not only ready: a node adopted within `startsecs` of its spawn (say just
    # after the rolling restart before this test) is rightly adopted as STARTING.
    wait_until(
        lambda: all_ready(herd) and all(n["state"] == "RUNNING" for n in nodes(herd).values()),
        "every node ready and RUNNING",
    )
    first = request(herd, "ping")["pid"]
    before = nodes(herd)
    pids = {n: row["pid"] for n, row in before.items()}
    os.kill(first, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        psutil.Process(first).wait(10)
    assert running_supervisor(herd.run_dir) is None
    for name in NAMES:  # the nodes keep serving on their own
        assert exchange_sync(herd.nodes[name].port, b"WHATSAT kiwi 10 1\n").startswith(b"AT ")
    second = ensure_supervisor(herd.path, daemon_args=DAEMON_ARGS)
    assert second != first
    assert ensure_supervisor(herd.path) == second  # a live one is reused
    found = nodes(herd)
    assert {n: row["pid"] for n, row in found.items()} == pids
    assert {n: row["restarts"] for n, row in found.items()} == {
        n: row["restarts"] for n, row in before.items()
    }
    assert {row["state"] for row in found.values()} == {"RUNNING"}
    copies = [p for p in processes_under(herd.path.parent) if runs_node(p.cmdline(), "Hands")]
    assert len(copies) == 1
    assert "ADOPTED node=Hands" in (herd.log_dir / "herdctl.log").read_text()


def test_real_sigterm_ends_the_daemon_but_not_the_nodes(herd: HerdConfig) -> None:
    daemon = request(herd, "ping")["pid"]
    pids = {n: row["pid"] for n, row in nodes(herd).items()}
    os.kill(daemon, signal.SIGTERM)
    assert psutil.Process(daemon).wait(10) == 0
    assert not socket_for(herd).exists()
    assert not control.pid_path(herd.run_dir).exists()
    assert all(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids.values())
    ensure_supervisor(herd.path, daemon_args=DAEMON_ARGS)
    assert {n: row["pid"] for n, row in nodes(herd).items()} == pids


def test_real_shutdown_leaves_no_process(herd: HerdConfig) -> None:
    request(herd, "restart", names=["Hands"])  # one child of this daemon, the rest adopted
    wait_until(lambda: all_ready(herd), "every node ready")
    daemon = request(herd, "ping")["pid"]
    pids = [row["pid"] for row in nodes(herd).values()]
    assert request(herd, "shutdown") == {"ok": True}
    psutil.Process(daemon).wait(10)
    for pid in pids:
        assert gone_or_not_ours(pid)
    hands = pids[NAMES.index("Hands")]
    assert not psutil.pid_exists(hands), f"Hands (pid {hands}), our child, was not reaped"
    assert processes_under(herd.path.parent) == []
    assert not socket_for(herd).exists()
    assert not control.pid_path(herd.run_dir).exists()


def test_real_node_that_cannot_start_goes_fatal() -> None:
    folder = short_dir()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    (spare,) = free_ports(1)
    path = write_topology(
        folder, ["Welsh", "Wilkes"], [("Welsh", "Wilkes")], ports={"Welsh": port, "Wilkes": spare}
    )
    config = load_config(path)
    try:
        ensure_supervisor(path, daemon_args=DAEMON_ARGS)
        request(config, "start", names=["Welsh"])
        wait_until(lambda: nodes(config)["Welsh"]["state"] == "FATAL", "Welsh to go FATAL")
        welsh = nodes(config)["Welsh"]
        # Fatal at its first exit, however long the failed start took: no retry to count.
        assert welsh["exit_code"] == EXIT_CONFIG
        held = f"port {port} on 127.0.0.1 is already in use (held by pid {os.getpid()}: "
        assert f"cannot start: {held}" in welsh["message"]
        assert (welsh["pid"], welsh["ready"], welsh["restarts"]) == (None, False, 0)
        log = (config.log_dir / "herdctl.log").read_text()
        assert log.count("SPAWNED node=Welsh") == 1
        assert nodes(config)["Wilkes"]["state"] == "STOPPED"
        daemon = request(config, "ping")["pid"]
        request(config, "shutdown")
        psutil.Process(daemon).wait(10)
    finally:
        holder.close()
        kill_everything_under(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_pid_file_lock_refuses_a_second_supervisor(tmp_path: Path) -> None:
    path = tmp_path / "herdctl.pid"
    fd = acquire_pid_file(path)
    try:
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            acquire_pid_file(path)
    finally:
        release_pid_file(path, fd)
    release_pid_file(path, acquire_pid_file(path))  # free again once released


def test_socket_path_too_long_is_one_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    folder = short_dir()
    try:
        path = write_topology(folder, ["Welsh"], [], extra={"run_dir": "r" * 120})
        with pytest.raises(SupervisorError, match="more than the 107 a Unix socket allows"):
            socket_for(load_config(path))
        assert supervisor_main(["-c", str(path)]) == 2
        assert "a Unix socket allows" in capsys.readouterr().err
        with pytest.raises(SupervisorError, match="a Unix socket allows"):
            ensure_supervisor(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_ensure_reports_a_daemon_that_dies_with_its_log() -> None:
    folder = short_dir()
    try:
        path = write_topology(folder, ["Welsh"], [], extra={"run_dir": "taken"})
        (folder / "taken").write_text("a file where run_dir should be\n")
        with pytest.raises(SupervisorError) as caught:
            ensure_supervisor(path)
        message = str(caught.value)
        assert message.startswith("the supervisor exited with code 2; last lines of ")
        assert f"cannot use run_dir {folder / 'taken'}" in message
    finally:
        kill_everything_under(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_daemon_refuses_a_bad_topology(tmp_path: Path) -> None:
    bad = tmp_path / "topology.yaml"
    bad.write_text("nodes: {Welsh: {port: 0}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "herdctl.supervisor", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "herdctl supervisor: topology.yaml: nodes.Welsh.port: 0 is out of range 1..65535"
    )
