"""The real `herdctl` and supervisor with a dashboard: `up` and `dashboard` print its address,
the page answers with the token, a taken port is reported while the herd comes up all the
same, and `reload` starts, moves and stops the dashboard. Two-node herds, to be quick."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.herdctl_cli import herdctl, no_traceback
from tests.herdctl_cli.test_lazy_imports import imported_by
from tests.support import LINKS, NAMES, write_topology

PAIR = NAMES[:2]  # Goloman and Hands
ADDRESS = re.compile(r"http://127\.0\.0\.1:(\d+)/([\w-]{32})/")
ANY_PORT = {"dashboard": {"host": "127.0.0.1", "port": 0}}


def node_ports(config: Path) -> dict[str, int]:
    nodes = yaml.safe_load(config.read_text())["nodes"]
    return {name: spec["port"] for name, spec in nodes.items()}


def supervisor_log(config: Path) -> str:
    return (config.parent / "logs" / "herdctl.log").read_text()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_up_and_dashboard_print_the_address(folder: Path) -> None:
    config = write_topology(folder, PAIR, LINKS[:1], extra=ANY_PORT)
    up = herdctl("up", config=config)
    assert up.returncode == 0, up.stdout + up.stderr
    lines = up.stdout.splitlines()
    assert lines[-2].startswith("herd up: 2 nodes ready in ")
    assert lines[-1].startswith("dashboard: ") and ADDRESS.fullmatch(lines[-1].split()[1])
    address = lines[-1].split()[1]
    shown = herdctl("dashboard", config=config)
    assert (shown.returncode, shown.stdout) == (0, address + "\n"), shown.stderr
    again = herdctl("up", config=config)
    assert again.stdout.splitlines()[-1] == f"dashboard: {address}"
    with urllib.request.urlopen(address, timeout=10) as page:  # as printed, as it is
        assert b'<svg id="graph"' in page.read()
    state = get_json(address + "api/state")
    assert [n["name"] for n in state["nodes"]] == list(PAIR)
    assert {n["health"] for n in state["nodes"]} == {"up"}
    assert state["links"][0]["state"] == "up"
    root = address.rsplit("/", 2)[0] + "/"
    with pytest.raises(urllib.error.HTTPError, match="404"):
        get_json(root + "api/state")  # without the token
    port, token = ADDRESS.fullmatch(address).groups()  # type: ignore[union-attr]
    log = supervisor_log(config)
    assert f"DASHBOARD_START url=http://127.0.0.1:{port}/TOKEN/" in log and token not in log
    assert "aiohttp" not in imported_by(["dashboard"], folder)


def test_a_taken_port_is_reported_and_the_herd_comes_up(folder: Path, taken: int) -> None:
    extra = {"dashboard": {"host": "127.0.0.1", "port": taken}}
    config = write_topology(folder, PAIR, LINKS[:1], extra=extra)
    up = herdctl("up", config=config)
    assert up.returncode == 0, up.stdout + up.stderr
    no_traceback(up)
    why = f"port {taken} on 127.0.0.1 is already in use"
    assert up.stdout.splitlines()[-1].startswith("herd up: 2 nodes ready in ")
    assert f"herdctl: dashboard not served: {why}" in up.stderr
    assert f"DASHBOARD_ERROR host=127.0.0.1 port={taken} error={why}" in supervisor_log(config)
    shown = herdctl("dashboard", config=config)
    assert shown.returncode == 1 and why in shown.stderr and shown.stdout == ""

    pids = herdctl("status", "--json", config=config).stdout
    write_topology(folder, PAIR, LINKS[:1], ports=node_ports(config), extra=ANY_PORT)
    moved = herdctl("reload", config=config)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "change: dashboard changed" in moved.stdout
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/[\w-]{32}/$", moved.stdout, re.M)
    shown = herdctl("dashboard", config=config)
    assert shown.returncode == 0 and ADDRESS.fullmatch(shown.stdout.strip())

    write_topology(folder, PAIR, LINKS[:1], ports=node_ports(config))
    stopped = herdctl("reload", config=config)
    assert "dashboard: stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    shown = herdctl("dashboard", config=config)
    assert shown.returncode == 1
    assert "dashboard: {host: 127.0.0.1, port: 12110}" in shown.stderr
    assert "herdctl reload" in shown.stderr
    after = json.loads(herdctl("status", "--json", config=config).stdout)
    assert [n["pid"] for n in after] == [n["pid"] for n in json.loads(pids)]  # untouched


def test_dashboard_without_a_supervisor(folder: Path) -> None:
    config = write_topology(folder, PAIR, LINKS[:1], extra=ANY_PORT)
    shown = herdctl("dashboard", config=config)
    assert shown.returncode == 1 and "no supervisor running" in shown.stderr
    no_traceback(shown)
