"""The real `herdctl` writing files: `topology random` and `export systemd`, in a temp folder."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.config import load_config
from tests.herdctl_cli import herdctl, no_traceback, scratch_folder
from tests.herdctl_cli.test_lazy_imports import imported_by
from tests.support import write_topology

TWO_MACHINES = """\
nodes:
  Goloman: {host: 198.51.100.1, port: 12000}
  Hands: {host: 198.51.100.1, port: 12001}
  Welsh: {host: 198.51.100.2, port: 12003}
links: [[Goloman, Hands], [Hands, Welsh]]
places: {provider: offline}
"""


@pytest.fixture
def folder() -> Iterator[Path]:
    with scratch_folder() as path:
        yield path


def test_topology_random_prints_or_writes_one_valid_file(folder: Path) -> None:
    args = ("topology", "random", "--nodes", "20", "--degree", "3", "--seed", "42")
    printed = herdctl(*args, cwd=folder)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith(
        "# A random connected herd, made by: herdctl topology random --nodes 20 --degree 3"
        " --seed 42\n# 20 nodes, 30 links, diameter "
    )
    target = folder / "big.yaml"
    written = herdctl(*args, "-o", str(target), cwd=folder)
    assert written.returncode == 0, written.stderr
    assert target.read_text() == printed.stdout
    assert written.stderr.startswith(f"wrote {target}: 20 nodes, 30 links, diameter ")
    config = load_config(target)
    assert len(config.nodes) == 20 and len(config.links) == 30
    again = herdctl(*args, "--seed", "43", "-o", str(target), cwd=folder)
    assert (again.returncode, again.stderr) == (
        1,
        f"herdctl: {target} exists; --force replaces it\n",
    )
    assert target.read_text() == printed.stdout
    forced = herdctl(*args[:-1], "43", "-o", str(target), "--force", cwd=folder)
    assert forced.returncode == 0, forced.stderr
    assert target.read_text() != printed.stdout and "--seed 43" in target.read_text()
    check = herdctl("check", config=target)
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines()[1].startswith("  diameter ")


def test_topology_random_without_a_seed_names_the_one_it_drew(folder: Path) -> None:
    first = herdctl("topology", "random", "--nodes", "6", cwd=folder)
    assert first.returncode == 0, first.stderr
    seed = first.stdout.split("--seed ", 1)[1].split()[0]
    again = herdctl("topology", "random", "--nodes", "6", "--seed", seed, cwd=folder)
    assert again.stdout == first.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--degree", "1"], "herdctl: --degree must be at least 2 (a connected herd), not 1\n"),
        (["--nodes", "5000"], "herdctl: --nodes must be 1 to 1000, not 5000\n"),
    ],
)
def test_topology_random_refuses_what_cannot_be_made(
    folder: Path, args: list[str], message: str
) -> None:
    result = herdctl("topology", "random", *args, cwd=folder)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)


def test_export_systemd_writes_the_units_of_one_host(folder: Path) -> None:
    (folder / "topology.yaml").write_text(TWO_MACHINES)
    units = folder / "units"
    result = herdctl("export", "systemd", "--host", "198.51.100.1", "-o", str(units), cwd=folder)
    assert result.returncode == 0, result.stderr
    names = ["herd-Goloman.service", "herd-Hands.service", "herd.target"]
    assert result.stdout == "".join(f"wrote {units / name}\n" for name in names) + (
        "then: systemctl daemon-reload && systemctl enable --now herd.target\n"
    )
    assert sorted(path.name for path in units.iterdir()) == names
    assert result.stderr == (
        "herdctl: note: make the folders the nodes write to before they start: install -d"
        f" -m 0700 {folder}/logs {folder}/data {folder}/run\n"
    )
    service = (units / "herd-Hands.service").read_text()
    assert f" -m node Hands -c {folder}/topology.yaml\n" in service
    assert "\nEnvironmentFile=/etc/herd/herd.env\n" in service  # Welsh is on another machine
    if (analyze := shutil.which("systemd-analyze")) is not None:
        verify = subprocess.run(
            [analyze, "verify", "--man=no", *(str(units / name) for name in names)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verify.returncode == 0 and str(units) not in verify.stderr, verify.stderr

    # Welsh moves to this host's file: exporting again names the unit no longer written
    (folder / "topology.yaml").write_text(TWO_MACHINES.replace("198.51.100.1", "198.51.100.2"))
    for made in ("logs", "data", "run"):
        (folder / made).mkdir()
    moved = herdctl("export", "systemd", "--host", "198.51.100.1", "-o", str(units), cwd=folder)
    assert moved.returncode == 2 and "has host 198.51.100.1" in moved.stderr
    both = herdctl("export", "systemd", "--host", "198.51.100.2", "-o", str(units), cwd=folder)
    assert both.returncode == 0, both.stderr
    assert both.stderr == ""  # the folders exist, and every node unit is this export's


def test_export_systemd_prints_this_machines_units(folder: Path) -> None:
    config = write_topology(folder)  # every node on 127.0.0.1
    result = herdctl("export", "systemd", "--user", "herd", config=config)
    assert result.returncode == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line.startswith("==> ")]
    assert headers == [
        "==> herd-Goloman.service <==",
        "==> herd-Hands.service <==",
        "==> herd-Holiday.service <==",
        "==> herd-Welsh.service <==",
        "==> herd-Wilkes.service <==",
        "==> herd.target <==",
    ]
    assert "\nUser=herd\n" in result.stdout
    assert "\nEnvironmentFile=-/etc/herd/herd.env\n" in result.stdout  # one machine: optional


def test_export_systemd_with_no_local_node_says_so(folder: Path) -> None:
    (folder / "topology.yaml").write_text(TWO_MACHINES)
    result = herdctl("export", "systemd", cwd=folder)
    assert result.returncode == 2
    assert result.stderr == (
        f"herdctl: no node of {folder}/topology.yaml runs on this machine (its hosts:"
        " 198.51.100.1, 198.51.100.2); --host H exports the nodes of host H\n"
    )
    relative = herdctl("export", "systemd", "--python", "python3", cwd=folder)
    assert relative.returncode == 2
    assert relative.stderr == "herdctl: --python must be an absolute path, not 'python3'\n"
    no_traceback(result)


@pytest.mark.parametrize(
    "argv",
    [
        ["topology", "random", "--help"],
        ["export", "systemd", "--help"],
        ["topology", "random", "--nodes", "20", "--seed", "1"],
    ],
)
def test_the_new_commands_start_light(argv: list[str], tmp_path: Path) -> None:
    assert imported_by(argv, tmp_path) == set()
