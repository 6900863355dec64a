"""Peer heartbeats: a link that goes silent (blackholed) is noticed and dropped, then rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

from tests.chaos.proxy import ProxyThread
from tests.support import Herd, exchange_sync, free_ports, wait_until, write_topology


def link_out(folder: Path, node: str, peer: str) -> bool | None:
    try:
        status = json.loads((folder / "run" / f"{node}.status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return bool(status["links"][peer]["out"])


def test_blackholed_link_is_detected_and_rebuilt_after_heal(tmp_path: Path) -> None:
    a_port, b_port, b_real = free_ports(3)
    nodes = {
        "A": {"host": "127.0.0.1", "port": a_port},
        "B": {"host": "127.0.0.1", "port": b_port, "bind_port": b_real},  # behind the proxy
    }
    limits = {
        "peer_backoff_initial": 0.05,
        "peer_backoff_max": 0.5,
        "peer_heartbeat": 0.2,
        "peer_timeout": 1.0,
    }
    config = write_topology(
        tmp_path, ["A", "B"], [("A", "B")], extra={"nodes": nodes, "limits": limits}
    )
    with ProxyThread(b_real, port=b_port) as proxy, Herd(config) as herd:
        herd.nodes["B"].port = b_real  # the test itself talks to B directly
        herd.start()
        herd.wait_links_up()
        proxy.blackhole()
        # A's link into B carries nothing now: both ends must notice the silence.
        wait_until(lambda: link_out(tmp_path, "A", "B") is False, "A to drop its silent link")
        wait_until(lambda: "peer silent" in herd.nodes["B"].log_text(), "B to cut A's link")
        at = exchange_sync(a_port, b"IAMAT hb +1+1 1700000000\n")
        proxy.heal()
        wait_until(lambda: link_out(tmp_path, "A", "B") is True, "A's link to come back")
        wait_until(
            lambda: exchange_sync(b_real, b"WHATSAT hb 1 1\n").startswith(at),
            "B to catch up with the update made during the cut",
        )
    assert "LINK_DOWN peer=B reason=peer silent for 1s" in herd.nodes["A"].log_text()
