"""Editing topology.yaml under a running herd, with the real `herdctl`: the supervisor keeps
its own copy, `status` says the file differs, and `reload` restarts only what changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
import yaml

from tests.herdctl_cli import herdctl, no_traceback, pids_of
from tests.support import free_ports, port_open, write_topology

NAMES = ("Holiday", "Welsh", "Wilkes")
LINKS = (("Holiday", "Welsh"), ("Holiday", "Wilkes"))


def status_of(config: Path) -> dict[str, dict[str, Any]]:
    result = herdctl("status", "--json", config=config)
    assert result.returncode == 0, result.stderr
    return {node["name"]: node for node in json.loads(result.stdout)}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def edit(config: Path, change: Any) -> None:
    """Rewrite the topology file through `change(doc)`."""
    doc = yaml.safe_load(config.read_text())
    change(doc)
    config.write_text(yaml.safe_dump(doc, sort_keys=False))


def start_herd(folder: Path) -> Path:
    config = write_topology(folder, NAMES, LINKS)
    result = herdctl("up", config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    return config


def test_a_typo_changes_nothing_and_a_new_port_restarts_only_its_ends(folder: Path) -> None:
    config = start_herd(folder)
    before = status_of(config)
    good = config.read_text()
    config.write_text(good.replace("- Welsh\n", "- Welch\n"))

    status = herdctl("status", config=config)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[-1].startswith(
        "topology.yaml changed since the herd started and is not valid (links[0]: unknown node"
        " 'Welch'"
    )
    assert all(node["topology_changed"] for node in status_of(config).values())

    reload = herdctl("reload", config=config)
    assert reload.returncode == 2, reload.stdout + reload.stderr
    assert reload.stderr.startswith("herdctl: topology.yaml: links[0]: unknown node 'Welch'")
    no_traceback(reload)
    assert pids_of(list(status_of(config).values())) == pids_of(list(before.values()))

    restart = herdctl("restart", "Welsh", config=config)  # on the herd's own copy: no hang
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "herdctl reload" in restart.stderr

    old_port, new_port = before["Welsh"]["port"], free_ports(1)[0]
    config.write_text(good.replace(f"port: {old_port}\n", f"port: {new_port}\n"))
    assert "herdctl reload to apply" in herdctl("status", config=config).stdout
    mid = pids_of(list(status_of(config).values()))
    reload = herdctl("reload", config=config)
    assert reload.returncode == 0, reload.stdout + reload.stderr
    lines = reload.stdout.splitlines()
    assert f"change: node Welsh: port {old_port} -> {new_port}" in lines
    assert "Holiday: restarting (neighbour Welsh moved)" in lines
    assert f"Welsh: restarting (port {old_port} -> {new_port})" in lines
    assert lines[-1] == "reloaded topology.yaml: 1 change applied"
    after = status_of(config)
    assert after["Wilkes"]["pid"] == mid["Wilkes"]
    assert after["Welsh"]["pid"] != mid["Welsh"] and after["Holiday"]["pid"] != mid["Holiday"]
    assert after["Welsh"]["port"] == new_port and after["Welsh"]["state"] == "RUNNING"
    assert port_open(new_port) and not port_open(old_port)
    assert not any(node["topology_changed"] for node in after.values())

    config.unlink()  # even with no file, the herd can be seen and stopped
    status = herdctl("status", config=config)
    assert status.returncode == 0 and "cannot be read" in status.stdout, status.stderr
    down = herdctl("down", config=config)
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines()[-1] == "herd down: every node stopped, supervisor exited"
    assert not any(alive(pid) for pid in pids_of(list(after.values())).values() if pid)


def test_reload_adds_and_removes_nodes(folder: Path) -> None:
    config = start_herd(folder)
    before = status_of(config)
    zed_port = free_ports(1)[0]

    def change(doc: dict[str, Any]) -> None:
        del doc["nodes"]["Wilkes"]
        doc["nodes"]["Zed"] = {"host": "127.0.0.1", "port": zed_port}
        doc["links"] = [["Holiday", "Welsh"], ["Welsh", "Zed"]]

    edit(config, change)
    reload = herdctl("reload", config=config)
    assert reload.returncode == 0, reload.stdout + reload.stderr
    lines = reload.stdout.splitlines()
    assert "Wilkes: stopped (removed from the topology)" in lines
    assert "Zed: added, starting" in lines
    assert "Holiday: restarting (links -Wilkes)" in lines
    assert "Welsh: restarting (links +Zed)" in lines
    after = status_of(config)
    assert list(after) == ["Holiday", "Welsh", "Zed"]
    assert {node["state"] for node in after.values()} == {"RUNNING"}
    assert after["Zed"]["links_up"] == 1 and port_open(zed_port)
    assert not port_open(before["Wilkes"]["port"])
    assert not alive(before["Wilkes"]["pid"])
