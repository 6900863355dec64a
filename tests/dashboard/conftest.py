"""Fixtures of the dashboard tests that start real herds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.herdctl_cli import herd_folder


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short temp folder for a herd; whatever herd ran there is taken down at the end."""
    with herd_folder() as path:
        yield path


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]
