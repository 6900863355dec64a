"""Tests for node.private: what the herd creates is 0600 (files) and 0700 (folders).

Each test runs under a umask that would leave files and folders readable by everyone, as
the usual 022 does, so only the code's own modes keep them private.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.private import open_private, private_dir, replace_private, tighten
from tests.support import mode, umask


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    with umask(0o000):
        yield


def test_private_dir_creates_every_missing_folder_0700(tmp_path: Path) -> None:
    leaf = tmp_path / "a" / "b" / "logs"
    private_dir(leaf)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", leaf):
        assert mode(folder) == 0o700, folder
    private_dir(leaf)  # already there: nothing to do
    assert mode(leaf) == 0o700


def test_private_dir_leaves_an_existing_folder_as_the_operator_made_it(tmp_path: Path) -> None:
    chosen = tmp_path / "var-log-herd"
    chosen.mkdir(mode=0o750)
    private_dir(chosen / "sub")
    assert mode(chosen) == 0o750
    assert mode(chosen / "sub") == 0o700


def test_private_dir_over_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("not a folder")
    with pytest.raises(FileExistsError):
        private_dir(tmp_path / "logs")


def test_private_dir_fails_once_when_the_parent_is_there(tmp_path: Path) -> None:
    """mkdir can say ENOENT with the parent present (/proc); that is the answer, not a
    reason to make the parent again and again."""
    with pytest.raises(FileNotFoundError):
        private_dir(Path("/proc/no-such-folder"))


def test_a_parent_another_node_makes_meanwhile_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes start at once: ours finds `data` missing, the other makes it before we
    look again. Seen in a fresh-clone run as `cannot use journal folder .../data/Goloman`."""
    data = tmp_path / "data"
    real_mkdir = Path.mkdir

    def racing_mkdir(self: Path, mode: int = 0o777, *args: object, **kwargs: object) -> None:
        if self == data / "Goloman" and not data.exists():
            real_mkdir(data, 0o700)  # the other node, between our mkdir and our look
            raise FileNotFoundError(2, "No such file or directory", str(self))
        real_mkdir(self, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    private_dir(data / "Goloman")
    assert mode(data / "Goloman") == 0o700


def test_open_private_creates_a_0600_file(tmp_path: Path) -> None:
    fd = open_private(tmp_path / "new.log", os.O_WRONLY | os.O_APPEND)
    os.close(fd)
    assert mode(tmp_path / "new.log") == 0o600


@pytest.mark.parametrize("wide", [0o644, 0o666, 0o640, 0o604, 0o700])
def test_open_private_tightens_a_wider_file_and_keeps_what_it_holds(
    tmp_path: Path, wide: int
) -> None:
    path = tmp_path / "old.log"
    path.write_bytes(b"before\n")
    path.chmod(wide)
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "ab") as f:
        f.write(b"after\n")
    assert mode(path) == 0o600
    assert path.read_bytes() == b"before\nafter\n"


def test_tighten_makes_a_file_0600_and_leaves_the_rest_alone(tmp_path: Path) -> None:
    old = tmp_path / "N.log.3"
    old.write_text("x")
    old.chmod(0o644)
    tighten(old)
    assert mode(old) == 0o600
    tighten(tmp_path / "missing")  # nothing there: fine
    folder = tmp_path / "N.log.4"
    folder.mkdir(mode=0o755)
    tighten(folder)  # not a file: not ours to change
    assert mode(folder) == 0o755


def test_replace_private_writes_0600_atomically(tmp_path: Path) -> None:
    path = tmp_path / "N.status.json"
    path.write_text("{}\n")
    path.chmod(0o644)
    replace_private(path, b'{"state": "running"}\n')
    assert path.read_bytes() == b'{"state": "running"}\n'
    assert mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["N.status.json"]  # no temp file left
