"""What a node counts for its metrics: plain integers, bumped where the event already is.

Nothing here formats, exports or locks: `node.metrics` reads these at scrape time (on the
event loop's thread, so every read sees whole batches). The hot paths add per batch, not per
line, where they can: one commit of a read's 64 IAMATs is three additions and one
histogram step. Pure: no I/O, no clock (callers pass the durations).
"""

from __future__ import annotations

from bisect import bisect_left

# Seconds: from 100 µs (an IAMAT answered in the read's own turn) to 10 s (a slow places
# query under its timeout). Prometheus' `le` buckets, each counting what is <= its bound.
LATENCY_BOUNDS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# The first word of a client line, as requests are counted by kind; anything else is "other".
REQUEST_KINDS = ("IAMAT", "WHATSAT", "HELLO", "AUTH")


class Histogram:
    """Observations of a duration in fixed buckets: one bisect and two additions each."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf only)
        self.total = 0.0  # sum of the observed seconds

    def observe(self, seconds: float, times: int = 1) -> None:
        """`times` observations of `seconds` each (a batch answered at once)."""
        self.counts[bisect_left(self.bounds, seconds)] += times
        self.total += seconds * times

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) per bucket, ending with (inf, count)."""
        running, out = 0, []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class PeerTally:
    """One neighbour's counts, both directions; kept for the node's life, whatever becomes
    of the links (a counter must never go back)."""

    __slots__ = (
        "link_downs",
        "records_applied",
        "records_duplicate",
        "records_received",
        "records_sent",
        "records_spared",
        "sync_records_sent",
        "syncs_received",
        "syncs_sent",
    )

    def __init__(self) -> None:
        self.records_sent = 0  # records flooded to it (syncs apart)
        self.records_spared = 0  # held back from it, then not sent: it sent them to us first
        self.records_received = 0  # CHANGELOC lines it sent us
        self.records_applied = 0  # ... newer than what we held
        self.records_duplicate = 0  # ... that we held exactly already
        self.syncs_sent = 0  # whole states streamed to it (once per link up)
        self.sync_records_sent = 0
        self.syncs_received = 0  # SYNCED lines from it: it had sent us its whole state
        self.link_downs = 0  # our link to it went down after being up


class PlacesTally:
    """A places provider's queries by outcome (Google's `status`, or `EXCEPTION`), and how
    long they took."""

    __slots__ = ("latency", "outcomes")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.latency = Histogram()

    def record(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.latency.observe(seconds)


class JournalTally:
    """The journal's writes, fsyncs and compactions, and their failures."""

    __slots__ = (
        "bytes_written",
        "compaction_failures",
        "compactions",
        "fsync_failures",
        "fsync_latency",
        "write_failures",
        "writes",
    )

    def __init__(self) -> None:
        self.writes = 0  # batches written whole
        self.bytes_written = 0
        self.write_failures = 0  # batches refused (nothing of them acknowledged)
        self.fsync_latency = Histogram()  # each fsync, `always`'s inline or `everysec`'s
        self.fsync_failures = 0
        self.compactions = 0
        self.compaction_failures = 0


class NodeCounters:
    """Everything a node counts, from its start; `node.metrics` exports it."""

    __slots__ = (
        "conns_accepted",
        "conns_cut",
        "conns_refused",
        "cpu_slice_changes",
        "cpu_slice_ns",
        "iamat_kept",
        "iamat_refused",
        "iamat_stale",
        "peers",
        "places",
        "reply_latency",
        "requests",
    )

    def __init__(self) -> None:
        self.iamat_kept = 0  # newer than what we held: journalled and flooded
        self.iamat_stale = 0  # answered, but older than (or equal to) what we held
        self.iamat_refused = 0  # the journal refused them: no reply
        # (kind, outcome) -> count, for the lines that are not IAMATs taken in a batch:
        # WHATSAT answered / unknown_client, HELLO and AUTH answered / failed, and
        # (REQUEST_KINDS or "other", "invalid") for a line that is not a request, and
        # ("other", "too_long") for one over max_line_bytes.
        self.requests: dict[tuple[str, str], int] = {}
        self.conns_accepted = 0  # client connections taken (neighbours' too, until AUTH)
        self.conns_refused = 0  # over a client cap
        self.conns_cut = 0  # dropped by us: deadlines, idle, a refusing journal, shutdown
        self.reply_latency = {"IAMAT": Histogram(), "WHATSAT": Histogram()}
        self.peers: dict[str, PeerTally] = {}
        self.places: dict[str, PlacesTally] = {}
        self.cpu_slice_ns = 0  # the CPU slice asked of the kernel (node.scheduling); 0: its own
        self.cpu_slice_changes = 0  # quiet <-> busy switches of that slice

    def count(self, kind: str, outcome: str) -> None:
        key = (kind, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1

    def count_invalid(self, line: bytes) -> None:
        """A line answered with `?`, counted under its first word when it names a request."""
        word = line.split(None, 1)[0].decode(errors="replace") if line.strip() else ""
        self.count(word if word in REQUEST_KINDS else "other", "invalid")

    def peer(self, name: str) -> PeerTally:
        """The tally of neighbour `name`, made on first use."""
        tally = self.peers.get(name)
        if tally is None:
            tally = self.peers[name] = PeerTally()
        return tally

    def places_of(self, provider: str) -> PlacesTally:
        tally = self.places.get(provider)
        if tally is None:
            tally = self.places[provider] = PlacesTally()
        return tally

    def answered(self) -> int:
        """Client lines answered in all: what the dashboard turns into a request rate."""
        return self.iamat_kept + self.iamat_stale + sum(self.requests.values())

    def lines_handled(self) -> int:
        """Client lines answered and neighbours' records received, in all: how busy the
        node is (node.scheduling)."""
        return self.answered() + sum(t.records_received for t in self.peers.values())
