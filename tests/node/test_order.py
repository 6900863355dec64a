"""The order `ClientStore.offer` decides with (`store._newer`): the C of node/_order.c when
the compiled core is built (tests/node/test_native.py runs this file on it too), else
`store.newer_than_packed`. Both are held to the plain order key of tests/node/records.py."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from node import store
from node.protocol import format_ns
from tests.node.records import make_record, order_key
from tests.node.strategies import RECEIVED_NS, SERVERS, VALID_LOCATIONS, valid_times

FIELDS = st.tuples(VALID_LOCATIONS, valid_times(), RECEIVED_NS.map(format_ns), SERVERS)


def packed(location: bytes, sent: bytes, received: bytes, server: bytes) -> bytes:
    return b" ".join([location, sent, received, server])


@settings(max_examples=3000, deadline=None)
@given(new=FIELDS, held=FIELDS, same_time=st.booleans())
@example(
    new=(b"+1+1", b"10", b"1.000000000", b"Hill"),
    held=(b"+1+1", b"9.999", b"1.000000000", b"Hill"),
    same_time=False,
)
@example(
    new=(b"+1+1", b"01.50", b"1.000000000", b"Hill"),
    held=(b"+1+1", b"1.5", b"2.000000000", b"Hill"),
    same_time=False,
)
@example(
    new=(b"+1+1", b"1", b"1.000000000", b"Smith"),
    held=(b"+1+1", b"1", b"1.000000000", b"Hill"),
    same_time=False,
)
@example(
    new=(b"+1+1", b"1", b"1.000000000", b"Hill"),
    held=(b"+1+1", b"1", b"1.000000000", b"Hill"),
    same_time=False,
)
def test_the_order_offer_decides_with_is_the_order_key(
    new: tuple[bytes, bytes, bytes, bytes],
    held: tuple[bytes, bytes, bytes, bytes],
    same_time: bool,
) -> None:
    if same_time:  # the branch that compares the rest of the key
        held = (held[0], new[1], held[2], held[3])
    expected = order_key(make_record(b"c", *new)) > order_key(make_record(b"c", *held))
    assert store._newer(*new, packed(*held)) is expected
    assert store.newer_than_packed(*new, packed(*held)) is expected


def test_the_record_held_must_have_four_fields() -> None:
    for held in (b"+1+1 1 1.000000000", b"+1+1 1 1.000000000 Hill extra"):
        with pytest.raises(ValueError):
            store._newer(b"+1+1", b"1", b"1.000000000", b"Hill", held)
