"""Fixtures of the dashboard tests that start real herds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.herdctl_cli import herd_folder


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short temp folder for a herd; whatever herd ran there is taken down at the end."""
    with herd_folder() as path:
        yield path
