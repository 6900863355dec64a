"""The supervisor's own copy of the topology and how the file on disk is said to differ."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from herdctl.topology import Owned, copy_path, drift, guess_run_dir, write_copy
from node.config import load_config

TEXT = """
nodes:
  Hands: {port: 12001}
  Welsh: {port: 12003, bind: 0.0.0.0}   # a comment
links: [[Hands, Welsh]]
places: {provider: offline}
log_dir: ../logs
run_dir: state/run
journal: {fsync: always}
"""


def owned(folder: Path, text: str = TEXT) -> Owned:
    path = folder / "herd" / "topology.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return Owned.read(path)


def test_the_copy_reads_the_same_from_run_dir(tmp_path: Path) -> None:
    herd = owned(tmp_path)
    copied = write_copy(herd)
    assert copied.path == copy_path(tmp_path / "herd" / "state" / "run")
    assert dataclasses.replace(load_config(copied.path), path=herd.config.path) == herd.config
    assert herd.config.log_dir == tmp_path / "logs"


def test_drift_says_how_the_file_differs(tmp_path: Path) -> None:
    herd = owned(tmp_path)
    path = herd.config.path
    assert drift(path, path.read_text(), herd) is None
    path.write_text(TEXT.replace("# a comment", "# another"))
    assert drift(path, path.read_text(), herd) is None  # comments only: nothing to reload
    path.write_text(TEXT.replace("12003", "12013"))
    assert drift(path, path.read_text(), herd) == (
        "topology.yaml changed since the herd started: herdctl reload to apply"
    )
    path.write_text(TEXT.replace("[Hands, Welsh]", "[Hands, Welch]"))
    message = drift(path, path.read_text(), herd)
    assert message is not None
    assert message.startswith(
        "topology.yaml changed since the herd started and is not valid (links[0]"
    )
    path.unlink()
    assert "cannot be read" in str(drift(path, None, herd))


def test_run_dir_is_found_in_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(TEXT.replace("[Hands, Welsh]", "[Hands, Welch]"))
    assert guess_run_dir(path, path.read_text()) == tmp_path / "state" / "run"
    path.write_text("nodes: [unclosed\n")
    assert guess_run_dir(path, path.read_text()) == tmp_path / "run"
    path.unlink()
    assert guess_run_dir(path, None) == tmp_path / "run"
