"""herdctl.bench against a real two-node herd and an in-test fake node; `herdctl bench` itself."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from herdctl import bench
from herdctl.loadgen.meter import percentiles
from tests.herdctl_cli import herdctl, no_traceback, short_tempdir
from tests.support import Herd, free_ports, write_topology

FAST = {"journal": {"fsync": "no"}}
LOAD_COLUMNS = ["REQUESTS", "REPLIES", "ERRORS", "REPLIES/S"]
LOAD_COLUMNS += ["P50(ms)", "P90(ms)", "P99(ms)", "MAX(ms)"]


@pytest.fixture(scope="module")
def herd() -> Iterator[Herd]:
    """Nodes A and B, linked, journals without fsync: one herd for the whole module."""
    folder = short_tempdir()
    try:
        with Herd(write_topology(folder, ["A", "B"], [("A", "B")], extra=FAST)) as running:
            running.start()
            running.wait_links_up()
            yield running
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def address(herd: Herd, name: str) -> tuple[str, int]:
    return ("127.0.0.1", herd.nodes[name].port)


def assert_sane(result: bench.LoadResult) -> None:
    lat = result.latency_ms
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat
    assert result.throughput == pytest.approx(result.replies / result.duration_s, rel=1e-3)
    assert 0 <= result.cpu_percent < 400
    json.dumps(result.as_dict(), allow_nan=False)


# --- run_load against a real node ------------------------------------------------------------


async def test_closed_loop_iamat_measures_replies_and_latency(herd: Herd) -> None:
    result = await bench.run_load(
        [address(herd, "A")], conns=8, pipeline=16, duration=1.0, warmup=0.3
    )
    assert result.mode == "iamat"
    assert result.replies > 0
    assert result.errors == 0
    assert result.requests == result.replies  # every request of the window was answered
    assert result.duration_s == pytest.approx(1.0, abs=0.01)
    assert result.extra["closed_loop"] is True
    assert_sane(result)


@pytest.mark.parametrize("mode", ["whatsat", "mixed"])
async def test_whatsat_replies_are_framed_whole(herd: Herd, mode: str) -> None:
    target = [address(herd, "A")]
    result = await bench.run_load(
        target, mode=mode, conns=4, pipeline=8, duration=0.5, clients=200, warmup=0.2
    )
    assert result.replies > 0
    assert result.errors == 0
    assert result.replies == result.requests
    assert_sane(result)


async def test_open_loop_honours_the_rate(herd: Herd) -> None:
    result = await bench.run_load(
        [address(herd, "A"), address(herd, "B")], conns=4, rate=500, duration=1.0, warmup=0.2
    )
    assert 350 <= result.replies <= 650, result
    assert result.errors == 0
    assert result.extra["closed_loop"] is False
    assert result.extra["pipeline"] is None
    assert_sane(result)


async def test_propagate_times_every_sample(herd: Herd) -> None:
    result = await bench.run_propagate(address(herd, "A"), address(herd, "B"), samples=20)
    assert result.mode == "propagate"
    assert (result.requests, result.replies, result.errors) == (20, 20, 0)
    assert result.extra["poll_interval_us"] > 0
    assert result.extra["polls"] >= 20 * bench.POLL_DEPTH
    assert result.extra["background"] is None
    lat = result.latency_ms
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]


async def test_propagate_under_background_load(herd: Herd) -> None:
    result = await bench.run_propagate(
        address(herd, "A"), address(herd, "B"), samples=10, background_rate=1000
    )
    assert (result.replies, result.errors) == (10, 0)
    background = result.extra["background"]
    assert background["replies"] > 0
    assert background["errors"] == 0
    assert background["targets"] == [f"127.0.0.1:{herd.nodes['A'].port}"]


async def test_an_unreachable_target_is_one_bench_error() -> None:
    (port,) = free_ports(1)
    with pytest.raises(bench.BenchError) as caught:
        await bench.run_load([("127.0.0.1", port)], conns=2, duration=0.2)
    assert caught.value.address == ("127.0.0.1", port)
    assert caught.value.reason == "connection refused"


def test_uvloop_is_used_when_installed(herd: Herd) -> None:
    pytest.importorskip("uvloop")
    run = bench.run_load([address(herd, "A")], conns=2, pipeline=4, duration=0.2, warmup=0.1)
    result = bench.run_sync(run, "uvloop")
    assert result.extra["loop"] == "uvloop"
    assert result.replies > 0


def test_plain_asyncio_can_be_chosen() -> None:
    assert bench.loop_factory("asyncio")[0] == "asyncio"


# --- framing and error counting against a fake node ------------------------------------------

JSON = b'{\n   "html_attributions" : [],\n   "results" : [],\n   "status" : "ZERO_RESULTS"\n}'


async def fake_node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """IAMAT fails for clients ending in 3, WHATSAT for those ending in 7; replies trickle
    out in 5-byte writes so that framing must cope with replies split anywhere."""
    while line := await reader.readline():
        words = line.split()
        if words[0] == b"IAMAT" and not words[1].endswith(b"3"):
            reply = b"AT Fake +0.000000001 " + b" ".join(words[1:]) + b"\n"
        elif words[0] == b"WHATSAT" and not words[1].endswith(b"7"):
            reply = b"AT Fake +0.000000001 " + words[1] + b" +1+1 1.0\n" + JSON + b"\n\n"
        else:
            reply = b"? " + line.rstrip(b"\n") + b"\n"
        for i in range(0, len(reply), 5):
            writer.write(reply[i : i + 5])
        await writer.drain()
    writer.close()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[str, int]]:
    server = await asyncio.start_server(fake_node, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[:2]


@pytest.mark.parametrize("mode", ["iamat", "whatsat", "mixed"])
async def test_error_replies_are_counted_and_framing_holds(
    fake: tuple[str, int], mode: str
) -> None:
    result = await bench.run_load(
        [fake], mode=mode, conns=2, pipeline=4, duration=0.5, clients=100, warmup=0.1
    )
    assert result.requests == result.replies + result.errors
    assert result.extra["unanswered"] == 0
    assert result.errors == result.extra["error_replies"]
    if mode != "mixed":  # one client in ten fails; in mixed, IAMATs only
        assert 0.05 < result.errors / result.requests < 0.15, result
    assert result.errors > 0


async def forgetful_node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Knows no client, ever: every WHATSAT is `? ...`."""
    while line := await reader.readline():
        writer.write(b"? " + line)
    writer.close()


async def test_propagate_gives_up_when_nothing_arrives(fake: tuple[str, int]) -> None:
    server = await asyncio.start_server(forgetful_node, "127.0.0.1", 0)
    async with server:
        dest = server.sockets[0].getsockname()[:2]
        result = await bench.run_propagate(fake, dest, samples=20, timeout=0.2)
    assert (result.requests, result.replies, result.errors) == (3, 0, 3)
    assert result.extra["timeouts"] == 3
    assert result.extra["stopped_early"] == "3 samples in a row unseen after 0.2s"
    assert "stopped early: 3 samples in a row" in bench.summary(result)


def test_percentiles_are_nearest_rank_over_weights() -> None:
    values = [0.001 * i for i in range(1, 101)]
    expected = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert percentiles(values, [1] * 100) == expected
    assert percentiles([0.002, 0.001], [1, 99])["p99"] == 1.0
    assert all(math.isnan(v) for v in percentiles([], []).values())


def test_progress_bar() -> None:
    assert bench.progress_bar(1.25, 5.0, 1234, "replies", width=8) == (
        "[##......] 1.2/5.0s  1,234 replies"
    )
    assert bench.progress_bar(0.5, 10, 5, "samples", width=4) == "[##..] 5/10  5 samples"


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_json(herd: Herd) -> None:
    args = ("bench", "--target", "A", "--duration", "0.5", "--conns", "4", "--pipeline", "8")
    result = herdctl(*args, "--json", config=herd.config)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    data = json.loads(result.stdout)
    assert data["mode"] == "iamat"
    assert data["replies"] > 0
    assert data["errors"] == 0
    assert set(data["latency_ms"]) == {"p50", "p90", "p99", "max"}


def test_cli_table(herd: Herd) -> None:
    args = ("bench", "--target", "A", "--target", "B", "--duration", "0.3", "--conns", "2")
    result = herdctl(*args, config=herd.config)
    assert result.returncode == 0, result.stderr
    head, columns, row = result.stdout.splitlines()[:3]
    assert head.startswith("iamat -> A (127.0.0.1:")
    assert ", B (127.0.0.1:" in head
    assert columns.split() == [*LOAD_COLUMNS, "GEN", "CPU%"]
    assert len(row.split()) == 9


def test_cli_propagate(herd: Herd) -> None:
    args = ("bench", "--mode", "propagate", "--from", "A", "--to", "B", "--samples", "5")
    result = herdctl(*args, "--json", config=herd.config)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["mode"], data["replies"], data["errors"]) == ("propagate", 5, 0)


def test_cli_unreachable_node_is_one_message() -> None:
    folder = short_tempdir()
    try:
        (port,) = free_ports(1)
        config = write_topology(folder, ["X"], [], ports={"X": port})
        result = herdctl("bench", "--target", "X", "--duration", "0.2", config=config)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == f"herdctl: cannot reach X at 127.0.0.1:{port}: connection refused\n"
        no_traceback(result)
        unknown = herdctl("bench", "--target", "Nope", config=config)
        assert unknown.returncode == 2
        assert "Nope" in unknown.stderr and "known: X" in unknown.stderr
        no_traceback(unknown)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
