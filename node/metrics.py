"""A node's Prometheus metrics: a prometheus_client collector over the node's own counts.

Nothing is added to the request path for metrics: `NodeCollector.collect` reads
`node.counters` (bumped where the events already happen), the store, the links and the
journal at scrape time, on the event loop's thread. Names follow Prometheus' rules:
`herd_` prefix, base units (seconds, bytes), `_total` for counters. The process' own
RSS, CPU time and fds come from prometheus_client's ProcessCollector (`process_...`).

Imported on the first scrape only (prometheus_client costs 40+ ms to import, which a node's
start must not pay); `node.metrics_http` serves what `render` gives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Protocol

from prometheus_client import ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from node.counters import Histogram, JournalTally, NodeCounters
from node.status import LinkStatus


class Observed(Protocol):
    """What the collector reads of a node (`NodeServer` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def counters(self) -> NodeCounters: ...

    @property
    def store(self) -> Sized: ...

    @property
    def connections(self) -> Sized: ...

    @property
    def started_at(self) -> float: ...

    @property
    def places_name(self) -> str: ...

    @property
    def journal_tally(self) -> JournalTally: ...

    def journal_error(self) -> str | None: ...

    def link_status(self) -> dict[str, LinkStatus]: ...


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Cumulative buckets as the exposition wants them: ("0.001", n), ..., ("+Inf", count)."""
    return [
        ("+Inf" if bound == float("inf") else repr(bound), float(n))
        for bound, n in histogram.cumulative()
    ]


class NodeCollector(Collector):
    """Every herd_ metric of one node, read at scrape time."""

    def __init__(self, node: Observed) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        yield from self._identity(node)
        yield from self._requests(node.counters)
        yield from self._connections(node)
        yield from self._links(node)
        yield from self._journal(node)
        yield from self._places(node.counters)
        yield from self._scheduling(node.counters)

    def _identity(self, node: Observed) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "herd_node_info", "This node: its name and places provider.", labels=["node", "places"]
        )
        info.add_metric([node.name, node.places_name], 1)
        yield info
        yield GaugeMetricFamily(
            "herd_node_start_time_seconds", "When the node started, POSIX time.", node.started_at
        )
        yield GaugeMetricFamily(
            "herd_client_records", "Client locations this node holds.", len(node.store)
        )

    def _requests(self, counters: NodeCounters) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "herd_requests",
            "Client lines answered (IAMAT refused: the journal failed, no reply), by the line's"
            " first word and what became of it.",
            labels=["kind", "outcome"],
        )
        requests.add_metric(["IAMAT", "kept"], counters.iamat_kept)
        requests.add_metric(["IAMAT", "stale"], counters.iamat_stale)
        requests.add_metric(["IAMAT", "refused"], counters.iamat_refused)
        for (kind, outcome), n in sorted(counters.requests.items()):
            requests.add_metric([kind, outcome], n)
        yield requests
        latency = HistogramMetricFamily(
            "herd_reply_latency_seconds",
            "From the read a request came in to its reply (IAMAT: per line, a read's lines"
            " together; WHATSAT: including the places query).",
            labels=["kind"],
        )
        for kind, histogram in counters.reply_latency.items():
            latency.add_metric([kind], _buckets(histogram), histogram.total)
        yield latency

    def _connections(self, node: Observed) -> Iterator[Metric]:
        counters = node.counters
        yield GaugeMetricFamily(
            "herd_connections_open", "Client connections open now.", len(node.connections)
        )
        for name, value, text in (
            ("accepted", counters.conns_accepted, "Connections accepted (neighbours' included)."),
            ("refused", counters.conns_refused, "Connections refused over a client cap."),
            ("cut", counters.conns_cut, "Connections dropped by the node (deadline, idle, ...)."),
        ):
            yield CounterMetricFamily(f"herd_connections_{name}", text, value)

    def _links(self, node: Observed) -> Iterator[Metric]:
        status = node.link_status()
        tallies = node.counters.peers
        up = GaugeMetricFamily(
            "herd_peer_link_up",
            "1 while the link is up: out, ours to the neighbour; in, the neighbour's to us.",
            labels=["peer", "direction"],
        )
        synced = GaugeMetricFamily(
            "herd_peer_synced",
            "1 once the neighbour sent its whole state on its link.",
            labels=["peer"],
        )
        buffered = GaugeMetricFamily(
            "herd_peer_buffered_bytes",
            "Bytes written to the neighbour not yet sent.",
            labels=["peer"],
        )
        for peer, link in sorted(status.items()):
            up.add_metric([peer, "out"], int(link["out"]))
            up.add_metric([peer, "in"], int(link["in"]))
            synced.add_metric([peer], int(link["synced"]))
            buffered.add_metric([peer], link["buffered"])
        yield from (up, synced, buffered)
        for field, name, text in (
            ("records_sent", "herd_records_sent", "Records flooded to the neighbour."),
            (
                "records_spared",
                "herd_records_spared",
                "Records held back from it and not sent: it sent them to us first.",
            ),
            ("records_received", "herd_records_received", "CHANGELOC records from it."),
            ("records_applied", "herd_records_applied", "... newer than ours: applied."),
            ("records_duplicate", "herd_records_duplicate", "... that we held already."),
            ("syncs_sent", "herd_syncs_sent", "Whole states sent to it (once per link up)."),
            ("sync_records_sent", "herd_sync_records_sent", "Records in those whole states."),
            ("syncs_received", "herd_syncs_received", "Whole states it finished sending us."),
            ("link_downs", "herd_peer_link_downs", "Times our link to it went down."),
        ):
            family = CounterMetricFamily(name, text, labels=["peer"])
            for peer, tally in sorted(tallies.items()):
                family.add_metric([peer], getattr(tally, field))
            yield family

    def _journal(self, node: Observed) -> Iterator[Metric]:
        tally = node.journal_tally
        for name, value, text in (
            ("herd_journal_writes", tally.writes, "Batches written whole to the journal."),
            ("herd_journal_written_bytes", tally.bytes_written, "Bytes written to the journal."),
            ("herd_journal_write_failures", tally.write_failures, "Batches the journal refused."),
            ("herd_journal_fsync_failures", tally.fsync_failures, "Background fsyncs that failed."),
            ("herd_journal_compactions", tally.compactions, "Snapshots written."),
            ("herd_journal_compaction_failures", tally.compaction_failures, "Snapshots failed."),
        ):
            yield CounterMetricFamily(name, text, value)
        fsync = HistogramMetricFamily("herd_journal_fsync_seconds", "Each journal fsync.")
        fsync.add_metric([], _buckets(tally.fsync_latency), tally.fsync_latency.total)
        yield fsync
        yield GaugeMetricFamily(
            "herd_journal_failing",
            "1 while the journal refuses writes (IAMATs get no reply, links pause).",
            int(node.journal_error() is not None),
        )

    def _places(self, counters: NodeCounters) -> Iterator[Metric]:
        queries = CounterMetricFamily(
            "herd_places_queries",
            "Places queries by provider and outcome (Google's status, or EXCEPTION).",
            labels=["provider", "outcome"],
        )
        seconds = HistogramMetricFamily(
            "herd_places_query_seconds", "Each places query.", labels=["provider"]
        )
        for provider, tally in sorted(counters.places.items()):
            for outcome, n in sorted(tally.outcomes.items()):
                queries.add_metric([provider, outcome], n)
            seconds.add_metric([provider], _buckets(tally.latency), tally.latency.total)
        yield from (queries, seconds)

    def _scheduling(self, counters: NodeCounters) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "herd_cpu_slice_seconds",
            "The CPU slice the node asked the kernel for: short while quiet, 0 when it runs"
            " on the kernel's own (busy, or the kernel cannot give one).",
            counters.cpu_slice_ns / 1e9,
        )
        yield CounterMetricFamily(
            "herd_cpu_slice_changes",
            "Switches between the quiet slice and the kernel's own.",
            counters.cpu_slice_changes,
        )


def registry_for(node: Observed) -> CollectorRegistry:
    """A registry of this node's metrics and its process' (RSS, CPU, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The exposition the scraper asked for (`Accept`: OpenMetrics or text 0.0.4), and its
    content type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
