"""The herd on five "machines" (network namespaces on a bridge), one node and one herdctl each.

Partitions come from the network: an interface taken down, packets dropped one way. Every
test ends with every node holding every acknowledged update. Root only: skipped, with the
reason, where namespaces cannot be made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Report
from tests.multihost.lab import Lab, netem_missing, nft_missing, run, unavailable
from tests.support import DEADLINE, LINKS, NAMES

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=unavailable() or "")

# Quick to notice a dead link and to come back, as a test wants (the defaults are 1 s
# heartbeats, 10 s timeout, up to 5 s between retries).
LIMITS = {
    "peer_heartbeat": 0.3,
    "peer_timeout": 1.5,
    "peer_backoff_initial": 0.05,
    "peer_backoff_max": 0.5,
}
UCLA = "+34.068930-118.445127"


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> float:
    """Poll until `predicate` holds; the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), NAMES) as lab:
        lab.write_topology(LINKS, LIMITS)
        for name in NAMES:  # each machine starts its own node with its own herdctl
            done = lab.herdctl(name, "up")
            assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        wait_for(lambda: all(all_links_up(lab, name) for name in NAMES), "every link up")
        yield lab


def all_links_up(lab: Lab, name: str) -> bool:
    row = lab.status(name)[name]
    return bool(row["ready"]) and row["links_up"] == row["links_expected"]


def everyone_holds(lab: Lab, count: int) -> bool:
    return all((lab.clients(name) or 0) >= count for name in NAMES)


def iamat(lab: Lab, at: str, client: str, sent: float) -> None:
    """An IAMAT at node `at`, sent from its own machine; it must be acknowledged."""
    reply = lab.send(at, at, f"IAMAT {client} {UCLA} {sent:.9f}")
    assert reply.startswith(f"AT {at} "), reply


def seen_at(lab: Lab, node: str, client: str) -> str:
    """Node `node`'s AT line for `client` (a WHATSAT from its own machine), or ""."""
    done = lab.herdctl(node, "send", node, f"WHATSAT {client} 1 1")
    return done.stdout.splitlines()[0] if done.returncode == 0 else ""


def test_each_machine_runs_its_node_and_sees_the_others_as_remote(lab: Lab) -> None:
    for name in NAMES:
        rows = lab.status(name)
        assert rows[name]["state"] == "RUNNING" and rows[name]["local"]
        for other in NAMES:
            if other != name:
                assert rows[other]["state"] == "REMOTE", (name, rows[other])
                assert rows[other]["host"] == lab.hosts[other].address
    # Nothing is spawned for another machine's node.
    done = lab.herdctl("Welsh", "start", "Hands")
    assert done.returncode != 0 and "not this machine" in done.stderr


def test_an_update_at_welsh_reaches_hands_across_hosts(lab: Lab) -> None:
    iamat(lab, "Welsh", "mh-across", time.time())
    wait_for(lambda: seen_at(lab, "Hands", "mh-across").startswith("AT Welsh "), "Hands")


def test_a_remote_node_that_stops_is_shown_down_then_catches_up(lab: Lab) -> None:
    assert lab.herdctl("Hands", "stop", "Hands").returncode == 0
    wait_for(lambda: lab.status("Welsh")["Hands"]["state"] == "REMOTE_DOWN", "Hands shown down")
    shown = lab.herdctl("Welsh", "status")
    assert shown.returncode == 0, shown.stderr  # another machine's node: not our exit status
    assert "REMOTE_DOWN" in shown.stdout
    iamat(lab, "Welsh", "mh-while-down", time.time())  # Hands is down: it must catch up
    assert lab.herdctl("Hands", "start", "Hands").returncode == 0
    wait_for(lambda: lab.status("Welsh")["Hands"]["state"] == "REMOTE", "Hands shown up")
    wait_for(lambda: seen_at(lab, "Hands", "mh-while-down") != "", "Hands caught up")


def test_rolling_restart_on_one_machine(lab: Lab) -> None:
    done = lab.herdctl("Goloman", "restart", "--rolling", "all")
    assert done.returncode == 0, done.stderr
    assert "Goloman: caught up" in done.stdout
    wait_for(lambda: all_links_up(lab, "Goloman"), "Goloman's links")


def test_a_partition_by_the_network_heals_without_losing_an_update(
    lab: Lab, figures: Report
) -> None:
    before = min(lab.clients(name) or 0 for name in NAMES)
    lab.link_down("Holiday")  # Welsh's only neighbour: Welsh is cut off with it
    try:
        sent = time.time()
        for i in range(10):
            iamat(lab, "Welsh", f"mh-cut-w{i}", sent)  # acknowledged, cannot leave Welsh
            iamat(lab, "Hands", f"mh-cut-h{i}", sent)
        wait_for(lambda: (lab.clients("Goloman") or 0) >= before + 10, "Hands' side")
        assert seen_at(lab, "Goloman", "mh-cut-w0") == ""  # Welsh's side is cut off
        assert seen_at(lab, "Welsh", "mh-cut-h0") == ""
    finally:
        lab.link_up("Holiday")
    took = wait_for(lambda: everyone_holds(lab, before + 20), "every node to converge")
    for name in NAMES:
        assert seen_at(lab, name, "mh-cut-w9").startswith("AT Welsh ")
        assert seen_at(lab, name, "mh-cut-h9").startswith("AT Hands ")
    figures(acked=20, lost=0, converged_after_heal_s=f"{took:.2f}")


@pytest.mark.skipif(bool(nft_missing()), reason=nft_missing() or "")
def test_one_way_loss_on_a_link_still_converges(lab: Lab, figures: Report) -> None:
    before = min(lab.clients(name) or 0 for name in NAMES)
    lab.drop("Holiday", 30)  # 30 % of what Holiday sends is lost; what it receives is not
    try:
        started = time.monotonic()
        for i in range(20):
            iamat(lab, "Welsh", f"mh-loss-{i}", time.time())
        sent = time.monotonic() - started
        took = wait_for(lambda: everyone_holds(lab, before + 20), "convergence under loss")
        figures(
            updates=20,
            loss_out_of_holiday="30%",
            sending_s=f"{sent:.2f}",
            everywhere_after_last_s=f"{took:.2f}",
        )
    finally:
        lab.heal_drop("Holiday")


@pytest.mark.skipif(bool(netem_missing()), reason=netem_missing() or "")
def test_a_slow_link_still_converges(lab: Lab, figures: Report) -> None:
    before = min(lab.clients(name) or 0 for name in NAMES)
    lab.delay("Welsh", 200)
    try:
        iamat(lab, "Welsh", "mh-slow", time.time())
        took = wait_for(lambda: everyone_holds(lab, before + 1), "convergence over a slow link")
        assert took >= 0.2  # the 200 ms are really there
        figures(delay_ms=200, everywhere_after_s=f"{took:.2f}")
    finally:
        lab.run_in(lab.hosts["Welsh"], ["tc", "qdisc", "del", "dev", "eth0", "root"])


def test_the_lab_leaves_nothing_behind(tmp_path: Path) -> None:
    with Lab(tmp_path, ["A"]) as lab:
        names = [lab.switch, lab.hosts["A"].netns]
    listed = run(["ip", "netns", "list"])
    assert not any(name in listed for name in names)
