"""The real `herdctl` writing files: `topology random` and `export systemd`, in a temp folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.config import load_config
from tests.herdctl_cli import herdctl, short_tempdir
from tests.herdctl_cli.test_lazy_imports import imported_by

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
    path = short_tempdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


@pytest.mark.parametrize(
    "argv",
    [
        ["topology", "random", "--help"],
        ["topology", "random", "--nodes", "20", "--seed", "1"],
    ],
)
def test_the_new_commands_start_light(argv: list[str], tmp_path: Path) -> None:
    assert imported_by(argv, tmp_path) == set()
