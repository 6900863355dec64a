"""The real `herdctl` binary driving a supervised herd in a temp directory, end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.herdctl_cli import (
    herd_folder,
    herdctl,
    no_traceback,
    pids_of,
    processes_under,
)
from tests.support import NAMES, exchange_sync, free_ports, port_open, wait_until, write_topology

UCLA = "+34.068930-118.445127"


def status_of(config: Path) -> list[dict[str, Any]]:
    result = herdctl("status", "--json", config=config)
    assert result.returncode in (0, 3), result.stderr  # 3: a node is not running
    nodes: list[dict[str, Any]] = json.loads(result.stdout)
    return nodes


def by_name(config: Path) -> dict[str, dict[str, Any]]:
    return {node["name"]: node for node in status_of(config)}


def supervisor_pid(config: Path) -> int:
    pid: int = json.loads((config.parent / "run" / "herdctl.pid").read_text())["pid"]
    return pid


def all_ready(config: Path) -> bool:
    return all(node["ready"] for node in status_of(config))


@pytest.fixture(scope="module")
def herd() -> Iterator[Path]:
    """Five supervised nodes, brought up once for this module; its topology's path."""
    with herd_folder() as path:
        config = write_topology(path)
        result = herdctl("up", config=config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1].startswith("herd up: 5 nodes ready in ")
        yield config


@pytest.fixture
def up(herd: Path) -> Path:
    """The module's herd, every node ready (an earlier test may have disturbed it)."""
    result = herdctl("up", config=herd)
    assert result.returncode == 0, result.stdout + result.stderr
    return herd


def test_up_again_changes_nothing(up: Path) -> None:
    before = pids_of(status_of(up))
    result = herdctl("up", config=up)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("herd already up: 5 nodes ready")
    assert "nothing changed" in result.stdout
    assert pids_of(status_of(up)) == before


def test_status_table(up: Path) -> None:
    result = herdctl("status", config=up)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "NODE",
        "STATE",
        "PID",
        "PORT",
        "UPTIME",
        "RESTARTS",
        "CPU%",
        "MEM(MiB)",
        "LINKS",
        "CONNS",
        "CLIENTS",
    ]
    cells = {row.split()[0]: row.split() for row in rows}
    assert list(cells) == list(NAMES)
    assert {row[1] for row in cells.values()} == {"RUNNING"}
    assert cells["Goloman"][8] == "3/3"  # its three neighbours
    assert cells["Welsh"][8] == "1/1"
    assert all(float(row[7]) > 1 for row in cells.values())  # MiB of resident memory


def test_status_json(up: Path) -> None:
    nodes = status_of(up)
    assert [node["name"] for node in nodes] == list(NAMES)
    for node in nodes:
        assert node["state"] == "RUNNING"
        assert isinstance(node["pid"], int) and psutil.pid_exists(node["pid"])
        assert isinstance(node["port"], int) and port_open(node["port"])
        assert isinstance(node["restarts"], int)


def test_conns_are_open_connections_and_clients_are_records(up: Path) -> None:
    before = by_name(up)["Wilkes"]
    with socket.create_connection(("127.0.0.1", before["port"]), timeout=30) as conn:
        wait_until(lambda: by_name(up)["Wilkes"]["connections"] == 1, "CONNS 1 on Wilkes")
        conn.sendall(f"IAMAT conns.test {UCLA} 1520023934.918963997\n".encode())
        assert conn.recv(4096).startswith(b"AT Wilkes ")
        want = before["clients"] + 1
        wait_until(lambda: by_name(up)["Wilkes"]["clients"] == want, "a new client record")
        result = herdctl("status", config=up)
        header, *rows = result.stdout.splitlines()
        cells = {
            row.split()[0]: dict(zip(header.split(), row.split(), strict=False)) for row in rows
        }
        assert (cells["Wilkes"]["CONNS"], cells["Wilkes"]["CLIENTS"]) == ("1", str(want))
    # Closed: no connection left, and the client's record stays.
    wait_until(lambda: by_name(up)["Wilkes"]["connections"] == 0, "CONNS 0 on Wilkes")
    assert by_name(up)["Wilkes"]["clients"] == want


def test_send_to_a_supervised_node_and_read_it_elsewhere(up: Path) -> None:
    iamat = herdctl("send", "Welsh", f"IAMAT herdctl.test {UCLA} 1520023934.918963997", config=up)
    assert iamat.returncode == 0, iamat.stderr
    at_line = iamat.stdout.encode()
    assert at_line.startswith(b"AT Welsh +")
    hands = by_name(up)["Hands"]["port"]

    def flooded() -> bool:
        return exchange_sync(hands, b"WHATSAT herdctl.test 5 1\n").startswith(at_line)

    wait_until(flooded, "the IAMAT to reach Hands")


def test_restart_one_node_changes_only_its_pid(up: Path) -> None:
    before = pids_of(status_of(up))
    result = herdctl("restart", "Holiday", config=up)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "restarted: Holiday"
    after = by_name(up)
    assert after["Holiday"]["pid"] != before["Holiday"]
    assert after["Holiday"]["state"] == "RUNNING"
    assert {n: after[n]["pid"] for n in NAMES if n != "Holiday"} == {
        n: pid for n, pid in before.items() if n != "Holiday"
    }


def test_rolling_restart_shows_progress(up: Path) -> None:
    before = pids_of(status_of(up))
    result = herdctl("restart", "Hands", "Wilkes", "--rolling", config=up)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["Hands: stopping", "Hands: started, waiting until it has caught up"]
    assert any(line.startswith("Wilkes: caught up in ") for line in lines)
    after = pids_of(status_of(up))
    assert after["Hands"] != before["Hands"] and after["Wilkes"] != before["Wilkes"]
    assert after["Goloman"] == before["Goloman"]


def test_a_killed_node_comes_back_and_is_counted(up: Path) -> None:
    before = by_name(up)["Welsh"]
    os.kill(before["pid"], signal.SIGKILL)

    def back() -> bool:
        now = by_name(up)["Welsh"]
        return bool(now["ready"] and now["state"] == "RUNNING" and now["pid"] != before["pid"])

    wait_until(back, "Welsh to be restarted")
    now = by_name(up)["Welsh"]
    assert now["restarts"] == before["restarts"] + 1
    assert (now["exit_code"], now["message"]) == (-9, None)  # ready again: nothing stale shown
    log = (up.parent / "logs" / "herdctl.log").read_text()
    assert f"EXITED node=Welsh pid={before['pid']} code=-9" in log  # the history is kept


def test_a_stopped_node_stays_stopped(up: Path) -> None:
    port = by_name(up)["Hands"]["port"]
    result = herdctl("stop", "Hands", config=up)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "stopped: Hands\n"
    assert not port_open(port)
    # Watch for longer than the restart backoff: a crashed node would be back by then.
    for _ in range(4):
        node = by_name(up)["Hands"]
        assert (node["state"], node["pid"]) == ("STOPPED", None)
    assert not port_open(port)
    again = herdctl("start", "Hands", config=up)
    assert again.returncode == 0, again.stderr
    assert by_name(up)["Hands"]["state"] == "RUNNING"


def test_a_killed_supervisor_is_replaced_and_adopts_the_nodes(up: Path) -> None:
    before = pids_of(status_of(up))
    old = supervisor_pid(up)
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(old) or _zombie(old), "the supervisor to die")
    assert all(port_open(node["port"]) for node in status_of(up))  # status adopted them
    assert supervisor_pid(up) != old
    assert pids_of(status_of(up)) == before  # the same processes, not a second copy
    assert {node["state"] for node in status_of(up)} == {"RUNNING"}


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_commands_name_unknown_nodes(up: Path) -> None:
    result = herdctl("restart", "Hnads", config=up)
    assert result.returncode == 2
    assert result.stderr.startswith("herdctl: topology.yaml: unknown node 'Hnads' (known: ")


# --- their own herds -------------------------------------------------------------------------


def test_down_leaves_no_process(folder: Path) -> None:
    config = write_topology(folder, ["Hands", "Welsh"], [("Hands", "Welsh")])
    result = herdctl("up", config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = status_of(config)
    pids = [supervisor_pid(config), *(node["pid"] for node in nodes)]
    assert len(processes_under(folder)) == 3
    down = herdctl("down", config=config)
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines()[-1] == "herd down: every node stopped, supervisor exited"
    assert processes_under(folder) == []
    assert not any(psutil.pid_exists(pid) and not _zombie(pid) for pid in pids)
    assert not any(port_open(node["port"]) for node in nodes)
    assert not (folder / "run" / "herdctl.pid").exists()
    again = herdctl("down", config=config)
    assert (again.returncode, again.stdout) == (0, "no supervisor running; nothing to stop\n")


def test_a_node_that_died_while_no_supervisor_ran_comes_back(folder: Path) -> None:
    names = ["Hands", "Welsh", "Wilkes"]
    config = write_topology(folder, names, [("Hands", "Welsh"), ("Welsh", "Wilkes")])
    assert herdctl("up", config=config).returncode == 0
    assert herdctl("stop", "Wilkes", config=config).returncode == 0  # on purpose
    first = by_name(config)
    os.kill(first["Welsh"]["pid"], signal.SIGKILL)  # watched: restarted and counted
    wait_until(lambda: by_name(config)["Welsh"]["restarts"] == 1, "Welsh restarted once")
    wait_until(lambda: all_ready_but(config, "Wilkes"), "Welsh ready again")
    before = by_name(config)
    _kill_and_reap(supervisor_pid(config))
    dead = before["Hands"]["pid"]
    _kill_and_reap(dead)  # dies while no supervisor runs
    after = by_name(config)  # a new supervisor takes over
    hands = after["Hands"]
    assert hands["pid"] not in (None, dead)
    assert hands["restarts"] == 1
    assert f"died while no supervisor was watching (pid {dead})" in hands["message"]
    assert (after["Welsh"]["pid"], after["Welsh"]["restarts"]) == (before["Welsh"]["pid"], 1)
    assert (after["Wilkes"]["state"], after["Wilkes"]["pid"]) == ("STOPPED", None)
    log = (folder / "logs" / "herdctl.log").read_text()
    assert f"LOST node=Hands pid={dead} was=RUNNING" in log
    wait_until(lambda: all_ready_but(config, "Wilkes"), "Hands ready again")
    assert by_name(config)["Hands"]["message"] is None


def all_ready_but(config: Path, stopped: str) -> bool:
    nodes = [node for node in status_of(config) if node["name"] != stopped]
    return all(node["ready"] and node["state"] == "RUNNING" for node in nodes)


def _kill_and_reap(pid: int) -> None:
    """SIGKILL `pid` and wait until it is gone (or a zombie its parent has yet to reap)."""
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: _zombie(pid), f"pid {pid} to die")


def test_up_with_a_bad_topology_is_one_clear_message(folder: Path) -> None:
    config = folder / "topology.yaml"
    config.write_text("nodes: {Hands: {port: 12001}}\nlinks: [[Hands, Foo]]\n")
    result = herdctl("up", config=config)
    assert result.returncode == 2
    assert result.stderr == (
        "herdctl: topology.yaml: links[0]: unknown node 'Foo' (known: Hands)\n"
    )
    no_traceback(result)
    assert processes_under(folder) == []


def test_up_names_the_node_whose_port_is_taken(folder: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        (free,) = free_ports(1)
        ports = {"Hands": free, "Welsh": port}
        config = write_topology(folder, ["Hands", "Welsh"], [("Hands", "Welsh")], ports=ports)
        started = time.monotonic()
        result = herdctl("up", "--timeout", "60", config=config)
        took = time.monotonic() - started
        welsh = by_name(config)["Welsh"]
    assert result.returncode == 1, result.stdout
    note, first, *details = result.stderr.splitlines()
    assert note.startswith("herdctl: started a supervisor (pid ")
    held = f"port {port} on 127.0.0.1 is already in use (held by pid {os.getpid()}: "
    assert re.match(r"herdctl: Welsh failed to start: FATAL: \d\d:\d\d:\d\d cannot start: ", first)
    assert held in first
    assert any(line.startswith("--- last ") and "Welsh.stderr.log" in line for line in details)
    assert any("START_FAILED node=Welsh" in line for line in details)
    no_traceback(result)
    # Every node's state is reported: which run, which failed and why.
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("NODE "))
    table = {line.split()[0]: line.split() for line in lines[header + 1 :]}
    assert table["Hands"][1] == "RUNNING" and table["Welsh"][1] == "FATAL"
    # Fatal at once: one spawn, no retry, and no journal segment left behind.
    assert (welsh["state"], welsh["restarts"], welsh["exit_code"]) == ("FATAL", 0, 78)
    assert (folder / "logs" / "herdctl.log").read_text().count("SPAWNED node=Welsh") == 1
    welsh_data = folder / "data" / "Welsh"  # the port is tried before the journal is opened
    assert not welsh_data.exists() or list(welsh_data.iterdir()) == []
    print(f"a taken port was reported by `up` in {took:.1f}s")
    # The port is free now: started by hand, Welsh runs and its stale message is gone.
    again = herdctl("start", "Welsh", config=config)
    assert again.returncode == 0, again.stdout + again.stderr
    welsh = by_name(config)["Welsh"]
    assert (welsh["state"], welsh["ready"], welsh["message"]) == ("RUNNING", True, None)
    assert "MESSAGE" not in herdctl("status", config=config).stdout
