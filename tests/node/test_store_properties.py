"""Property tests of the client store: any interleaving and duplication converges.

Every node applies the same updates in whatever order the network delivers them, some of
them twice (flooding, catch-up syncs). The store must end in the same state whatever the
order, holding for each client the record that is greatest in the ordering of PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from node.protocol import format_ns
from node.store import ClientStore, OrderKey, Record, make_record
from tests.node.strategies import VALID_LOCATIONS, valid_times

_WHITESPACE = b" \t\n\r\x0b\x0c"
# Clients: any bytes but the six field separators, valid UTF-8 or not.
_CLIENTS = st.binary(min_size=1, max_size=6).map(
    lambda raw: bytes(b if b not in _WHITESPACE else 0x5F for b in raw)
)
_SERVERS = st.sampled_from([b"Goloman", b"Hands", b"Holiday", b"Welsh", b"Wilkes", b"\xffodd"])


@st.composite
def _records(draw: st.DrawFn, clients: Sequence[bytes]) -> Record:
    return make_record(
        draw(st.sampled_from(clients)),
        draw(VALID_LOCATIONS),
        draw(valid_times()),
        format_ns(draw(st.integers(0, 2**63))),
        draw(_SERVERS),
    )


@st.composite
def _updates(draw: st.DrawFn) -> list[Record]:
    """Distinct updates to a few clients: one record per ordering key, as a herd makes them.

    The node that hears an IAMAT stores at most one record per key (an equal key is the same
    record and is dropped), so two different records never share a key in a herd.
    """
    clients = draw(st.lists(_CLIENTS, min_size=1, max_size=4, unique=True))
    records = draw(st.lists(_records(clients), min_size=1, max_size=30))
    by_key: dict[tuple[bytes, OrderKey], Record] = {}
    for record in records:
        by_key.setdefault((record.client, record.key), record)
    return list(by_key.values())


@st.composite
def _deliveries(draw: st.DrawFn, updates: list[Record]) -> list[Record]:
    """The updates in any order, each at least once, some several times."""
    extra = draw(st.lists(st.sampled_from(updates), max_size=2 * len(updates)))
    return draw(st.permutations([*updates, *extra]))


def _state(records: Iterable[Record]) -> dict[bytes, tuple[OrderKey, Record]]:
    store = ClientStore()
    for record in records:
        store.apply(record)
    assert len(store) == len({r.client for r in store})
    return {r.client: (r.key, r) for r in store}


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data())
def test_any_interleaving_and_duplication_ends_in_the_same_state(data: st.DataObject) -> None:
    updates = data.draw(_updates(), label="updates")
    reference = _state(updates)
    for i in range(3):
        delivered = data.draw(_deliveries(updates), label=f"delivery {i}")
        assert _state(delivered) == reference
    # The survivor of each client is its greatest record in the protocol's order.
    for client, (key, record) in reference.items():
        mine = [r for r in updates if r.client == client]
        assert record == max(mine, key=lambda r: r.key)
        assert key == record.key
    # Applying what is held again changes nothing: a resync is idempotent.
    again = ClientStore()
    for _key, record in reference.values():
        assert again.apply(record)
    assert not any(again.apply(record) for _key, record in reference.values())


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data())
def test_the_order_key_converges_for_any_records(data: st.DataObject) -> None:
    """Even records that tie on the key (`1.5` / `1.50`) leave every store on the same key."""
    clients = data.draw(st.lists(_CLIENTS, min_size=1, max_size=3, unique=True))
    records = data.draw(st.lists(_records(clients), min_size=1, max_size=30))
    first = _state(records)
    for i in range(2):
        delivered = data.draw(_deliveries(records), label=f"delivery {i}")
        assert {c: k for c, (k, _r) in _state(delivered).items()} == {
            c: k for c, (k, _r) in first.items()
        }
    for client, (key, _record) in first.items():
        assert key == max(r.key for r in records if r.client == client)


def test_time_key_is_the_exact_decimal_order() -> None:
    """The spellings of one number tie; a longer integer part is greater whatever the digits."""
    spellings = [b"1.5", b"01.50", b"001.500000"]
    keys = {make_record(b"c", b"+1+1", t, b"1.000000000", b"S").key[0] for t in spellings}
    assert len(keys) == 1
    small = make_record(b"c", b"+1+1", b"9" * 40 + b".9", b"1.000000000", b"S")
    big = make_record(b"c", b"+1+1", b"1" + b"0" * 40, b"1.000000000", b"S")
    assert big.key > small.key


def test_tied_records_converge_whatever_the_order() -> None:
    a = make_record(b"c", b"+1+1", b"1.5", b"2.000000000", b"Hands")
    b = make_record(b"c", b"+1+1", b"1.50", b"3.000000000", b"Hands")
    assert _state([a, b]) == _state([b, a])
