"""herdctl.locate: -c, else $HERD_CONFIG, else the nearest topology.yaml upwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from herdctl.locate import config_path, find_upward
from node.config import ConfigError


def test_the_nearest_topology_upwards_wins(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (tmp_path / "topology.yaml").write_text("")
    assert config_path(None, env={}, cwd=deep) == tmp_path / "topology.yaml"
    (tmp_path / "a" / "topology.yaml").write_text("")
    assert config_path(None, env={}, cwd=deep) == tmp_path / "a" / "topology.yaml"
    (deep / "topology.yaml").mkdir()  # a folder of that name is not a topology
    assert find_upward(deep) == tmp_path / "a" / "topology.yaml"


def test_c_beats_the_environment_which_beats_the_search(tmp_path: Path) -> None:
    (tmp_path / "topology.yaml").write_text("")
    env = {"HERD_CONFIG": "from-env.yaml"}
    assert config_path(Path("given.yaml"), env=env, cwd=tmp_path) == Path("given.yaml")
    assert config_path(None, env=env, cwd=tmp_path) == Path("from-env.yaml")
    assert config_path(None, env={"HERD_CONFIG": ""}, cwd=tmp_path) == tmp_path / "topology.yaml"


def test_none_found_names_both_ways_to_give_one(tmp_path: Path) -> None:
    if find_upward(tmp_path) is not None:
        pytest.skip(f"a topology.yaml above {tmp_path} would be found")
    with pytest.raises(ConfigError) as caught:
        config_path(None, env={}, cwd=tmp_path)
    assert str(caught.value) == (
        f"no topology.yaml in {tmp_path} or any folder above it; "
        "name one with -c PATH or $HERD_CONFIG"
    )
