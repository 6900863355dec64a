"""herdctl.export: the systemd units' text (pure), which nodes are exported, the files
written, and what systemd itself says of them (`systemd-analyze verify`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from herdctl import export
from node.config import HerdConfig, parse_config
from tests.support import mode

TWO_MACHINES = """
nodes:
  Goloman: {host: 10.0.0.1, port: 12000}
  Hands: {host: 10.0.0.1, port: 12001}
  Welsh: {host: 10.0.0.2, port: 12003}
links: [[Goloman, Hands], [Hands, Welsh]]
places: {provider: offline}
"""
PYTHON = "/opt/herd/venv/bin/python"


def config(text: str = TWO_MACHINES, where: str = "/srv/herd/topology.yaml") -> HerdConfig:
    return parse_config(text, Path(where))


def settings(text: str) -> dict[str, list[str]]:
    """Each key of a unit file with its values, in order (comments left out)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_a_service_per_node_of_the_host_and_a_target() -> None:
    herd = config()
    nodes = export.local_nodes(herd, "10.0.0.1", lambda host: False)
    files = export.units(herd, nodes, export.Choices(python=PYTHON, user="herd", group="herd"))
    assert list(files) == ["herd-Goloman.service", "herd-Hands.service", "herd.target"]
    unit = settings(files["herd-Hands.service"])
    assert unit["ExecStart"] == [f"{PYTHON} -m node Hands -c /srv/herd/topology.yaml"]
    assert unit["WorkingDirectory"] == ["/srv/herd"]
    assert unit["Description"] == ["herd node Hands (10.0.0.1:12001)"]
    # Welsh runs elsewhere: without the shared secret this node could link to no one there
    assert unit["EnvironmentFile"] == ["/etc/herd/herd.env"]
    assert (unit["User"], unit["Group"]) == (["herd"], ["herd"])
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["78"]
    assert unit["KillSignal"] == ["SIGTERM"] and unit["TimeoutStopSec"] == ["10"]
    assert unit["PartOf"] == unit["WantedBy"] == ["herd.target"]
    assert unit["After"] == unit["Wants"] == ["network-online.target"]
    assert unit["LimitNOFILE"] == ["65536"]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["ProtectHome"] == ["yes"] and unit["PrivateTmp"] == ["yes"]
    assert unit["ReadWritePaths"] == ["-/srv/herd/logs -/srv/herd/data -/srv/herd/run"]
    target = settings(files["herd.target"])
    assert target["Wants"] == ["herd-Goloman.service herd-Hands.service"]
    assert target["WantedBy"] == ["multi-user.target"]


def test_a_herd_on_one_machine_needs_no_env_file() -> None:
    herd = config()
    welsh = export.local_nodes(herd, "10.0.0.2", lambda host: False)
    alone = config(TWO_MACHINES.replace("10.0.0.1", "10.0.0.2"))
    every = export.local_nodes(alone, "10.0.0.2", lambda host: False)
    spans = settings(export.units(herd, welsh, export.Choices(python=PYTHON))["herd-Welsh.service"])
    one = settings(export.units(alone, every, export.Choices(python=PYTHON))["herd-Welsh.service"])
    assert spans["EnvironmentFile"] == ["/etc/herd/herd.env"]
    assert one["EnvironmentFile"] == ["-/etc/herd/herd.env"]  # else run_dir/herd.secret
    assert "User" not in one and "Group" not in one


def test_this_machines_nodes_by_default_or_one_host_as_written() -> None:
    herd = config()
    here = export.local_nodes(herd, None, lambda host: host == "10.0.0.2")
    assert [spec.name for spec in here] == ["Welsh"]
    with pytest.raises(export.ExportError) as none_here:
        export.local_nodes(herd, None, lambda host: False)
    assert str(none_here.value) == (
        "no node of /srv/herd/topology.yaml runs on this machine (its hosts: 10.0.0.1,"
        " 10.0.0.2); --host H exports the nodes of host H"
    )
    with pytest.raises(export.ExportError) as unknown:
        export.local_nodes(herd, "10.0.0.9", lambda host: True)
    assert "no node of /srv/herd/topology.yaml has host 10.0.0.9" in str(unknown.value)


@pytest.mark.parametrize(
    ("where", "code", "home", "tmp"),
    [
        ("/srv/herd/topology.yaml", ("/usr/bin/python3.11",), "yes", "yes"),
        ("/home/ops/herd/topology.yaml", ("/usr/bin/python3.11",), "read-only", "yes"),
        (
            "/srv/herd/topology.yaml",
            ("/root/.pyenv/versions/3.11/bin/python3.11",),
            "read-only",
            "yes",
        ),
        ("/tmp/herd/topology.yaml", ("/usr/bin/python3.11",), "yes", "no"),
        ("/srv/herd/topology.yaml", ("/var/tmp/venv/bin/python3",), "yes", "no"),
    ],
)
def test_home_and_tmp_stay_visible_when_the_herd_lives_there(
    where: str, code: tuple[str, ...], home: str, tmp: str
) -> None:
    """ProtectHome=yes would hide a herd (or an interpreter) under /home or /root, and
    PrivateTmp=yes would give one under /tmp an empty /tmp of its own."""
    herd = config(where=where)
    nodes = list(herd.nodes.values())
    files = export.units(herd, nodes, export.Choices(python=PYTHON, code_paths=code))
    unit = settings(files["herd-Welsh.service"])
    assert (unit["ProtectHome"], unit["PrivateTmp"]) == ([home], [tmp])


def test_writable_folders_follow_the_topology() -> None:
    text = TWO_MACHINES + "log_dir: /var/log/herd\ndata_dir: /var/lib/herd\n"
    text += "secret_file: /etc/herd/secret/herd.secret\nlimits: {max_connections_total: 100000}\n"
    herd = config(text)
    unit = settings(
        export.service(
            herd, herd.nodes["Welsh"], export.Choices(python=PYTHON), secret_required=True
        )
    )
    assert unit["ReadWritePaths"] == [
        "-/var/log/herd -/var/lib/herd -/srv/herd/run -/etc/herd/secret"
    ]
    assert unit["LimitNOFILE"] == ["101024"]


def test_unit_names_and_values_are_escaped_for_systemd() -> None:
    assert export.unit_name("Welsh") == "herd-Welsh.service"
    assert export.unit_name("a b/ü") == "herd-a\\x20b\\x2f\\xc3\\xbc.service"
    text = 'nodes:\n  "x$y%z": {port: 12000}\nlog_dir: "my logs"\n'
    herd = config(text, "/srv/my herd %i/topology.yaml")
    unit = settings(
        export.units(herd, list(herd.nodes.values()), export.Choices(PYTHON))[
            "herd-x\\x24y\\x25z.service"
        ]
    )
    assert unit["ExecStart"] == [f'{PYTHON} -m node "x$$y%%z" -c "/srv/my herd %%i/topology.yaml"']
    assert unit["WorkingDirectory"] == ["/srv/my herd %%i"]
    assert unit["ReadWritePaths"] == [
        '"-/srv/my herd %%i/my logs" "-/srv/my herd %%i/data" "-/srv/my herd %%i/run"'
    ]
    assert unit["Description"] == ["herd node x$y%%z (127.0.0.1:12000)"]


def test_write_replaces_whole_files_0644_and_names_the_stale_ones(tmp_path: Path) -> None:
    out = tmp_path / "units"
    herd = config()
    nodes = list(herd.nodes.values())
    first = export.write(export.units(herd, nodes, export.Choices(PYTHON)), out)
    assert [path.name for path in first] == [
        "herd-Goloman.service",
        "herd-Hands.service",
        "herd-Welsh.service",
        "herd.target",
    ]
    assert all(mode(path) == 0o644 for path in first)
    again = export.units(herd, nodes[:2], export.Choices(PYTHON))
    export.write(again, out)
    assert sorted(os.listdir(out)) == sorted(path.name for path in first)  # no temp files
    assert export.stale_units(out, again) == [out / "herd-Welsh.service"]
    assert "herd-Welsh.service" not in (out / "herd.target").read_text()


def test_folders_to_make_are_those_missing(tmp_path: Path) -> None:
    herd = parse_config(TWO_MACHINES, tmp_path / "topology.yaml")
    (tmp_path / "logs").mkdir()
    assert export.folders_to_make(herd) == [tmp_path / "data", tmp_path / "run"]


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("folder_name", ["herd", "my herd %n"])
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path, folder_name: str) -> None:
    """systemd's own parser, with the interpreter that runs the tests (ExecStart must
    exist), and with a folder whose name needs quoting and escaping."""
    assert SYSTEMD_ANALYZE is not None
    folder = tmp_path / folder_name
    folder.mkdir()
    herd = parse_config(TWO_MACHINES, folder / "topology.yaml")
    nodes = export.local_nodes(herd, "10.0.0.1", lambda host: False)
    choices = export.Choices(python=sys.executable, user="herd", code_paths=(sys.executable,))
    written = export.write(export.units(herd, nodes, choices), tmp_path / "units")
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, written)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    ours = [line for line in done.stderr.splitlines() if str(tmp_path) in line or "herd" in line]
    assert done.returncode == 0, done.stderr
    assert ours == [], done.stderr
