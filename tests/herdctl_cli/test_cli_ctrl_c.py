"""Ctrl-C on the real `herdctl` while it waits: exit 130, no traceback, the herd runs on.

Each command runs in its own process group and gets SIGINT as a terminal's Ctrl-C gives it
(to the group); the supervisor and the nodes live in sessions of their own, as always.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from tests.herdctl_cli import BIN, herdctl, read_lines_until
from tests.support import free_ports, wait_until, write_topology


def never_ready(folder: Path) -> Path:
    """Hands and Welsh, linked; Hands listens on another port than the one Welsh dials, so
    Welsh's link never comes up and `up` waits for it until its timeout."""
    path = write_topology(folder, ["Hands", "Welsh"], [("Hands", "Welsh")])
    doc = yaml.safe_load(path.read_text())
    (doc["nodes"]["Hands"]["bind_port"],) = free_ports(1)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def spawn(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    """`herdctl ARGS` in `cwd` (no -c: the topology is found from there), in its own group."""
    env = {k: v for k, v in os.environ.items() if k != "HERD_CONFIG"}
    return subprocess.Popen(
        [str(BIN), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def ctrl_c(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    """SIGINT to the command's process group, as a terminal's Ctrl-C; its output."""
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return out.decode(), err.decode()


def nodes(config: Path) -> dict[str, dict[str, Any]]:
    result = herdctl("status", "--json", config=config)
    assert result.returncode in (0, 3), result.stderr
    return {node["name"]: node for node in json.loads(result.stdout)}


def states(out: str) -> dict[str, str]:
    """NODE -> STATE from the status table at the end of `out`."""
    lines = out.splitlines()
    header = max(i for i, line in enumerate(lines) if line.startswith("NODE "))
    return {line.split()[0]: line.split()[1] for line in lines[header + 1 :]}


def test_ctrl_c_while_up_and_restart_wait_stops_the_wait_not_the_herd(folder: Path) -> None:
    config = never_ready(folder)
    deep = folder / "a" / "b"
    deep.mkdir(parents=True)
    up = spawn("up", "--timeout", "120", cwd=deep)
    try:
        assert up.stdout is not None
        (first,) = read_lines_until(up.stdout, 1, 60)
        assert first.startswith("starting Hands, Welsh (supervisor pid ")
        wait_until(lambda: nodes(config)["Welsh"]["state"] == "RUNNING", "Welsh running")
        out, err = ctrl_c(up)
    finally:
        up.kill()
    assert up.returncode == 130, err
    assert "Traceback" not in err
    started, interrupted = err.splitlines()
    assert started.startswith("herdctl: started a supervisor (pid ")
    assert interrupted.startswith("herdctl: interrupted: stopped waiting; the supervisor carries")
    assert states(out) == {"Hands": "RUNNING", "Welsh": "RUNNING"}
    before = nodes(config)
    assert {n["state"] for n in before.values()} == {"RUNNING"}  # still running afterwards

    restart = spawn("restart", "Welsh", cwd=deep)
    try:
        wait_until(lambda: nodes(config)["Welsh"]["pid"] != before["Welsh"]["pid"], "a new Welsh")
        out, err = ctrl_c(restart)
    finally:
        restart.kill()
    assert restart.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: stopped waiting" in err
    assert states(out)["Hands"] == "RUNNING"
    after = nodes(config)
    assert after["Hands"]["pid"] == before["Hands"]["pid"]
    assert after["Welsh"]["state"] in ("STARTING", "RUNNING")


def test_ctrl_c_as_up_starts_the_supervisor_still_starts_the_nodes(folder: Path) -> None:
    config = write_topology(folder, ["Solo"], [])
    up = spawn("up", cwd=folder)
    try:
        pid_file = folder / "run" / "herdctl.pid"
        wait_until(pid_file.exists, "the supervisor's pid file", timeout=60)
        out, err = ctrl_c(up)
    finally:
        up.kill()
    assert up.returncode == 130, err
    assert "Traceback" not in err
    assert out.startswith("starting Solo (supervisor pid ")  # asked for before stopping
    assert states(out)["Solo"] in ("STARTING", "RUNNING")
    wait_until(lambda: nodes(config)["Solo"]["state"] == "RUNNING", "Solo running")


def test_ctrl_c_at_any_moment_of_up_is_never_a_traceback(folder: Path) -> None:
    never_ready(folder)
    # The delay is what is tested, not a wait for something: Ctrl-C while the CLI loads, as
    # it starts the supervisor, as it waits. `up` never finishes here, so each one lands.
    for delay in (0.1, 0.25, 0.5, 1.0):
        up = spawn("up", "--timeout", "120", cwd=folder)
        try:
            time.sleep(delay)
            out, err = ctrl_c(up)
        finally:
            up.kill()
        assert up.returncode == 130, (delay, out, err)
        assert "Traceback" not in err, (delay, err)
