"""Which topology file a command reads, as git finds its `.git`.

In order: `-c PATH`, else `$HERD_CONFIG`, else the nearest `topology.yaml` in the current
folder or one above it. Reads nothing but the names of files; the caller loads the one found.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from node.config import CONFIG_ENV, ConfigError

CONFIG_NAME = "topology.yaml"


def find_upward(start: Path, name: str = CONFIG_NAME) -> Path | None:
    """`start/name`, else the same in the nearest folder above `start` that has it; None."""
    for folder in (start, *start.parents):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def config_path(
    given: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """The topology file to read: `given` (-c), else $HERD_CONFIG, else the nearest
    topology.yaml from `cwd` upwards; ConfigError naming both ways to give one otherwise."""
    if given is not None:
        return given
    from_env = (os.environ if env is None else env).get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    start = Path.cwd() if cwd is None else cwd
    found = find_upward(start)
    if found is None:
        raise ConfigError(
            f"no {CONFIG_NAME} in {start} or any folder above it; "
            f"name one with -c PATH or ${CONFIG_ENV}"
        )
    return found
