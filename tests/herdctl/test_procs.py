"""herdctl.procs: a process named in a pid file is known again, whatever the clock did.

psutil's wall-clock create_time is the boot time plus the ticks since boot, and the boot
time is the clock minus the uptime: when the clock is adjusted it can step by a second
between two readings. A supervisor that compared wall-clock times then took its own live
nodes for dead ones (seen in a fresh-clone `make test`) and spawned second copies.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from herdctl import procs
from herdctl.procs import identity, live_process


@pytest.fixture
def child() -> Iterator[psutil.Process]:
    popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield psutil.Process(popen.pid)
    finally:
        popen.kill()
        popen.wait()


def stepped_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every wall-clock create_time read from now on is `seconds` off, as after a step."""
    real = psutil.Process.create_time

    def create_time(self: psutil.Process) -> float:
        return real(self) + seconds

    monkeypatch.setattr(psutil.Process, "create_time", create_time)


def test_a_process_is_known_by_its_pid_file(child: psutil.Process) -> None:
    info = identity(child)
    assert info["pid"] == child.pid and "since_boot" in info
    found = live_process(info)
    assert found is not None and found.pid == child.pid


def test_a_clock_step_does_not_make_a_live_process_a_stranger(
    child: psutil.Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = identity(child)
    stepped_clock(monkeypatch, 1.0)
    assert live_process(info) is not None


def test_another_process_with_the_same_pid_is_a_stranger(child: psutil.Process) -> None:
    info = {**identity(child), "since_boot": identity(child)["since_boot"] - 0.5}
    assert live_process(info) is None


def test_an_old_pid_file_is_compared_by_wall_clock_within_a_second(
    child: psutil.Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = {"pid": child.pid, "create_time": child.create_time()}  # before since_boot
    stepped_clock(monkeypatch, 1.0)
    assert live_process(old) is not None
    stepped_clock(monkeypatch, 5.0)
    assert live_process(old) is None


def test_dead_or_missing_is_none(child: psutil.Process) -> None:
    info = identity(child)
    child.kill()
    child.wait(10)
    assert live_process(info) is None
    assert live_process({"pid": "x", "create_time": 1.0}) is None
    assert live_process({}) is None
    assert procs.since_boot(child.pid) is None  # gone
    started = procs.since_boot(psutil.Process().pid)
    assert started is not None and 0 < started <= time.time() - psutil.boot_time() + 2
