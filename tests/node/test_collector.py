"""Tests for node.collector: a serving node freezes its start-up's objects and collects its
young generation only after more containers than a busy turn keeps alive."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from node import collector
from node.ingest import Batch, LineBacklog, take_changelocs
from node.store import ClientStore

# A relay's turn under the ingest load of `make bench`: 32 clients with 64 IAMATs in
# flight each, and most records arrive twice (a flood reaches most nodes over two links).
TURN_LINES = 32 * 64 * 2


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """Leave the test process's collector as it found it."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _young_collections_in_a_turn() -> int:
    """Apply one busy turn of CHANGELOC lines; how many young collections ran during it."""
    block = b"\n".join(
        b"CHANGELOC client%d +34.068930-118.445127 1621464827.%09d 1621464828.000000000 Hands"
        % (i, i)
        for i in range(TURN_LINES)
    )
    backlog = LineBacklog()
    backlog.add((block, TURN_LINES))
    started: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            started.append(1)

    gc.callbacks.append(note)
    try:
        batch = Batch()
        taken = take_changelocs(backlog, TURN_LINES, ClientStore(), {b"Hands"}, batch)
    finally:
        gc.callbacks.remove(note)
    assert taken == TURN_LINES and batch.applied == TURN_LINES
    return len(started)


def test_serving_freezes_the_start_up_and_raises_the_young_threshold(
    collector_restored: None,
) -> None:
    start_up = [[i] for i in range(1000)]  # containers alive when the node starts serving
    frozen = collector.set_for_serving()
    assert frozen >= len(start_up)
    assert gc.get_freeze_count() == frozen
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, *collector.OLDER_THRESHOLDS)


def test_a_busy_turn_runs_no_young_collection(collector_restored: None) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's default
    assert _young_collections_in_a_turn() > 0  # what the setting is for
    collector.set_for_serving()
    assert _young_collections_in_a_turn() == 0


def test_cyclic_garbage_is_still_collected_while_serving(collector_restored: None) -> None:
    collector.set_for_serving()

    class Cycle:
        pass

    cycle = Cycle()
    cycle.self = cycle  # type: ignore[attr-defined]
    gone = weakref.ref(cycle)
    del cycle
    assert gone() is not None  # a cycle outlives its last name: only the collector frees it
    for _ in range(collector.YOUNG_THRESHOLD // 2 + 1):
        pair: tuple[list[object], list[object]] = ([], [])  # more cyclic garbage
        pair[0].append(pair)
    assert gone() is None
