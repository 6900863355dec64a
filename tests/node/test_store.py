"""Tests for node.store: records, the last-writer-wins order, and the CHANGELOC round trip."""

from __future__ import annotations

import random

import pytest

from node.protocol import format_at, format_diff
from node.store import (
    ClientStore,
    Record,
)
from tests.node.records import (
    ChangeLoc,
    IAmAt,
    make_record,
    order_key,
    record_from_changeloc,
    record_from_iamat,
)
from tests.node.records import (
    parse as parse_line,
)

RECEIVED = b"1520023935.182837383"


def rec(
    time: bytes = b"1.5",
    server: bytes = b"Bailey",
    location: bytes = b"+1+1",
    client: bytes = b"c",
    received: bytes = RECEIVED,
) -> Record:
    return make_record(client, location, time, received, server)


def newer(a: Record, b: Record) -> bool:
    """True when applying `b` after `a` replaces `a`."""
    store = ClientStore()
    assert store.apply(a)
    return store.apply(b)


# -- records ----------------------------------------------------------------------------


def test_record_from_iamat_rebuilds_the_at_reply():
    msg = IAmAt(b"kiwi.cs.ucla.edu", b"+34.068930-118.445127", b"1520023934.918963997")
    record = record_from_iamat(msg, b"Bailey", 1520023935182837383)
    assert record.time_received == b"1520023935.182837383"
    assert record.at_line() == (
        b"AT Bailey +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997\n"
    )


def test_record_at_line_equals_the_reply_the_receiving_node_computed():
    rng = random.Random(3)
    for _ in range(300):
        received_ns = rng.randrange(10**18, 2 * 10**18)
        time = b"%d.%0*d" % (rng.randrange(10**9, 2 * 10**9), 12, rng.randrange(10**12))
        msg = IAmAt(b"c", b"+1-1", time)
        expected = format_at(b"S", format_diff(received_ns, time), b"c", b"+1-1", time)
        assert record_from_iamat(msg, b"S", received_ns).at_line() == expected


def test_record_changeloc_line():
    record = rec(time=b"1.50", client=b"c\xff")
    assert record.changeloc() == b"CHANGELOC c\xff +1+1 1.50 1520023935.182837383 Bailey\n"


def test_make_record_rejects_an_invalid_time():
    with pytest.raises(ValueError):
        make_record(b"c", b"+1+1", b"1e5", RECEIVED, b"Bailey")


def test_record_from_changeloc_keeps_every_field():
    msg = ChangeLoc(b"c", b"+1-2", b"1.5", RECEIVED, b"Bailey")
    record = record_from_changeloc(msg)
    assert (record.client, record.location, record.time_sent) == (b"c", b"+1-2", b"1.5")
    assert (record.time_received, record.server) == (RECEIVED, b"Bailey")


@pytest.mark.parametrize(
    "time", [b"1520023934", b"1520023934.5", b"1520023934.918963997", b"1520023934.918963997123"]
)
@pytest.mark.parametrize("client", [b"kiwi", b"a\xc2\xa0b", b"\xff\xfe", b"c\x00d"])
def test_iamat_changeloc_round_trip_gives_identical_at_line(time, client):
    msg = parse_line(b"IAMAT " + client + b" +34.068930-118.445127 " + time)
    assert isinstance(msg, IAmAt)
    original = record_from_iamat(msg, b"Bailey", 1520023935182837383)
    flooded = parse_line(original.changeloc().removesuffix(b"\n"), peer=True)
    assert isinstance(flooded, ChangeLoc)
    rebuilt = record_from_changeloc(flooded)
    assert rebuilt.at_line() == original.at_line()
    assert rebuilt == original


# -- ordering ---------------------------------------------------------------------------


def test_later_time_wins_compared_as_exact_decimal():
    assert newer(rec(time=b"1.5"), rec(time=b"1.50001"))
    assert not newer(rec(time=b"1.50001"), rec(time=b"1.5"))
    assert newer(rec(time=b"9.99"), rec(time=b"10"))
    assert not newer(rec(time=b"10"), rec(time=b"9.99"))


def test_time_beats_server_and_location():
    assert newer(rec(time=b"1.5", server=b"Z", location=b"+9+9"), rec(time=b"1.6", server=b"A"))


def test_equal_times_in_different_forms_tie_break_on_server_name():
    assert newer(rec(time=b"1.50", server=b"Bailey"), rec(time=b"1.5", server=b"Bona"))
    assert not newer(rec(time=b"1.5", server=b"Bona"), rec(time=b"1.50", server=b"Bailey"))


def test_server_names_compare_as_bytes():
    assert newer(rec(server=b"Z"), rec(server=b"a"))  # b"Z" < b"a"
    assert newer(rec(server=b"Bailey"), rec(server=b"Bailey2"))


def test_equal_time_and_server_tie_break_on_location_bytes():
    assert newer(rec(location=b"+1+1"), rec(location=b"+1+2"))
    assert not newer(rec(location=b"+1+2"), rec(location=b"+1+1"))
    # Bytes, not degrees: "+9" sorts after "+10".
    assert newer(rec(location=b"+10+0"), rec(location=b"+9+0"))


def test_equal_record_is_dropped():
    store = ClientStore()
    assert store.apply(rec())
    assert not store.apply(rec())
    assert len(store) == 1


def test_same_time_server_and_location_ties_break_on_bytes_the_same_everywhere():
    first = rec(time=b"1.5", received=b"1.000000000")
    second = rec(time=b"1.50", received=b"2.000000000")
    for order in ([first, second], [second, first]):
        store = ClientStore()
        for record in order:
            store.apply(record)
        assert store.get(b"c") == second  # b"1.50" > b"1.5"
    store = ClientStore()
    assert store.apply(first)
    assert not store.apply(rec(time=b"1.5", received=b"1.000000000"))  # the very same record


def test_older_record_does_not_replace_newer():
    store = ClientStore()
    assert store.apply(rec(time=b"2"))
    assert not store.apply(rec(time=b"1"))
    record = store.get(b"c")
    assert record is not None
    assert record.time_sent == b"2"


# -- the store --------------------------------------------------------------------------


def test_store_keeps_one_record_per_client():
    store = ClientStore()
    for client in (b"a", b"b", b"a", b"c"):
        store.apply(rec(client=client, time=b"%d" % len(store)))
    assert len(store) == 3
    assert sorted(r.client for r in store) == [b"a", b"b", b"c"]


def test_store_get_unknown_client_is_none():
    assert ClientStore().get(b"nobody") is None


def test_store_iteration_survives_apply_during_iteration():
    store = ClientStore()
    store.apply(rec(client=b"a"))
    for record in store:
        store.apply(rec(client=b"b"))
        store.apply(rec(client=record.client, time=b"9"))
    assert len(store) == 2


def _record_pool(rng: random.Random) -> list[Record]:
    """Distinct-key records for a few clients; equal keys only where records are identical."""
    pool: dict[tuple[bytes, object], Record] = {}
    for _ in range(60):
        client = rng.choice([b"a", b"b", b"c\xff"])
        whole = rng.choice([b"1", b"2", b"01"])
        frac = rng.choice([b"", b".5", b".50", b".500001", b".49999"])
        record = make_record(
            client,
            rng.choice([b"+1+1", b"+1+2", b"+10+0", b"+9+0"]),
            whole + frac,
            b"%d.%09d" % (rng.randrange(3), rng.randrange(10**9)),
            rng.choice([b"Bailey", b"Bona", b"Campbell", b"Clark", b"Jaquez"]),
        )
        pool.setdefault((client, order_key(record)), record)
    return list(pool.values())


def _state(store: ClientStore) -> list[bytes]:
    return sorted(r.at_line() for r in store)


def test_any_order_of_updates_ends_in_the_same_state():
    rng = random.Random(69486)
    pool = _record_pool(rng)
    expected: dict[bytes, Record] = {}
    for r in pool:
        if r.client not in expected or order_key(r) > order_key(expected[r.client]):
            expected[r.client] = r
    want = sorted(r.at_line() for r in expected.values())
    for _ in range(300):
        updates = pool + rng.choices(pool, k=rng.randrange(len(pool)))  # with duplicates
        rng.shuffle(updates)
        store = ClientStore()
        kept = [store.apply(r) for r in updates]
        assert _state(store) == want
        # A duplicate of the record already held is never kept (never flooded) again.
        assert sum(kept) <= len(pool)
