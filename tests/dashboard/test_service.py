"""The supervisor's side: the site started, reported, moved and stopped (on reload too), and a
taken port that never takes the supervisor down. A manager on fakes; real sockets."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from herdctl.control import Progress
from herdctl.dashboard.service import DashboardService, url_for, why_not
from herdctl.manager import Manager
from herdctl.messages import Answer
from herdctl.reload import Reloader
from herdctl.topology import Owned
from node.config import DashboardConfig, parse_config
from tests.herdctl.test_supervisor import (
    FAKE_TOPOLOGY,
    FakeClock,
    FakeLauncher,
    fake_manager,
    no_progress,
)

PATH = Path("/tmp/hdfake/topology.yaml")


def manager_on_fakes(log: list[str]) -> Manager:
    config = parse_config(FAKE_TOPOLOGY, PATH)
    clock = FakeClock()
    return fake_manager(config, FakeLauncher(config, clock), clock, log)


async def refuse(raw: object, progress: Progress) -> Answer:
    raise AssertionError("no request expected")


async def fetch(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


async def test_serves_reports_and_stops() -> None:
    log: list[str] = []
    service = DashboardService(manager_on_fakes(log), refuse, log=log.append)
    assert service.info() == {"url": None, "error": None}
    assert await service.apply(None) is None
    line = await service.apply(DashboardConfig("127.0.0.1", 0))
    url = service.info()["url"]
    assert url is not None and line == f"dashboard: {url}"
    root, token = url.removesuffix(f"{service.token}/"), service.token
    assert root.startswith("http://127.0.0.1:") and root.endswith("/") and len(token) >= 32
    assert log[-1].startswith(f"DASHBOARD_START url={root}TOKEN/ bind=127.0.0.1:")
    assert token not in log[-1]  # the log may be pasted somewhere
    assert await fetch(f"{url}api/state") == 200
    assert await fetch(f"{root}api/state") == 404  # without the token
    assert await service.apply(DashboardConfig("127.0.0.1", 0)) is None  # unchanged
    assert await service.apply(None) == "dashboard: stopped"
    assert service.info() == {"url": None, "error": None}
    assert log[-1] == f"DASHBOARD_STOP url={root}TOKEN/"
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch(f"{url}api/state")


async def test_a_taken_port_is_reported_and_tried_again(taken: int) -> None:
    log: list[str] = []
    service = DashboardService(manager_on_fakes(log), refuse, log=log.append)
    wanted = DashboardConfig("127.0.0.1", taken)
    line = await service.apply(wanted)
    error = f"port {taken} on 127.0.0.1 is already in use"
    assert line == f"dashboard: not served: {error}"
    assert service.info() == {"url": None, "error": error}
    assert log == [f"DASHBOARD_ERROR host=127.0.0.1 port={taken} error={error}"]
    assert await service.apply(wanted) == f"dashboard: not served: {error}"  # tried again
    await service.stop()


async def test_reload_starts_moves_and_stops_it_without_touching_a_node() -> None:
    log: list[str] = []
    manager = manager_on_fakes(log)
    await manager.handle({"cmd": "start", "names": ["all"]}, no_progress)
    pids = {name: slot.proc.pid for name, slot in manager.slots.items() if slot.proc}
    service = DashboardService(manager, refuse, log=log.append)
    owned = Owned(FAKE_TOPOLOGY, manager.config)
    reloader = Reloader(
        manager, owned, save=lambda o: None, retune=lambda new: service.apply(new.dashboard)
    )
    said: list[str] = []

    async def progress(text: str) -> None:
        said.append(text)

    async def reload(text: str) -> Answer:
        said.clear()
        return await reloader.handle({"cmd": "reload", "text": text}, progress)

    answer = await reload(FAKE_TOPOLOGY + "dashboard: {port: 0}\n")
    first = service.info()["url"]
    assert answer["changes"] == ["dashboard changed"] and answer["touched"] == []
    assert said == ["change: dashboard changed", f"dashboard: {first}"]
    await reload(FAKE_TOPOLOGY + "dashboard: {host: 127.0.0.1, port: 0}\n")  # the same
    assert said == []
    await reload(FAKE_TOPOLOGY + "dashboard: {host: localhost, port: 0}\n")
    moved = service.info()["url"]
    assert moved is not None and moved.startswith("http://localhost:")
    assert said[-1] == f"dashboard: {moved} (moved)"
    await reload(FAKE_TOPOLOGY)
    assert said[-1] == "dashboard: stopped" and service.info()["url"] is None
    assert {name: slot.proc.pid for name, slot in manager.slots.items() if slot.proc} == pids


def test_url_for_a_browser() -> None:
    assert url_for("127.0.0.1", 8) == "http://127.0.0.1:8/"
    assert url_for("0.0.0.0", 8) == "http://127.0.0.1:8/"
    assert url_for("::", 8) == "http://[::1]:8/"
    assert url_for("fe80::1", 8) == "http://[fe80::1]:8/"
    assert url_for("localhost", 8) == "http://localhost:8/"


def test_why_not() -> None:
    import errno

    assert why_not(OSError(errno.EADDRINUSE, "x"), "h", 1) == "port 1 on h is already in use"
    assert why_not(OSError(errno.EADDRNOTAVAIL, "x"), "10.9.9.9", 1) == (
        "10.9.9.9 is not an address of this machine (port 1)"
    )
    assert why_not(OSError(errno.EACCES, "Permission denied"), "h", 80) == (
        "cannot listen on h port 80: Permission denied"
    )
