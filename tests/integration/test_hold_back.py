"""Holding back a copy between two neighbours of the sender, on real nodes: the pair's
second copy is spared, and a held copy still goes when the other member never gets the
update from the sender."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import yaml

from tests.integration.test_metrics import has_at_least, scrape, value
from tests.support import Herd, NodeProcess, exchange_sync, free_ports, wait_until, write_topology

UCLA = b"+34.068930-118.445127"
# Alpha sorts before Bravo: relaying what Sierra sent, Alpha holds its copy to Bravo back.
NAMES = ("Alpha", "Bravo", "Sierra")
TRIANGLE = [("Alpha", "Bravo"), ("Alpha", "Sierra"), ("Bravo", "Sierra")]


def triangle(folder: Path, links: list[tuple[str, str]], ports: dict[str, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = write_topology(folder, NAMES, links, ports=ports)
    doc = yaml.safe_load(config.read_text())
    for i, spec in enumerate(doc["nodes"].values()):
        spec["metrics_port"] = ports[f"metrics{i}"]
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config


def ports_for_three() -> dict[str, int]:
    numbers = free_ports(6)
    return {
        **dict(zip(NAMES, numbers[:3], strict=True)),
        "metrics0": numbers[3],
        "metrics1": numbers[4],
        "metrics2": numbers[5],
    }


def metrics_port(config: Path, name: str) -> int:
    return int(yaml.safe_load(config.read_text())["nodes"][name]["metrics_port"])


def env() -> dict[str, str]:
    """One secret for every node, whichever topology file it reads."""
    return {**os.environ, "HERD_SECRET": "hold-back-test-secret-0123456789abcdef"}


def at(node: NodeProcess, client: bytes) -> bool:
    reply = exchange_sync(node.port, b"WHATSAT %s 1 1\n" % client)
    return reply.startswith(b"AT ")


def test_the_second_copy_across_a_pair_is_spared(tmp_path: Path) -> None:
    ports = ports_for_three()
    config = triangle(tmp_path, TRIANGLE, ports)
    with Herd(config, env=env()) as herd:
        herd.start()
        herd.wait_links_up()
        clients = [b"hb-%d" % i for i in range(20)]
        for client in clients:  # one at a time: each finds the herd idle
            exchange_sync(herd.nodes["Sierra"].port, b"IAMAT %s %s 1700000000.5\n" % (client, UCLA))
            wait_until(partial(at, herd.nodes["Bravo"], client), "the update at Bravo")
        alpha = metrics_port(config, "Alpha")
        wait_until(
            partial(has_at_least, alpha, "herd_records_spared_total", 1, peer="Bravo"),
            "a copy to Bravo spared",
        )
        samples = scrape(alpha)
        spared = value(samples, "herd_records_spared_total", peer="Bravo")
        sent = value(samples, "herd_records_sent_total", peer="Bravo")
        assert spared + sent <= len(clients)  # each record held back, then spared or sent
        # Bravo sorts after Alpha: it sends its copy on at once, never holding back.
        bravo = scrape(metrics_port(config, "Bravo"))
        assert value(bravo, "herd_records_spared_total", peer="Alpha") == 0
        assert value(bravo, "herd_records_sent_total", peer="Alpha") >= 1


def test_a_held_copy_goes_when_the_other_never_hears_from_the_sender(tmp_path: Path) -> None:
    """Sierra's own topology has no link to Bravo, so Bravo hears of Sierra's updates only
    through Alpha, which still takes Bravo and Sierra for neighbours and holds its copy back."""
    ports = ports_for_three()
    shared = triangle(tmp_path / "shared", TRIANGLE, ports)
    sierra_only = triangle(tmp_path / "sierra", [("Alpha", "Bravo"), ("Alpha", "Sierra")], ports)
    with Herd(shared, env=env()) as herd:
        herd.nodes["Sierra"] = NodeProcess("Sierra", sierra_only, ports["Sierra"], env())
        herd.start()
        herd.wait_links_up("Alpha")
        client = b"hb-lonely"
        exchange_sync(herd.nodes["Sierra"].port, b"IAMAT %s %s 1700000000.5\n" % (client, UCLA))
        wait_until(partial(at, herd.nodes["Bravo"], client), "the update at Bravo, via Alpha")
        alpha = scrape(metrics_port(shared, "Alpha"))
        assert value(alpha, "herd_records_sent_total", peer="Bravo") >= 1
        assert value(alpha, "herd_records_spared_total", peer="Bravo") == 0
