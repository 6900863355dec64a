"""Fixtures of the herdctl CLI tests that start real herds."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.herdctl_cli import herdctl, kill_all, processes_under, short_tempdir


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short temp folder for a herd; whatever herd ran there is taken down at the end."""
    path = short_tempdir()
    try:
        yield path
    finally:
        try:
            if (path / "topology.yaml").exists():
                herdctl("down", config=path / "topology.yaml", timeout=60)
        finally:
            kill_all(processes_under(path))
            shutil.rmtree(path, ignore_errors=True)
