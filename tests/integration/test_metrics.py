"""Prometheus metrics scraped over HTTP from five real nodes, parsed with prometheus_client's
own parsers, and held to the traffic the test sent."""

from __future__ import annotations

import gzip
import os
import socket
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from node.__main__ import EXIT_CONFIG
from node.scheduling import LinuxKernel
from tests.support import (
    DEADLINE,
    NAMES,
    Herd,
    NodeProcess,
    exchange_sync,
    free_ports,
    wait_until,
    write_topology,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
UCLA = b"+34.068930-118.445127"


def with_metrics(folder: Path) -> tuple[Path, dict[str, int]]:
    """The five-node topology with a metrics_port for every node."""
    config = write_topology(folder)
    doc = yaml.safe_load(config.read_text())
    ports = dict(zip(NAMES, free_ports(len(NAMES)), strict=True))
    for name, spec in doc["nodes"].items():
        spec["metrics_port"] = ports[name]
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config, ports


@pytest.fixture(scope="module")
def herd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Herd, dict[str, int]]]:
    config, ports = with_metrics(tmp_path_factory.mktemp("metrics"))
    env = {k: v for k, v in os.environ.items() if k != "HERD_SECRET"}
    with Herd(config, env=env) as h:
        h.start()
        h.wait_links_up()
        yield h, ports


def fetch(port: int, headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=DEADLINE) as reply:
        return reply.read(), {k.lower(): v for k, v in reply.headers.items()}


def scrape(port: int) -> Samples:
    """Every sample of one node's /metrics, by (name, labels)."""
    body, headers = fetch(port)
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def has_at_least(port: int, name: str, least: float, **labels: str) -> bool:
    return scrape(port).get((name, frozenset(labels.items())), 0) >= least


def test_counts_follow_the_traffic(herd: tuple[Herd, dict[str, int]]) -> None:
    h, metrics = herd
    welsh, hands = h.nodes["Welsh"].port, h.nodes["Hands"].port
    before = scrape(metrics["Welsh"])
    # Five IAMATs in one read: three new clients, an older time for one (stale), a newer
    # time for another (kept).
    lines = [
        b"IAMAT m-a %s 1700000010.0" % UCLA,
        b"IAMAT m-b %s 1700000010.0" % UCLA,
        b"IAMAT m-c %s 1700000010.0" % UCLA,
        b"IAMAT m-a %s 1700000005.0" % UCLA,
        b"IAMAT m-b %s 1700000020.0" % UCLA,
    ]
    replies = exchange_sync(welsh, b"\n".join(lines) + b"\n")
    assert replies.count(b"AT Welsh") == 5
    after = scrape(metrics["Welsh"])

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - before.get((name, frozenset(labels.items())), 0)

    assert grew("herd_requests_total", kind="IAMAT", outcome="kept") == 4
    assert grew("herd_requests_total", kind="IAMAT", outcome="stale") == 1
    assert grew("herd_reply_latency_seconds_count", kind="IAMAT") == 5
    assert grew("herd_records_sent_total", peer="Holiday") == 4  # Welsh's only neighbour
    assert grew("herd_journal_writes_total") >= 1
    assert grew("herd_journal_written_bytes_total") > 4 * len(b"m-a " + UCLA)

    # Every node comes to hold the three clients; Holiday got four records from Welsh.
    for name in NAMES:
        wait_until(partial(has_at_least, metrics[name], "herd_client_records", 3), name)
    holiday = scrape(metrics["Holiday"])
    assert value(holiday, "herd_records_received_total", peer="Welsh") >= 4
    assert value(holiday, "herd_records_applied_total", peer="Welsh") >= 4

    # WHATSATs and lines that are not requests, at Hands.
    before = scrape(metrics["Hands"])
    assert exchange_sync(hands, b"WHATSAT m-a 10 2\n").startswith(b"AT Welsh")
    exchange_sync(hands, b"WHATSAT m-nobody 10 2\nIAMAT m-x nowhere 1\nhello there\n")
    after = scrape(metrics["Hands"])
    assert grew("herd_requests_total", kind="WHATSAT", outcome="answered") == 1
    assert grew("herd_requests_total", kind="WHATSAT", outcome="unknown_client") == 1
    assert grew("herd_requests_total", kind="IAMAT", outcome="invalid") == 1
    assert grew("herd_requests_total", kind="other", outcome="invalid") == 1
    assert grew("herd_places_queries_total", provider="offline", outcome="OK") == 1
    assert grew("herd_places_query_seconds_count", provider="offline") == 1
    assert grew("herd_reply_latency_seconds_count", kind="WHATSAT") == 1


def _quiet_slice() -> float:
    """The slice an idle node runs on: 300 µs on Linux 6.12+, else the kernel's own (0)."""
    try:
        return 0.0003 if LinuxKernel().slice_ns() else 0.0
    except OSError:
        return 0.0


QUIET_SLICE = _quiet_slice()


def test_links_and_the_process_are_seen(herd: tuple[Herd, dict[str, int]]) -> None:
    h, metrics = herd
    for name in NAMES:
        samples = scrape(metrics[name])
        for peer in h.neighbours(name):
            assert value(samples, "herd_peer_link_up", peer=peer, direction="out") == 1
            link_in = partial(has_at_least, metrics[name], "herd_peer_link_up", 1, peer=peer)
            wait_until(partial(link_in, direction="in"), f"{peer}'s link into {name}")
            assert value(samples, "herd_syncs_sent_total", peer=peer) >= 1
        assert value(samples, "herd_node_info", node=name, places="offline") == 1
        assert value(samples, "herd_journal_failing") == 0
        # Quiet: the short slice where the kernel gives one (node.scheduling), else none.
        assert value(samples, "herd_cpu_slice_seconds") == pytest.approx(QUIET_SLICE)
        assert value(samples, "herd_cpu_slice_changes_total") == 0
        assert value(samples, "process_resident_memory_bytes") > 10 * 2**20
        assert value(samples, "process_open_fds") > 5
        assert value(samples, "process_cpu_seconds_total") > 0


def test_openmetrics_and_gzip_are_negotiated(herd: tuple[Herd, dict[str, int]]) -> None:
    _, metrics = herd
    port = metrics["Goloman"]
    body, headers = fetch(port, {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    families = openmetrics_families(body.decode())  # type: ignore[no-untyped-call]
    names = {family.name for family in families}
    assert {"herd_requests", "herd_reply_latency_seconds", "herd_peer_link_up"} <= names
    body, headers = fetch(port, {"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip"
    assert b"herd_client_records" in gzip.decompress(body)


def test_idle_scrape_connections_do_not_hold_the_node(herd: tuple[Herd, dict[str, int]]) -> None:
    h, metrics = herd
    idle = [socket.create_connection(("127.0.0.1", metrics["Wilkes"])) for _ in range(20)]
    try:
        reply = exchange_sync(h.nodes["Wilkes"].port, b"IAMAT m-idle %s 1700000000.5\n" % UCLA)
        assert reply.startswith(b"AT Wilkes")
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: b"herd_client_records" in fetch(metrics["Wilkes"])[0], "a scrape")


def test_a_metrics_port_in_use_is_named_and_fatal(tmp_path: Path) -> None:
    config, metrics = with_metrics(tmp_path)
    holder = socket.socket()
    holder.bind(("127.0.0.1", metrics["Welsh"]))
    holder.listen()
    try:
        port = yaml.safe_load(config.read_text())["nodes"]["Welsh"]["port"]
        node = NodeProcess("Welsh", config, port)
        node.start()
        assert node.proc is not None
        assert node.proc.wait(DEADLINE) == EXIT_CONFIG
        err = node.proc.stderr.read().decode() if node.proc.stderr else ""
        assert f"metrics_port {metrics['Welsh']} on 127.0.0.1 is already in use" in err
        assert "START_FAILED" in node.log_text()
        node.stop()
    finally:
        holder.close()
