"""Which reads wait for the turn's journal write, and what waiting takes from a batch:
sans-IO, no loop."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.ingest import Batch
from node.turn_journal import GROUP_ABOVE, TurnGrouping, TurnJournal


def turns(grouping: TurnGrouping, reads_per_turn: list[int]) -> list[bool]:
    """Whether each turn's first read waited, turn by turn."""
    waited = []
    for reads in reads_per_turn:
        first = [grouping.read() for _ in range(reads)][:1]
        waited.extend(first)
        grouping.turn_ended()
    return waited


def test_a_lone_update_a_turn_never_waits() -> None:
    assert turns(TurnGrouping(), [1] * 1000) == [False] * 1000


def test_a_steady_load_makes_the_first_read_wait_and_a_quiet_spell_ends_it() -> None:
    grouping = TurnGrouping()
    loaded = turns(grouping, [8] * 10)
    assert loaded[0] is False and all(loaded[2:])  # the second turn on: the average is > 1.5
    calm = turns(grouping, [1] * 40)
    assert calm[0] is True and not any(calm[-20:])


def test_turns_of_queries_only_leave_the_average_alone() -> None:
    grouping = TurnGrouping()
    turns(grouping, [8] * 10)
    turns(grouping, [0] * 100)  # WHATSATs only: no IAMAT read
    assert grouping.grouping and grouping.read()


@given(st.lists(st.integers(min_value=0, max_value=20), max_size=60))
def test_every_read_after_a_turns_first_waits(reads_per_turn: list[int]) -> None:
    grouping = TurnGrouping()
    for reads in reads_per_turn:
        waits = [grouping.read() for _ in range(reads)]
        assert all(waits[1:])
        assert waits[:1] in ([], [grouping.grouping])
        grouping.turn_ended()
        assert grouping.grouping == (grouping.average > GROUP_ABOVE)
        assert 0 <= grouping.average <= 20


def test_defer_takes_everything_and_leaves_the_batch_to_be_reused() -> None:
    batch = Batch()
    batch.entries.append(b"e\n")
    batch.undo.append((b"c", None))
    batch.replies.extend([b"AT 1\n", b"AT 2\n"])
    batch.flood.append(b"CHANGELOC c\n")
    batch.log.append(b"IAMAT c\n")
    replies = batch.replies
    turn = TurnJournal()
    conn = object()
    turn.defer(batch, conn)  # type: ignore[arg-type]
    assert not (batch.entries or batch.undo or batch.replies or batch.flood or batch.log)
    assert batch.replies is not replies  # the waiting replies are not the batch's next ones
    taken = turn.take()
    assert (taken.entries, taken.undo, taken.flood, taken.log) == (
        [b"e\n"],
        [(b"c", None)],
        [b"CHANGELOC c\n"],
        [b"IAMAT c\n"],
    )
    assert taken.waiting == [(conn, [b"AT 1\n", b"AT 2\n"], 1)]
    assert not (turn.entries or turn.undo or turn.flood or turn.log or turn.waiting)
