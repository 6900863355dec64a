"""The dashboard's routes on aiohttp's test client, over a supervisor's manager on fakes
(tests.herdctl.test_supervisor) and, for the probe, fake nodes that flood with a delay."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from herdctl.control import Progress
from herdctl.dashboard import access
from herdctl.dashboard.app import make_app
from herdctl.manager import Manager
from herdctl.messages import Answer
from node.config import HerdConfig, parse_config
from tests.herdctl.test_supervisor import FakeClock, FakeLauncher, fake_manager, no_progress

TOKEN = "test-token-0123456789"
HOP_DELAY = 0.03  # seconds: how long a fake node takes to flood a record to a neighbour
DEADLINE = 10.0


class FakeNodes:
    """Line servers for A - B - C that answer IAMAT with an AT line and WHATSAT with `?`
    until the record has reached them, HOP_DELAY per link from where it was sent."""

    def __init__(self) -> None:
        self.servers: dict[str, asyncio.Server] = {}
        self.known: dict[str, set[bytes]] = {"A": set(), "B": set(), "C": set()}
        self.order = ["A", "B", "C"]

    async def start(self) -> dict[str, int]:
        for name in self.order:
            self.servers[name] = await asyncio.start_server(
                functools.partial(self.serve, name), "127.0.0.1", 0
            )
        return {n: s.sockets[0].getsockname()[1] for n, s in self.servers.items()}

    async def flood(self, source: str, client: bytes) -> None:
        start = self.order.index(source)
        for name in self.order:
            hops = abs(self.order.index(name) - start)
            if hops:
                asyncio.get_running_loop().call_later(
                    HOP_DELAY * hops, self.known[name].add, client
                )

    async def serve(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while line := await reader.readline():
                words = line.split()
                if words[0] == b"IAMAT":
                    self.known[name].add(words[1])
                    await self.flood(name, words[1])
                    writer.write(b"AT %s +0.0 %s\n" % (name.encode(), b" ".join(words[1:])))
                elif words[0] == b"WHATSAT" and words[1] in self.known[name]:
                    writer.write(b"AT %s +0.0 %s loc 1.0\n{}\n\n" % (name.encode(), words[1]))
                else:
                    writer.write(b"? " + line)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


@dataclass
class Board:
    """The app's world: its test client, the manager, what reached the control handler."""

    client: TestClient[Any, Any]
    manager: Manager
    config: HerdConfig
    calls: list[dict[str, object]] = field(default_factory=list)


def topology(ports: Mapping[str, int]) -> str:
    nodes = "\n".join(f"  {name}: {{port: {port}}}" for name, port in ports.items())
    return f"nodes:\n{nodes}\nlinks: [[A, B], [B, C]]\n"


@contextlib.asynccontextmanager
async def open_board(tmp_path: Path, every: float = 0.2) -> AsyncIterator[Board]:
    """The app on fake nodes A - B - C, every node started; a state event each `every` s."""
    nodes = FakeNodes()
    ports = await nodes.start()
    config = parse_config(topology(ports), tmp_path / "topology.yaml")
    config.log_dir.mkdir()
    clock = FakeClock()
    launcher = FakeLauncher(config, clock)
    manager = fake_manager(config, launcher, clock, [])
    await manager.handle({"cmd": "start", "names": ["all"]}, no_progress)
    calls: list[dict[str, object]] = []

    async def handle(raw: Mapping[str, object], progress: Progress) -> Answer:
        calls.append(dict(raw))
        return await manager.handle(raw, progress)

    app = make_app(manager, handle, TOKEN, tick=0.02, every=every)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Board(client, manager, config, calls)
    finally:
        await client.close()
        nodes.close()


@pytest.fixture
async def board(tmp_path: Path) -> AsyncIterator[Board]:
    async with open_board(tmp_path) as board:
        yield board


def at(path: str) -> str:
    """`path` under the token, where the dashboard lives."""
    return f"/{TOKEN}/{path}"


def with_token(**more: str) -> dict[str, str]:
    return {access.HEADER: TOKEN, **more}


async def events(response: ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """The (event, data) pairs of a server-sent event stream, as they come."""
    name, data = "", ""
    while True:
        line = (await asyncio.wait_for(response.content.readline(), DEADLINE)).decode()
        if not line:
            return
        line = line.rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and name:
            yield name, json.loads(data)
            name, data = "", ""


async def test_everything_lives_under_the_token(board: Board) -> None:
    client = board.client
    bare = await client.get("/")
    assert bare.status == 403 and "herdctl dashboard" in await bare.text()
    for path in ("/wrong/", "/wrong/api/state", "/wrong/static/dashboard.js", "/api/state"):
        assert (await client.get(path)).status == 404, path
    moved = await client.get(f"/{TOKEN}", allow_redirects=False)
    assert moved.status == 303 and moved.headers["Location"] == f"/{TOKEN}/"
    page = await client.get(at(""))
    assert page.status == 200
    text = await page.text()
    assert f'<meta name="herd-token" content="{TOKEN}">' in text
    assert 'src="static/dashboard.js"' in text  # relative: under the token too
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    script = await client.get(at("static/dashboard.js"))
    assert script.status == 200 and "EventSource" in await script.text()
    assert (await client.get(at("static/index.html"))).status == 404  # only the two files
    assert (await client.get(at("static/..%2f..%2faccess.py"))).status == 404


async def test_state_has_the_topology(board: Board) -> None:
    response = await board.client.get(at("api/state"))
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    state = await response.json()
    assert [n["name"] for n in state["nodes"]] == ["A", "B", "C"]
    a = state["nodes"][0]
    assert a["port"] == board.config.nodes["A"].port and a["state"] == "STARTING"
    assert a["pid"] == board.manager.slots["A"].proc.pid  # type: ignore[union-attr]
    assert {"uptime", "restarts", "connections", "clients", "rates", "x", "y"} <= set(a)
    assert [(link["a"], link["b"], link["state"]) for link in state["links"]] == [
        ("A", "B", "up"),
        ("B", "C", "up"),
    ]


async def test_the_stream_sends_state_then_new_log_lines(board: Board) -> None:
    log = board.config.log_dir / "B.log"
    log.write_text("2026-12-04T08:00:00.000000Z OLD line\n")
    response = await board.client.get(at("api/events"))
    assert response.headers["Content-Type"] == "text/event-stream"
    stream = events(response)
    name, state = await anext(stream)
    assert name == "state" and len(state["nodes"]) == 3
    name, history = await anext(stream)
    assert name == "log" and history["entries"][-1]["text"].endswith("OLD line")
    with open(log, "a") as f:
        f.write("2026-12-04T08:00:01.000000Z NEW line\n")
    seen_state = False
    async for name, data in stream:
        seen_state = seen_state or name == "state"
        if name == "log" and any(e["text"].endswith("NEW line") for e in data["entries"]):
            assert data["entries"][-1]["source"] == "B"
            break
    response.close()


async def test_a_kill_is_sent_at_once_not_at_the_next_minute(tmp_path: Path) -> None:
    async with open_board(tmp_path, every=60.0) as board:
        response = await board.client.get(at("api/events"))
        stream = events(response)
        name, data = await anext(stream)
        assert name == "state" and data["nodes"][1]["health"] == "pending"
        board.manager.slots["B"].proc.die(-9)  # type: ignore[union-attr]
        board.manager.step()  # the monitor notices
        async for name, data in stream:  # each read has a deadline far below a minute
            b = data["nodes"][1] if name == "state" else {}
            if b.get("health") == "down":
                assert (b["state"], b["pid"]) == ("BACKOFF", None)
                break
        response.close()


async def test_logs_endpoint(board: Board) -> None:
    (board.config.log_dir / "A.log").write_text(
        "".join(f"2026-12-04T08:00:{i:02d}.000000Z A{i}\n" for i in range(5))
    )
    (board.config.log_dir / "herdctl.log").write_text("2026-12-04T08:00:02.500000Z SUP\n")
    response = await board.client.get(at("api/logs"), params={"n": "3"})
    entries = (await response.json())["entries"]
    assert [(e["source"], e["text"].split()[1]) for e in entries] == [
        ("herdctl", "SUP"),
        ("A", "A3"),
        ("A", "A4"),
    ]
    bad = await board.client.get(at("api/logs"), params={"n": "x"})
    assert bad.status == 400


async def test_buttons_go_through_the_control_handler(board: Board) -> None:
    client = board.client
    response = await client.post(at("api/nodes/B/stop"), headers=with_token())
    assert response.status == 200 and (await response.json())["ok"] is True
    assert board.calls == [{"cmd": "stop", "names": ["B"]}]  # what `herdctl stop B` sends
    assert str(board.manager.slots["B"].policy.state) == "STOPPED"
    await client.post(at("api/nodes/B/start"), headers=with_token())
    await client.post(at("api/nodes/C/restart"), headers=with_token())
    assert board.calls[1:] == [
        {"cmd": "start", "names": ["B"]},
        {"cmd": "restart", "names": ["C"], "rolling": False},
    ]
    assert str(board.manager.slots["B"].policy.state) == "STARTING"


async def test_a_change_without_the_header_or_from_another_site_is_refused(board: Board) -> None:
    client = board.client
    bare = await client.post(at("api/nodes/B/stop"))  # the address alone is not enough
    assert bare.status == 403 and "X-Herd-Token" in (await bare.json())["error"]
    wrong = await client.post(at("api/nodes/B/stop"), headers={access.HEADER: "guess"})
    assert wrong.status == 403
    elsewhere = await client.post("/guess/api/nodes/B/stop", headers=with_token())
    assert elsewhere.status == 404
    evil = await client.post(
        at("api/nodes/B/stop"), headers=with_token(Origin="http://evil.example")
    )
    assert evil.status == 403 and "cross-site" in (await evil.json())["error"]
    probe = await client.post(at("api/probe"), json={"source": "A"})
    assert probe.status == 403
    assert board.calls == []
    assert str(board.manager.slots["B"].policy.state) == "STARTING"
    host = f"{client.host}:{client.port}"
    same = await client.post(at("api/nodes/B/stop"), headers=with_token(Origin=f"http://{host}"))
    assert same.status == 200


async def test_unknown_nodes_and_actions(board: Board) -> None:
    client = board.client
    assert (await client.post(at("api/nodes/Q/stop"), headers=with_token())).status == 404
    assert (await client.post(at("api/nodes/all/stop"), headers=with_token())).status == 404
    assert (await client.post(at("api/nodes/B/shutdown"), headers=with_token())).status == 404
    assert board.calls == []


async def test_the_probe_times_each_node(board: Board) -> None:
    response = await board.client.get(at("api/events"))
    stream = events(response)
    probe = await board.client.post(at("api/probe"), json={"source": "A"}, headers=with_token())
    assert probe.status == 200
    result = await probe.json()
    nodes = result["nodes"]
    assert result["source"] == "A" and result["client"].startswith("herd-probe-")
    assert [nodes[n]["hops"] for n in "ABC"] == [0, 1, 2]
    assert all(nodes[n]["error"] is None for n in "ABC")
    assert HOP_DELAY * 1000 <= nodes["B"]["ms"] < nodes["C"]["ms"]
    assert nodes["C"]["ms"] >= 2 * HOP_DELAY * 1000
    assert result["all_ms"] == nodes["C"]["ms"]
    async for name, data in stream:  # every open page is shown the result
        if name == "probe":
            assert data["client"] == result["client"]
            break
    response.close()


async def test_a_probe_from_a_node_that_does_not_answer(board: Board) -> None:
    client = board.client
    bad = await client.post(at("api/probe"), json={"source": "Q"}, headers=with_token())
    assert bad.status == 400
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    text = topology({"A": port, "B": board.config.nodes["B"].port, "C": 1})
    board.manager.config = parse_config(text, board.config.path)
    refused = await client.post(at("api/probe"), json={"source": "A"}, headers=with_token())
    assert refused.status == 409
    assert "cannot reach A: connection refused" in (await refused.json())["error"]
