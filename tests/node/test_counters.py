"""node.counters: the node's counts, and the histogram the metrics export."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from node.counters import LATENCY_BOUNDS, Histogram, NodeCounters


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_each_bucket_counts_what_is_at_most_its_bound(durations: list[float]) -> None:
    histogram = Histogram()
    for seconds in durations:
        histogram.observe(seconds)
    cumulative = histogram.cumulative()
    assert [bound for bound, _ in cumulative] == [*LATENCY_BOUNDS, math.inf]
    for bound, count in cumulative:
        assert count == sum(1 for d in durations if d <= bound)
    assert histogram.count == len(durations)
    assert math.isclose(histogram.total, sum(durations), abs_tol=1e-9)


def test_a_batch_is_observed_as_many_lines_at_once() -> None:
    histogram = Histogram()
    histogram.observe(0.0003, 64)
    assert histogram.count == 64
    assert dict(histogram.cumulative())[0.0005] == 64
    assert dict(histogram.cumulative())[0.00025] == 0
    assert math.isclose(histogram.total, 0.0003 * 64)


def test_a_bound_itself_falls_in_its_own_bucket() -> None:
    histogram = Histogram()
    histogram.observe(0.001)
    assert dict(histogram.cumulative())[0.001] == 1
    assert dict(histogram.cumulative())[0.0005] == 0


def test_invalid_lines_are_counted_under_the_request_they_name() -> None:
    counters = NodeCounters()
    for line in (
        b"IAMAT x",
        b"WHATSAT a b c d",
        b"HELLO",
        b"hello there",
        b"",
        b"   ",
        b"\xff\xfe",
    ):
        counters.count_invalid(line)
    assert counters.requests == {
        ("IAMAT", "invalid"): 1,
        ("WHATSAT", "invalid"): 1,
        ("HELLO", "invalid"): 1,
        ("other", "invalid"): 4,
    }


def test_answered_adds_every_kind() -> None:
    counters = NodeCounters()
    counters.iamat_kept, counters.iamat_stale, counters.iamat_refused = 5, 2, 9
    counters.count("WHATSAT", "answered")
    counters.count_invalid(b"nonsense")
    assert counters.answered() == 5 + 2 + 1 + 1  # the refused got no answer


def test_a_peer_tally_is_made_once() -> None:
    counters = NodeCounters()
    assert counters.peer("Hands") is counters.peer("Hands")
    assert counters.places_of("offline") is counters.places_of("offline")
