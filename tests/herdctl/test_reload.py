"""herdctl.reload on the fake launcher and clock: what a reload stops, starts and restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from herdctl.manager import Manager
from herdctl.messages import RequestError
from herdctl.policy import PolicyConfig
from herdctl.reload import Reloader
from herdctl.topology import Owned
from node.config import parse_config
from tests.herdctl.test_supervisor import FAKE_TOPOLOGY, FakeClock, FakeLauncher

PATH = Path("/tmp/hdfake/topology.yaml")


class Herd:
    """A manager on fakes behind a Reloader, every node started; what progress said."""

    def __init__(self) -> None:
        owned = Owned(FAKE_TOPOLOGY, parse_config(FAKE_TOPOLOGY, PATH))
        self.clock = FakeClock()
        self.launcher = FakeLauncher(owned.config, self.clock)
        self.manager = Manager(
            owned.config,
            self.launcher,
            clock=self.clock,
            wall=self.clock.wall,
            sleep=self.clock.sleep,
            policy=PolicyConfig(startretries=0),
            catchup_timeout=5.0,
        )
        self.saved: list[Owned] = []
        self.reloader = Reloader(self.manager, owned, save=self.save, clock=self.clock)
        self.said: list[str] = []

    def save(self, owned: Owned) -> None:
        self.saved.append(owned)
        self.launcher.config = owned.config

    async def progress(self, text: str) -> None:
        self.said.append(text)

    async def reload(self, text: str) -> dict[str, object]:
        answer = await self.reloader.handle({"cmd": "reload", "text": text}, self.progress)
        return dict(answer)


@pytest.fixture
async def herd() -> Herd:
    herd = Herd()
    await herd.manager.handle({"cmd": "start", "names": ["all"]}, herd.progress)
    return herd


async def test_ping_carries_the_owned_text(herd: Herd) -> None:
    answer = await herd.reloader.handle({"cmd": "ping"}, herd.progress)
    assert answer["topology"] == FAKE_TOPOLOGY


async def test_an_invalid_text_changes_nothing(herd: Herd) -> None:
    before = dict(herd.launcher.current)
    with pytest.raises(RequestError, match=r"links\[0\]: unknown node 'Q'.*; nothing changed"):
        await herd.reload(FAKE_TOPOLOGY.replace("[A, B]", "[A, Q]"))
    with pytest.raises(RequestError, match="run_dir cannot change"):
        await herd.reload(FAKE_TOPOLOGY + "run_dir: elsewhere\n")
    assert herd.launcher.current == before and herd.saved == []


async def test_added_removed_and_relinked_nodes(herd: Herd) -> None:
    pids = {name: proc.pid for name, proc in herd.launcher.current.items()}
    text = FAKE_TOPOLOGY.replace("  A: {port: 12000}\n", "  D: {port: 12005}\n")
    text = text.replace("[A, B], ", "").replace("[C, R]", "[C, R], [C, D]")
    answer = await herd.reload(text)
    assert answer["failed"] == [] and answer["touched"] == ["D", "B", "C"]
    assert herd.said == [
        "change: node D added",
        "change: node A removed",
        "change: link [C, D] added",
        "change: link [A, B] removed",
        "A: stopped (removed from the topology)",
        "D: added, starting",
        "B: restarting (links -A)",
        "B: restarted, caught up in 0.0s",
        "C: restarting (links +D)",
        "C: restarted, caught up in 0.0s",
        "D: started, caught up in 0.0s",
    ]
    assert not herd.launcher.alive("A") and "A" not in herd.manager.slots
    assert list(herd.manager.slots) == ["D", "B", "C", "R"]
    assert herd.launcher.current["B"].pid != pids["B"] and herd.launcher.alive("D")
    assert herd.saved[-1].text == text and herd.reloader.owned.text == text


async def test_a_stopped_node_stays_stopped_and_a_failed_one_is_named(herd: Herd) -> None:
    await herd.manager.stop(["A"])
    herd.launcher.spawn_error = OSError("no more processes")
    answer = await herd.reload(FAKE_TOPOLOGY.replace("12000", "12010").replace("12002", "12012"))
    assert answer["failed"] == ["B", "C"]
    assert "A: stopped by hand, left stopped (port 12000 -> 12010)" in herd.said
    assert herd.manager.slots["A"].spec.port == 12010
    assert any(line.startswith("B: FAILED: B did not start again") for line in herd.said)
