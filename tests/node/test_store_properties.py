"""Property tests of the client store: any interleaving and duplication converges.

Every node applies the same updates in whatever order the network delivers them, some of
them twice (flooding, catch-up syncs). The store must end in the same state whatever the
order, holding for each client the record that is greatest in the ordering of PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from node.store import ClientStore, Record
from tests.node.records import OrderKey, make_record, order_key
from tests.node.strategies import STORE_CLIENTS, deliveries, store_records, store_updates


def _state(records: Iterable[Record]) -> dict[bytes, tuple[OrderKey, Record]]:
    store = ClientStore()
    for record in records:
        store.apply(record)
    assert len(store) == len({r.client for r in store})
    return {r.client: (order_key(r), r) for r in store}


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data())
def test_any_interleaving_and_duplication_ends_in_the_same_state(data: st.DataObject) -> None:
    updates = data.draw(store_updates(), label="updates")
    reference = _state(updates)
    for i in range(3):
        delivered = data.draw(deliveries(updates), label=f"delivery {i}")
        assert _state(delivered) == reference
    # The survivor of each client is its greatest record in the protocol's order.
    for client, (key, record) in reference.items():
        mine = [r for r in updates if r.client == client]
        assert record == max(mine, key=order_key)
        assert key == order_key(record)
    # Applying what is held again changes nothing: a resync is idempotent.
    again = ClientStore()
    for _key, record in reference.values():
        assert again.apply(record)
    assert not any(again.apply(record) for _key, record in reference.values())


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data())
def test_the_order_key_converges_for_any_records(data: st.DataObject) -> None:
    """Even records that tie on the key (`1.5` / `1.50`) leave every store on the same key."""
    clients = data.draw(st.lists(STORE_CLIENTS, min_size=1, max_size=3, unique=True))
    records = data.draw(st.lists(store_records(clients), min_size=1, max_size=30))
    first = _state(records)
    for i in range(2):
        delivered = data.draw(deliveries(records), label=f"delivery {i}")
        assert {c: k for c, (k, _r) in _state(delivered).items()} == {
            c: k for c, (k, _r) in first.items()
        }
    for client, (key, _record) in first.items():
        assert key == max(order_key(r) for r in records if r.client == client)


def test_time_key_is_the_exact_decimal_order() -> None:
    """The spellings of one number tie; a longer integer part is greater whatever the digits."""
    spellings = [b"1.5", b"01.50", b"001.500000"]
    keys = {order_key(make_record(b"c", b"+1+1", t, b"1.000000000", b"S"))[0] for t in spellings}
    assert len(keys) == 1
    small = make_record(b"c", b"+1+1", b"9" * 40 + b".9", b"1.000000000", b"S")
    big = make_record(b"c", b"+1+1", b"1" + b"0" * 40, b"1.000000000", b"S")
    assert order_key(big) > order_key(small)


def test_tied_records_converge_whatever_the_order() -> None:
    a = make_record(b"c", b"+1+1", b"1.5", b"2.000000000", b"Hands")
    b = make_record(b"c", b"+1+1", b"1.50", b"3.000000000", b"Hands")
    assert _state([a, b]) == _state([b, a])
