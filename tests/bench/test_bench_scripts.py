"""The bench scripts: hop_steps and polled_steps line a lone update's notes up into steps;
they, and in_process, run end to end; run.py keeps a partial run's results apart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

from hop_steps import Timeline, breakdown  # noqa: E402
from hops import CHAIN, TAP, Sample, topology  # noqa: E402
from polled_steps import breakdown as polled_breakdown  # noqa: E402

from node.config import parse_config  # noqa: E402
from node.peers import hold_back_when_from  # noqa: E402

US = 1000  # ns


def notes(*steps: tuple[int, str, str]) -> Timeline:
    return Timeline([list(step) for step in steps])


def chain_node(t: int, upstream_ping: bool, downstream: str) -> Timeline:
    """A node that reads at t+100 µs, journals, floods, and writes to `downstream` first."""
    ping = [(t + 50 * US, "read", "x"), (t + 55 * US, "read>", "x")] if upstream_ping else []
    return notes(
        *ping,
        (t + 100 * US, "read", "up"),
        (t + 130 * US, "journal<", ""),
        (t + 150 * US, "journal>", ""),
        (t + 153 * US, "flood", ""),
        (t + 160 * US, "send<", downstream),
        (t + 190 * US, "send>", downstream),
        (t + 200 * US, "read>", "up"),
    )


def test_no_node_of_the_chain_holds_its_copy_back_for_the_tap(tmp_path: Path) -> None:
    """The tap never relays: a copy held back for it would arrive HOLD_BACK late and the
    hop would measure the hold, not the node."""
    doc = topology(tmp_path, 9)
    config = parse_config(json.dumps(doc), tmp_path / "topology.json")
    for name in CHAIN:
        for sender, held_for in hold_back_when_from(config, name).items():
            assert TAP.encode() not in held_for, (name, sender)


def test_each_hop_is_cut_where_a_write_begins_and_a_ping_read_is_not_taken_for_the_record() -> None:
    sent = 1_000_000_000_000  # ns
    # H1 writes to H2 at sent+160 µs; H2 reads it at +260 µs even though H1's write only
    # returned at +190 µs; likewise H3 after H2.
    lines = {
        "H1": chain_node(sent, upstream_ping=False, downstream="H2"),
        "H2": chain_node(sent + 160 * US, upstream_ping=True, downstream="H3"),
        "H3": chain_node(sent + 320 * US, upstream_ping=False, downstream="Gauge"),
    }
    sample = Sample(sent / 1e9, sent / 1e9 + 0.0003, (0.0, 0.0, 0.0))
    found = breakdown([sample], lines)
    assert set(found) == {"client -> H1", "H1 -> H2", "H2 -> H3"}
    for hop in found.values():
        assert hop["wake and read: write to us begins -> data_received"] == [100 * US]
        assert hop["parse, check, apply"] == [30 * US]
        assert hop["journal write"] == [20 * US]
        assert hop["journal -> flood handed to links"] == [3 * US]
        assert hop["handed -> first flood write begins"] == [7 * US]
        assert hop["total: write to us begins -> ours to the next"] == [160 * US]
        assert hop["(after it: the rest of the read, log events)"] == [40 * US]


def test_a_node_that_never_journalled_the_update_ends_the_sample_there() -> None:
    sent = 2_000_000_000_000
    lines = {
        "H1": chain_node(sent, upstream_ping=False, downstream="H2"),
        "H2": notes((sent + 200 * US, "read", "H1"), (sent + 210 * US, "read>", "H1")),
        "H3": notes(),
    }
    found = breakdown([Sample(sent / 1e9, sent / 1e9, (0.0, 0.0, 0.0))], lines)
    assert "parse, check, apply" in found["client -> H1"]
    assert "parse, check, apply" not in found.get("H1 -> H2", {})


def bench_script(name: str, *args: str, timeout: float = 120) -> str:
    """Run bench/`name` with `args` as `make bench` would; what it printed, once it exited 0."""
    done = subprocess.run(
        [sys.executable, str(BENCH / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_bench_runs_end_to_end_on_real_nodes() -> None:
    """A smoke run, so `make bench` cannot break unseen: three traced nodes, five updates."""
    out = bench_script("hop_steps.py", "--samples", "5")
    for hop in ("client -> H1", "H1 -> H2", "H2 -> H3"):
        assert hop in out
    assert out.count("total: write to us begins") == 3, out


def test_the_in_process_bench_runs_every_path() -> None:
    """bench/in_process.py, a short pass: every figure printed, each a positive time."""
    out = bench_script("in_process.py", "--reads", "68", "--repeats", "1", timeout=60)
    rows = [line for line in out.splitlines() if "µs per read" in line]
    assert len(rows) == 5, out
    assert all(float(row.split("µs per read")[0].split()[-1]) > 0 for row in rows)


def test_a_partial_run_does_not_replace_the_full_runs_results(monkeypatch: Any) -> None:
    import run

    def json_for(*argv: str) -> Path:
        monkeypatch.setattr(sys, "argv", ["run.py", *argv])
        return Path(run.parse_args().json)

    assert json_for().name == "results.json"
    assert json_for("--rounds", "3").name == "results.json"
    assert json_for("--only", "latency").name == "results.partial.json"
    assert json_for("--quick").name == "results.partial.json"
    assert json_for("--only", "latency", "--json", "/tmp/x.json") == Path("/tmp/x.json")


def test_the_polled_path_follows_the_copy_that_reaches_hands_first() -> None:
    sent = 1_000_000_000_000

    def at(*steps: tuple[int, str, str]) -> Timeline:
        return notes(*((sent + us * US, step, detail) for us, step, detail in steps))

    lines = {
        "Welsh": at((20, "read", "client"), (50, "journal>", ""), (70, "send<", "Holiday")),
        "Holiday": at(
            (120, "read", "Welsh"),
            (150, "journal>", ""),
            (160, "send<", "Goloman"),
            (170, "send<", "Wilkes"),
        ),
        # Goloman was written to first but woke late: Wilkes's copy reaches Hands first.
        "Goloman": at((300, "read", "Holiday"), (330, "journal>", ""), (340, "send<", "Hands")),
        "Wilkes": at((200, "read", "Holiday"), (230, "journal>", ""), (240, "send<", "Hands")),
        # The polls read before the record, in its turn, are answered at the turn's end.
        "Hands": at(
            (250, "read", "client"),
            (260, "read>", "client"),
            (280, "read", "Wilkes"),
            (300, "journal>", ""),
            (320, "answer", "client"),
            (380, "read", "Goloman"),
        ),
    }
    found = polled_breakdown([(sent, sent + 90 * US, sent + 400 * US)], lines)
    us = {step: values[0] // US for step, values in found.items()}
    assert us["Holiday: journal -> its flood write on the path"] == 20
    assert us["Goloman/Wilkes: wakeup (upstream's write began -> read)"] == 30
    assert us["Hands: wakeup (upstream's write began -> read)"] == 40
    assert us["Hands: journal -> the turn's end answers the polls"] == 20
    assert us["Hands: polls answered -> the prober has the hit"] == 80
    assert us["total: IAMAT sent -> the prober has the hit"] == 400
    assert us["(the IAMAT's reply, at Welsh)"] == 90


def test_the_polled_steps_bench_runs_end_to_end_on_a_real_herd() -> None:
    out = bench_script("polled_steps.py", "--samples", "5")
    assert "total: IAMAT sent -> the prober has the hit" in out


def test_a_lost_measurement_is_described_not_a_crash() -> None:
    import run
    from figures import Measurement

    lost = {"latency_ms": {"p50": None, "p99": None}, "cpu_percent": None, "errors": 1}
    line = run.describe(Measurement("propagate_loaded", "ours", lost, 1.2, 40.0, 1.5))
    assert "p50       - ms" in line and "ERRORS 1" in line and "load gen -% cpu" in line


def test_sigterm_inside_a_measurement_cancels_it_instead_of_failing_a_transport() -> None:
    """uvloop takes an exception raised in a callback for that transport's failure and goes
    on; the handler cancels the measurement, and `main` exits with 128 + the signal."""
    import asyncio
    import os
    import signal

    import run

    from herdctl.loadgen.loop import run_sync

    async def measurement() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.sleep(30)

    before = signal.getsignal(signal.SIGTERM)
    run.TERMINATED.clear()
    try:
        run._stop_on_sigterm()
        with pytest.raises(asyncio.CancelledError):
            run_sync(measurement())
        assert run.TERMINATED == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)
        run.TERMINATED.clear()


def test_a_bench_run_measures_its_own_trees_node_here_and_in_what_it_starts() -> None:
    """`.venv`'s editable install points at the clone that made it; a bench script from a
    worktree must still import, and start, the worktree's node."""
    import os

    import systems

    import node

    assert str(systems.REPO) in sys.path
    assert Path(node.__file__).resolve().is_relative_to(systems.REPO)
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(systems.REPO)


@pytest.mark.parametrize("load", ["latency", "propagate", "propagate_loaded"])
def test_ab_measures_both_trees_and_removes_its_worktree(load: str) -> None:
    """bench/ab.py against HEAD, one short pair: every figure compared, no worktree left."""

    def worktrees() -> str:
        listed = subprocess.run(
            ["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True
        )
        return listed.stdout

    before = worktrees()
    out = bench_script("ab.py", "HEAD", "--load", load, "--pairs", "1", "--seconds", "0.3")
    compared = ["p50", "p99"]
    if not load.startswith("propagate"):
        compared += ["replies/s", "herd CPU per reply"]
    for figure in compared:
        assert f"{figure}: median ratio " in out, out
    assert worktrees() == before


def test_ab_sign_test_and_the_other_trees_environment(tmp_path: Path) -> None:
    from ab import at_least_by_luck
    from systems import tree_env

    assert at_least_by_luck(6, 6) == at_least_by_luck(0, 6) == 2 / 64
    assert at_least_by_luck(5, 6) == 2 * 7 / 64
    assert at_least_by_luck(3, 6) == at_least_by_luck(1, 2) == 1.0
    paths = tree_env(tmp_path)["PYTHONPATH"].split(":")
    assert paths[0] == str(tmp_path) and str(REPO) not in paths


def test_node_cpu_counts_the_floods_copies_per_update() -> None:
    """bench/node_cpu.py --copies, a short load: every update applied once at each of the
    four other nodes, and at least as many received as applied."""
    out = bench_script("node_cpu.py", "--load", "latency", "--seconds", "0.3", "--copies")
    totals = {
        line.split()[0]: float(line.rsplit("(all: ", 1)[1].rstrip(")"))
        for line in out.splitlines()
        if "per update:" in line
    }
    assert 3.9 <= totals["applied"] <= 4.0, out
    assert totals["received"] >= totals["applied"], out
    assert abs(totals["sent"] - totals["received"]) <= 0.02, out  # a copy may be on its way


def test_node_cpu_repeats_the_load_on_one_herd() -> None:
    """bench/node_cpu.py --repeat 2: two windows on the same herd, a line each, every node's
    CPU and wakeups per reply in both; --repeat with --links is refused with a reason."""
    out = bench_script("node_cpu.py", "--load", "latency", "--seconds", "0.3", "--repeat", "2")
    lines = [line for line in out.splitlines() if line.startswith("ours: latency ")]
    assert len(lines) == 2, out
    for line in lines:
        assert all(
            f"{name} " in line for name in ("Goloman", "Hands", "Holiday", "Welsh", "Wilkes")
        )
        assert line.count(" wakeups)") == 5, line
    refused = subprocess.run(
        [sys.executable, str(BENCH / "node_cpu.py"), "--repeat", "2", "--links"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert refused.returncode == 2 and "--repeat" in refused.stderr, refused.stderr


def test_node_cpu_sums_the_floods_lines_link_by_link() -> None:
    """bench/node_cpu.py --links, a short load: a row per link that carried lines, the
    herd's own five-node topology, and per update four applied (one at each other node) and
    as many received as applied, duplicates and older lines together."""
    out = bench_script("node_cpu.py", "--load", "latency", "--seconds", "0.3", "--links")
    rows = [line.split() for line in out.splitlines() if " <- " in line]
    assert ("Holiday", "<-", "Welsh") in {tuple(row[:3]) for row in rows}, out
    for row in rows:
        lines, applied, duplicates, older = (int(v.replace(",", "")) for v in row[3:7])
        assert lines == applied + duplicates + older and older >= 0, out
    summary = next(line for line in out.splitlines() if "per update:" in line).split()
    received, kept, copies, stale = (float(summary[i]) for i in (2, 4, 6, 8))
    assert 3.9 <= kept <= 4.0, out
    assert abs(received - (kept + copies + stale)) < 0.02, out


def test_the_minimal_herd_floods_an_iamat_to_every_node_and_keeps_the_newest(
    tmp_path: Path,
) -> None:
    """The propagation figures' floor is a herd: an IAMAT at Welsh is seen at Hands (three
    hops away) with the very AT line Welsh answered, and an older one does not replace it."""
    from systems import exchange, start_minimal_herd

    herd = start_minimal_herd(tmp_path, loop="asyncio")  # start waits until every pair floods
    try:
        welsh, hands = herd.address("Welsh"), herd.address("Hands")
        at = exchange(welsh, b"IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1700000000.5\n")
        assert at.startswith(b"AT Welsh +") and at.endswith(b" 1700000000.5\n"), at
        older = exchange(hands, b"IAMAT kiwi.cs.ucla.edu +1.0+1.0 1600000000.0\n")
        assert older.startswith(b"AT Hands ")
        deadline = time.monotonic() + 10
        while True:
            seen = exchange(hands, b"WHATSAT kiwi.cs.ucla.edu 10 5\n")
            if seen.startswith(at) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert seen == at + b'{"html_attributions":[],"results":[],"status":"ZERO_RESULTS"}\n\n'
        assert exchange(hands, b"WHATSAT nobody 10 5\n") == b"? WHATSAT nobody 10 5\n"
    finally:
        herd.stop()


def test_propagation_rows_take_their_minimal_column_from_the_minimal_herd() -> None:
    from figures import Measurement
    from report import MINIMAL, NODEJS, OURS, propagation_rows

    def m(figure: str, system: str, p50: float) -> Measurement:
        lat = {"p50": p50, "p90": p50, "p99": 2 * p50, "max": 3 * p50}
        result = {"latency_ms": lat, "requests": 10, "errors": 0}
        return Measurement(figure, system, result, 1.0, 1.0)

    ms = [
        m(fig, system, p50)
        for fig in ("propagate_idle", "propagate_loaded")
        for system, p50 in ((OURS, 0.5), (MINIMAL, 0.25), (NODEJS, 0.625))
    ]
    rows = {r.figure: r for r in propagation_rows(ms, 20_000)}
    assert rows["propagation W->H idle, p50"].minimal == "0.250 ms"
    assert rows["propagation idle p50: ours / minimal herd"].ratio == "2.00x"
    assert rows["propagation idle p50: ours / Node.js, each round"].ratio == "0.80"
    assert rows["propagation idle p50: ours / Node.js"].verdict == "PASS"
