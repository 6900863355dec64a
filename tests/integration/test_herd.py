"""A herd of five real node processes on real sockets, from a temp topology."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from zlib import crc32

import pytest

from node.__main__ import EXIT_CONFIG
from node.config import load_config
from node.entries import ENTRY_FORMAT
from node.journal import Journal
from node.store import ClientStore
from tests.support import NAMES, Herd, exchange_sync, port_open, wait_until, write_topology

UCLA = b"+34.068930-118.445127"
REPLAY_ENTRIES = 300_000


@pytest.fixture(scope="module")
def herd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herd]:
    """The five-node herd, up with every link; shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("herd")
    env = {k: v for k, v in os.environ.items() if k != "HERD_SECRET"}
    with Herd(write_topology(folder), env=env) as h:
        h.start()
        h.wait_links_up()
        yield h


def port(herd: Herd, name: str) -> int:
    return herd.nodes[name].port


def whatsat_at(
    herd: Herd, name: str, client: bytes, radius: bytes = b"10", bound: bytes = b"5"
) -> bytes:
    return exchange_sync(port(herd, name), b"WHATSAT %s %s %s\n" % (client, radius, bound))


def wait_for_record(herd: Herd, name: str, client: bytes, at_line: bytes) -> bytes:
    """Poll WHATSAT at `name` until it answers with `at_line`; returns the whole reply."""
    box: list[bytes] = []

    def seen() -> bool:
        reply = whatsat_at(herd, name, client)
        box[:] = [reply]
        return reply.startswith(at_line)

    wait_until(seen, f"{name} to hold {at_line!r}")
    return box[0]


def test_secret_file_shared_and_private(herd: Herd) -> None:
    secret = herd.config.parent / "run" / "herd.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_bytes().strip()) == 64
    for node in herd.nodes.values():
        assert secret.read_text().strip() not in node.log_text()


def test_status_files_show_every_link_up_and_synced(herd: Herd) -> None:
    for name in NAMES:
        path = herd.config.parent / "run" / f"{name}.status.json"

        def linked(path: Path = path) -> bool:
            try:
                links = json.loads(path.read_text())["links"]
            except (FileNotFoundError, json.JSONDecodeError):
                return False
            return all(v["out"] and v["in"] and v["synced"] for v in links.values())

        wait_until(linked, f"{name}'s status to show every link up and synced")
        status = json.loads(path.read_text())
        assert sorted(status["links"]) == herd.neighbours(name)
        assert status["pid"] == herd.nodes[name].proc.pid  # type: ignore[union-attr]


def test_iamat_at_welsh_answered_at_hands_with_welshs_line(herd: Herd) -> None:
    at = exchange_sync(
        port(herd, "Welsh"), b"IAMAT kiwi.cs.ucla.edu %s 1520023934.918963997\n" % UCLA
    )
    assert at.startswith(b"AT Welsh +")
    assert at.endswith(b" kiwi.cs.ucla.edu %s 1520023934.918963997\n" % UCLA)
    reply = wait_for_record(herd, "Hands", b"kiwi.cs.ucla.edu", at)
    body = reply[len(at) :]
    assert body.endswith(b"}\n\n") and b"\n\n" not in body[:-2]
    places = json.loads(body)
    assert places["status"] == "OK"
    assert 1 <= len(places["results"]) <= 5
    assert all(r["name"] for r in places["results"])


def test_every_node_converges_on_ties(herd: Herd) -> None:
    # Same client, same time, heard by two nodes at once: the greater server name wins
    # everywhere; at one node, the same time and server fall back to the location bytes.
    t = b"1600000000.5"
    exchange_sync(port(herd, "Hands"), b"IAMAT tie %s %s\n" % (b"+10+10", t))
    welsh = exchange_sync(port(herd, "Welsh"), b"IAMAT tie %s %s\n" % (b"+20+20", t))
    exchange_sync(port(herd, "Goloman"), b"IAMAT tie %s 1600000000.50\n" % b"+30+30")
    for name in NAMES:
        wait_for_record(herd, name, b"tie", welsh)
    a = exchange_sync(port(herd, "Wilkes"), b"IAMAT tie2 +1+1 7\nIAMAT tie2 +2+2 7.0\n")
    winner = a.splitlines(keepends=True)[1]  # "+2+2" > "+1+1"
    for name in NAMES:
        wait_for_record(herd, name, b"tie2", winner)


def test_forged_changeloc_from_a_client_is_refused(herd: Herd) -> None:
    forged = b"CHANGELOC mallory +1+1 9999999999 9999999999.000000000 Goloman"
    assert exchange_sync(port(herd, "Goloman"), forged + b"\n") == b"? " + forged + b"\n"
    hello = b"HELLO Hands Goloman " + b"a" * 32
    reply = exchange_sync(
        port(herd, "Goloman"), hello + b"\nAUTH " + b"f" * 64 + b"\n" + forged + b"\n"
    )
    assert reply.startswith(b"CHALLENGE Goloman ")
    assert reply.endswith(b"\n? AUTH " + b"f" * 64 + b"\n")  # cut off after the failed AUTH
    for name in NAMES:
        assert whatsat_at(herd, name, b"mallory") == b"? WHATSAT mallory 10 5\n"


def test_node_that_was_down_catches_up(herd: Herd) -> None:
    holiday = herd.nodes["Holiday"]
    assert holiday.stop() == 0
    # Welsh's only neighbour is Holiday: this update is stranded at Welsh until it is back.
    at = exchange_sync(port(herd, "Welsh"), b"IAMAT roamer +1.5-2.5 1700000000.123\n")
    assert at.startswith(b"AT Welsh ")
    assert whatsat_at(herd, "Hands", b"roamer").startswith(b"? ")
    holiday.start()
    holiday.wait_ready()
    wait_until(lambda: holiday.log_text().count(" START node=Holiday ") == 2, "Holiday's log")
    for name in NAMES:
        wait_for_record(herd, name, b"roamer", at)
    # And Holiday caught up on what happened before it went down, from each neighbour.
    assert whatsat_at(herd, "Holiday", b"kiwi.cs.ucla.edu").startswith(b"AT Welsh ")
    log = holiday.log_text()
    restarted_at = log.rindex(" START node=Holiday ")
    for peer in herd.neighbours("Holiday"):
        mark = f" PEER_SYNCED peer={peer} "
        wait_until(
            lambda mark=mark: mark in holiday.log_text()[restarted_at:],  # type: ignore[misc]
            f"Holiday to log its sync from {peer}",
        )


def run_node(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_sigterm_exits_zero_and_logs(tmp_path: Path) -> None:
    config = write_topology(tmp_path, ["Solo"], [])
    with Herd(config) as h:
        h.start()
        assert h.nodes["Solo"].stop(signal.SIGTERM) == 0
        log = h.nodes["Solo"].log_text()
    assert " START node=Solo " in log and " STOPPED node=Solo" in log


async def write_journal(folder: Path, clients: int) -> None:
    """A journal of one record for each of `clients` clients, as a node writes it."""
    journal = Journal(folder, fsync="no")
    journal.open(ClientStore())
    for start in range(0, clients, 10_000):
        bodies = [
            b"c%d %s 1700000000.5 1700000000.600000000 Solo" % (i, UCLA)
            for i in range(start, min(clients, start + 10_000))
        ]
        journal.write([ENTRY_FORMAT % (crc32(body), body) for body in bodies])
    await journal.close()


def test_sigterm_while_starting_still_stops_in_order(tmp_path: Path) -> None:
    """A stop signal that comes during the journal's replay, before the port opens (a
    supervisor stopping a node it has just started), ends the node once it has started:
    exit 0 and its log whole, not the default action's death by signal."""
    config = write_topology(tmp_path, ["Solo"], [])
    asyncio.run(write_journal(load_config(config).data_dir / "Solo", REPLAY_ENTRIES))
    with Herd(config) as h:
        node = h.nodes["Solo"]
        node.start()
        wait_until(node.log_path.exists, "the node to open its log")
        assert not port_open(node.port), "the replay ended too soon to signal during it"
        assert node.stop(signal.SIGTERM) == 0
        log = node.log_text()
    assert f"clients={REPLAY_ENTRIES}" in log, log[-2000:]
    assert " STOPPED node=Solo" in log


def test_unknown_name_is_one_clear_message(tmp_path: Path) -> None:
    config = write_topology(tmp_path, ["Solo"], [])
    result = run_node("Nobody", "-c", str(config))
    assert result.returncode == EXIT_CONFIG
    assert "unknown node 'Nobody'" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_names_the_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        config = write_topology(tmp_path, ["Solo"], [], ports={"Solo": taken})
        result = run_node("Solo", "-c", str(config))
    assert result.returncode == EXIT_CONFIG
    assert f"port {taken}" in result.stderr and "in use" in result.stderr
    assert f"held by pid {os.getpid()}" in result.stderr
    assert "Traceback" not in result.stderr
    # The port is taken before the journal is read: however long a replay would be, a port
    # in use is told at once.
    (log,) = tmp_path.glob("**/Solo.log")
    text = log.read_text()
    assert "START_FAILED node=Solo" in text and "JOURNAL_REPLAY" not in text


@pytest.mark.parametrize("folder", ["log_dir", "run_dir"])
def test_a_folder_it_cannot_make_is_one_line_and_78(tmp_path: Path, folder: str) -> None:
    """As under systemd's ProtectSystem=strict when the folder was not made beforehand: a
    status that tells systemd (and herdctl) not to retry, not a traceback."""
    config = write_topology(tmp_path, ["Solo"], [], extra={folder: "topology.yaml/below"})
    result = run_node("Solo", "-c", str(config))
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert result.stderr == (
        f"node Solo: cannot make folder {tmp_path / 'topology.yaml' / 'below'}: Not a directory\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nodes: {A: {port: 1}}\nlinks: [[A, B]]\n", "unknown node 'B'"),
        ("nodes: {A: {port: 1}}\nlinks: [[A, A]]\n", "links[0]"),
        ("nodes: {A: {port: 70000}}\n", "70000"),
        ("nodes: {A: {port: 1}, B: {port: 1}}\n", "127.0.0.1:1"),
        ("nodes: {A: {port: 1}}\ncolour: red\n", "colour"),
        ("nodes: {A: {port: 1}\n", "topology.yaml"),
    ],
)
def test_bad_topology_gives_its_message(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    result = run_node("A", "-c", str(path))
    assert result.returncode == EXIT_CONFIG
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_from_env_and_missing_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node", "A"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HERD_CONFIG": str(tmp_path / "no.yaml")},
    )
    assert result.returncode == EXIT_CONFIG
    assert "no.yaml" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_acknowledged_update_survives_sigkill_of_a_lone_node(tmp_path: Path, fsync: str) -> None:
    config = write_topology(tmp_path, ["Solo"], [], extra={"journal": {"fsync": fsync}})
    with Herd(config) as h:
        h.start()
        solo = h.nodes["Solo"]
        lines = b"".join(b"IAMAT c%d +1+1 %d\n" % (i, 1700000000 + i) for i in range(500))
        acks = exchange_sync(solo.port, lines).splitlines(keepends=True)
        assert len(acks) == 500
        solo.stop(signal.SIGKILL)  # no chance to flush anything it had not already written
        solo.start()
        solo.wait_ready()
        for i in (0, 250, 499):
            reply = exchange_sync(solo.port, b"WHATSAT c%d 1 1\n" % i)
            assert reply.startswith(acks[i]), reply[:200]
    assert " JOURNAL_REPLAY " in h.nodes["Solo"].log_text()
    assert (tmp_path / "data" / "Solo").is_dir()
