"""Tests for node.ingest: the batched IAMAT / CHANGELOC hot path checks, replies, stores,
journals, floods and logs exactly as the general path (`parse_line` plus `ClientStore.apply`)
does, one line at a time. Also the single-regex location check `LOCATION_IN_RANGE`.

The references here are deliberately the slow, obvious ones: `parse_line` for acceptance,
`ClientStore.apply(make_record(...))` for last-writer-wins, `Decimal` for ranges and diffs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from node.entries import encode_body, encode_packed
from node.ingest import (
    Batch,
    LineBacklog,
    take_changelocs,
    take_iamats,
)
from node.protocol import (
    LOCATION_IN_RANGE,
    format_at,
    format_diff,
    format_ns,
    parse_location,
    valid_location,
)
from node.store import (
    ClientStore,
    Record,
    newer_than_packed,
)
from tests.node.records import (
    ChangeLoc,
    IAmAt,
    decode_entry,
    encode_entry,
    make_record,
    order_key,
    packed_key,
    record_from_changeloc,
)
from tests.node.records import (
    parse as parse_line,
)
from tests.node.strategies import (
    _CLIENTS,
    _WS,
    CHANGELOC_POOL,
    IAMAT_POOL,
    KNOWN,
    LOCATION_FIELDS,
    NS,
    RECEIVED_NS,
    SERVERS,
    VALID_LOCATIONS,
    changeloc_ish,
    coordinates,
    iamat_ish,
    records,
    valid_times,
    weighted,
)

SERVER = b"Hill"
FAST = settings(max_examples=300, deadline=None, database=None)
SLOW = settings(max_examples=200, deadline=None, database=None)

# -- references -------------------------------------------------------------------------

_REF_FORM = re.compile(rb"([+-][0-9]+(?:\.[0-9]+)?)([+-][0-9]+(?:\.[0-9]+)?)")
_DIFF_FORM = re.compile(rb"[+-][0-9]+\.[0-9]{9}")


def ref_in_range(field: bytes) -> bool:
    """PROTOCOL.md's location rule, the obvious way: the form, then exact decimal ranges."""
    m = _REF_FORM.fullmatch(field)
    if m is None:
        return False
    lat, lon = Decimal(m.group(1).decode()), Decimal(m.group(2).decode())
    return abs(lat) <= 90 and abs(lon) <= 180


def ref_diff(received_ns: int, time_sent: bytes) -> bytes:
    """received - sent, exact in Decimal, rounded half to even to 1 ns, always signed."""
    ctx = Context(prec=len(time_sent) + 60, rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN)
    exact = ctx.subtract(ctx.divide(Decimal(received_ns), Decimal(NS)), Decimal(time_sent.decode()))
    diff = exact.quantize(Decimal("1e-9"), context=ctx)
    return (b"-" if diff < 0 else b"+") + format(diff.copy_abs(), "f").encode()


def state(store: ClientStore) -> dict[bytes, bytes]:
    return dict(store.packed())


def store_of(records: Iterable[Record]) -> ClientStore:
    store = ClientStore()
    for record in records:
        store.apply(record)
    return store


def iamat_line(client: bytes, location: bytes, time: bytes) -> bytes:
    return b"IAMAT %s %s %s" % (client, location, time)


def changeloc_line(record: Record) -> bytes:
    return record.changeloc().removesuffix(b"\n")


def cut(lines: Sequence[bytes]) -> LineBacklog:
    """A backlog holding `lines` one by one, as after a read that mixed kinds."""
    backlog = LineBacklog()
    backlog.put_back(lines)
    return backlog


def uncut(lines: Sequence[bytes]) -> LineBacklog:
    """A backlog holding `lines` as one block, as `LineSplitter` hands over a read."""
    backlog = LineBacklog()
    backlog.add((b"\n".join(lines), len(lines)))
    return backlog


def run_iamats(
    lines: Sequence[bytes],
    store: ClientStore,
    *,
    server: bytes = SERVER,
    received_ns: int = 1520023935182837383,
    limit: int = 1_000_000,
    conn_id: int = 7,
    backlog_of: Callable[[Sequence[bytes]], LineBacklog] = cut,
) -> tuple[int, list[bytes], Batch]:
    backlog = backlog_of(lines)
    batch = Batch()
    n = take_iamats(backlog, limit, store, server, received_ns, conn_id, batch)
    return n, list(backlog.lines()), batch


def run_changelocs(
    lines: Sequence[bytes],
    store: ClientStore,
    *,
    known: frozenset[bytes] = KNOWN,
    limit: int = 1_000_000,
    backlog_of: Callable[[Sequence[bytes]], LineBacklog] = cut,
    held_back: dict[bytes, None] | None = None,
    sift: bool = False,
) -> tuple[int, list[bytes], Batch]:
    backlog = backlog_of(lines)
    batch = Batch()
    n = take_changelocs(backlog, limit, store, known, batch, held_back, sift)
    return n, list(backlog.lines()), batch


def prefix_length(lines: Sequence[bytes], kind: type, *, peer: bool) -> int:
    n = 0
    for line in lines:
        if not isinstance(parse_line(line, peer=peer), kind):
            break
        n += 1
    return n


# -- LOCATION_IN_RANGE ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "ok"),
    [
        (b"+90+0", True),
        (b"+90.000+0", True),
        (b"+090+0", True),
        (b"+0090.0-0", True),
        (b"-90-180", True),
        (b"+90.0001+0", False),
        (b"-90.0000000000000000001+0", False),
        (b"+91+0", False),
        (b"+900+0", False),
        (b"+89.999999999999+0", True),
        (b"+00+00", True),
        (b"+0+0", True),
        (b"-0.0-0.0", True),
        (b"+0-180.0", True),
        (b"+0-180", True),
        (b"+0+0180.000", True),
        (b"+0+180.00001", False),
        (b"+0-181", False),
        (b"+0+1800", False),
        (b"+0+0179.999", True),
        (b"+0+179.99999999999999999", True),
        (b"+0+099.5", True),
        (b"+0+100", True),
        (b"+0+109.9", True),
        (b"+0+170", True),
        (b"+0+190", False),
        (b"+0+200", False),
        (b"+9+9", True),
        (b"+09+09", True),
        (b"+19+19", True),
        (b"+34.068930-118.445127", True),
        (b"+0+1000", False),
        (b"+" + b"0" * 100 + b"90+0", True),
        (b"+" + b"0" * 100 + b"91+0", False),
        (b"+1" + b"0" * 30 + b"+0", False),
        # Not the form at all.
        (b"34.068930-118.445127", False),
        (b"+34.068930118.445127", False),
        (b"+.5+0", False),
        (b"+5.+0", False),
        (b"+5+.0", False),
        (b"+5+0.", False),
        (b"++5+0", False),
        (b"+5+0+0", False),
        (b"+5", False),
        (b"", False),
        (b"+1e1+0", False),
        (b"+1 +0", False),
        (b"+1+0\n", False),
        ("+\u0661+0".encode(), False),
        (b"+9\xd90+0", False),
    ],
)
def test_location_in_range_edges(field: bytes, ok: bool) -> None:
    assert ref_in_range(field) is ok  # the reference agrees with the table...
    assert (LOCATION_IN_RANGE.fullmatch(field) is not None) is ok  # ...and so does the regex
    assert valid_location(field) is ok
    if field.split() == [field]:  # a whole line agrees too
        assert isinstance(parse_line(iamat_line(b"c", field, b"1")), IAmAt) is ok


@FAST
@given(field=LOCATION_FIELDS)
@example(field=b"+90.0001+0")
@example(field=b"+0+180.00001")
@example(field=b"-090.000-0180.000")
def test_location_in_range_equals_the_decimal_reference(field: bytes) -> None:
    expected = ref_in_range(field)
    assert (LOCATION_IN_RANGE.fullmatch(field) is not None) is expected
    assert valid_location(field) is expected
    point = parse_location(field)
    assert (point is not None) is expected
    if point is not None:
        assert -90 <= point[0] <= 90 and -180 <= point[1] <= 180


@FAST
@given(lat=coordinates(90), lon=coordinates(180))
def test_location_in_range_on_well_formed_coordinates(lat: bytes, lon: bytes) -> None:
    field = lat + lon
    assert _REF_FORM.fullmatch(field) is not None
    assert valid_location(field) is ref_in_range(field)


# -- take_iamats: which lines --------------------------------------------------------------


@FAST
@given(line=iamat_ish())
@example(line=b"IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997")
@example(line=b"IAMAT c +90.0001+0 1")
@example(line=b"IAMAT c +0+180.00001 1")
@example(line=b"\tIAMAT\x0bc\x0c+1+1\r1  ")
@example(line=b"IAMAT c +1+1 1\xa0")
@example(line=b"IAMAT c +1+1 1 extra")
@example(line=b"IAMAT c +1+1")
def test_take_iamats_accepts_a_line_iff_parse_line_says_iamat(line: bytes) -> None:
    msg = parse_line(line)
    n, backlog, batch = run_iamats([line, b"WHATSAT c 1 1"], ClientStore())
    if isinstance(msg, IAmAt):
        assert n == 1
        assert list(backlog) == [b"WHATSAT c 1 1"]
        assert batch.replies[0].split(b" ")[3:] == [msg.client, msg.location, msg.time + b"\n"]
    else:
        assert n == 0
        assert backlog[0] is line and len(backlog) == 2
        assert batch.replies == batch.log == batch.entries == batch.flood == []


@FAST
@given(
    lines=st.lists(weighted((3, IAMAT_POOL), (1, iamat_ish())), max_size=10),
    limit=st.integers(0, 12),
)
def test_take_iamats_stops_at_the_first_other_line_and_respects_the_limit(
    lines: list[bytes], limit: int
) -> None:
    store = ClientStore()
    n, backlog, batch = run_iamats(lines, store, limit=limit)
    expected = min(limit, prefix_length(lines, IAmAt, peer=False))
    assert n == expected
    assert len(backlog) == len(lines) - n
    assert all(a is b for a, b in zip(backlog, lines[n:], strict=True))  # the same objects
    assert len(batch.replies) == len(batch.log) == n
    assert len(batch.entries) == len(batch.flood) <= n
    assert (batch.received, batch.applied, batch.duplicates, batch.unknown) == (0, 0, 0, [])


def test_take_iamats_on_an_empty_backlog_or_zero_limit_takes_nothing() -> None:
    store = ClientStore()
    assert run_iamats([], store)[0] == 0
    n, backlog, batch = run_iamats([b"IAMAT c +1+1 1"], store, limit=0)
    assert n == 0 and list(backlog) == [b"IAMAT c +1+1 1"] and batch.replies == []
    assert len(store) == 0


@pytest.mark.parametrize(
    "stop",
    [
        b"WHATSAT c 10 5",
        b"",
        b"   ",
        b"IAMAT c +90.0001+0 1",
        b"IAMAT c +1+1 -1",
        b"IAMAT c +1+1 1 x",
        b"iamat c +1+1 1",
        b"CHANGELOC c +1+1 1 1.000000000 Hill",
    ],
)
def test_take_iamats_leaves_the_first_other_line_at_the_head(stop: bytes) -> None:
    lines = [b"IAMAT a +1+1 1", b"IAMAT b +1+1 2", stop, b"IAMAT c +1+1 3"]
    n, backlog, _batch = run_iamats(lines, ClientStore())
    assert n == 2
    assert list(backlog) == [stop, b"IAMAT c +1+1 3"]
    n, backlog, _batch = run_iamats(lines, ClientStore(), limit=1)
    assert n == 1 and list(backlog) == lines[1:]


# -- take_iamats: what it writes ------------------------------------------------------------


def test_take_iamats_paper_example() -> None:
    store = ClientStore()
    line = b"IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997"
    n, _backlog, batch = run_iamats([line], store, received_ns=1520023935182837383, conn_id=3)
    assert n == 1
    assert batch.replies == [
        b"AT Hill +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997\n"
    ]
    body = b"kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997 1520023935.182837383 Hill"
    assert batch.entries == [encode_body(body)]
    assert batch.flood == [b"CHANGELOC " + body + b"\n"]
    assert batch.log == [
        b"IAMAT conn=3 client=kiwi.cs.ucla.edu location=+34.068930-118.445127"
        b" sent=1520023934.918963997 diff=+0.263873386 kept=yes"
    ]
    record = store.get(b"kiwi.cs.ucla.edu")
    assert record is not None and record.at_line() == batch.replies[0]


def test_take_iamats_with_a_5000_digit_time() -> None:
    time = b"1" + b"0" * 4999
    store = ClientStore()
    n, _backlog, batch = run_iamats([iamat_line(b"c", b"+0+0", time)], store, received_ns=NS)
    assert n == 1
    diff = b"-" + b"9" * 4999 + b".000000000"
    assert diff == ref_diff(NS, time)
    assert batch.replies == [format_at(SERVER, diff, b"c", b"+0+0", time)]
    record = store.get(b"c")
    assert record is not None and record.time_sent == time and record.at_line() == batch.replies[0]


def test_take_iamats_replies_to_an_older_iamat_without_keeping_it() -> None:
    store = ClientStore()
    store.apply(make_record(b"c", b"+1+1", b"100", format_ns(5), b"Smith"))
    before = state(store)
    n, _backlog, batch = run_iamats([b"IAMAT c +2+2 99.999"], store, received_ns=100 * NS)
    assert n == 1
    assert batch.replies == [b"AT Hill +0.001000000 c +2+2 99.999\n"]
    assert batch.entries == batch.flood == []
    assert batch.log[0].endswith(b" kept=no")
    assert state(store) == before


def test_take_iamats_the_same_line_twice_keeps_it_once() -> None:
    store = ClientStore()
    line = b"IAMAT c +1+1 5"
    n, _backlog, batch = run_iamats([line, line], store, received_ns=6 * NS)
    assert n == 2
    assert batch.replies == [b"AT Hill +1.000000000 c +1+1 5\n"] * 2
    assert [e.endswith(b"kept=yes") for e in batch.log] == [True, False]
    assert len(batch.entries) == len(batch.flood) == 1


@pytest.mark.parametrize("order", [0, 1])
def test_take_iamats_equal_times_keep_the_greater_location_whatever_the_order(order: int) -> None:
    lines = [b"IAMAT c +1+1 5", b"IAMAT c +2+2 5.0"]
    if order:
        lines.reverse()
    store = ClientStore()
    run_iamats(lines, store, received_ns=6 * NS)
    record = store.get(b"c")
    assert record is not None and record.location == b"+2+2"


def test_take_iamats_equal_times_other_server_ordered_by_name() -> None:
    store = ClientStore()
    store.apply(make_record(b"c", b"+9+9", b"5", format_ns(5), b"Jaquez"))
    _n, _backlog, batch = run_iamats([b"IAMAT c +1+1 5"], store, server=b"Hill")
    assert batch.log[0].endswith(b"kept=no")  # "Hill" < "Jaquez"
    _n, _backlog, batch = run_iamats([b"IAMAT c +1+1 5"], store, server=b"Smith")
    assert batch.log[0].endswith(b"kept=yes")  # "Smith" > "Jaquez"


def _check_iamat_batches(
    prior: list[Record],
    batches: list[tuple[bytes, int, list[tuple[bytes, bytes, bytes]]]],
    lines_of: list[list[bytes]],
) -> None:
    """Run each batch through take_iamats and the same records through apply, one at a time,
    and compare every output byte for byte."""
    store, reference = store_of(prior), store_of(prior)
    assert state(store) == state(reference)
    for conn_id, ((server, received_ns, msgs), lines) in enumerate(
        zip(batches, lines_of, strict=True)
    ):
        n, backlog, batch = run_iamats(
            lines, store, server=server, received_ns=received_ns, conn_id=conn_id
        )
        assert n == len(msgs) and not backlog
        replies, entries, flood, log = [], [], [], []
        kept_records: list[Record] = []
        received = format_ns(received_ns)
        for client, location, time in msgs:
            record = make_record(client, location, time, received, server)
            kept = reference.apply(record)
            diff = format_diff(received_ns, time)
            assert diff == ref_diff(received_ns, time)
            assert _DIFF_FORM.fullmatch(diff)
            replies.append(format_at(server, diff, client, location, time))
            log.append(
                b"IAMAT conn=%d client=%s location=%s sent=%s diff=%s kept=%s"
                % (conn_id, client, location, time, diff, b"yes" if kept else b"no")
            )
            if kept:
                assert record.at_line() == replies[-1]  # a WHATSAT would echo this reply
                entries.append(encode_entry(record))
                flood.append(record.changeloc())
                kept_records.append(record)
        assert batch.replies == replies
        assert batch.log == log
        assert batch.entries == entries
        assert batch.flood == flood
        assert state(store) == state(reference)
        # Every entry decodes back to the record kept; every flood line parses to it.
        for entry, line, kept_record in zip(batch.entries, batch.flood, kept_records, strict=True):
            assert decode_entry(entry.removesuffix(b"\n")) == kept_record
            msg = parse_line(line.removesuffix(b"\n"), peer=True)
            assert isinstance(msg, ChangeLoc)
            assert record_from_changeloc(msg) == kept_record
            assert (msg.time_received, msg.server) == (received, server)
        assert batch.entries == [encode_packed(c, p) for c, p in _kept_packed(batch, server)]


def _kept_packed(batch: Batch, server: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for line in batch.flood:
        _, client, packed = line.removesuffix(b"\n").split(b" ", 2)
        assert packed.endswith(b" " + server)
        out.append((client, packed))
    return out


@SLOW
@given(data=st.data())
def test_take_iamats_ends_like_applying_each_record_alone(data: st.DataObject) -> None:
    clients = data.draw(st.lists(_CLIENTS, min_size=1, max_size=3, unique=True), label="clients")
    servers = sorted(KNOWN)
    prior = data.draw(st.lists(records(clients, servers), max_size=6), label="prior")
    batches = []
    lines_of = []
    for _ in range(data.draw(st.integers(1, 3), label="batches")):
        server = data.draw(SERVERS, label="server")
        received_ns = data.draw(RECEIVED_NS, label="received_ns")
        msgs = data.draw(
            st.lists(
                st.tuples(st.sampled_from(clients), VALID_LOCATIONS, valid_times()),
                min_size=1,
                max_size=10,
            ),
            label="msgs",
        )
        # Repeat some lines of this batch: exact ties within one batch.
        repeats = data.draw(st.lists(st.sampled_from(msgs), max_size=3), label="repeats")
        msgs = data.draw(st.permutations(msgs + repeats), label="order")
        batches.append((server, received_ns, msgs))
        lines_of.append([iamat_line(*m) for m in msgs])
    _check_iamat_batches(prior, batches, lines_of)


@SLOW
@given(data=st.data())
def test_take_iamats_reads_fields_whatever_the_white_space(data: st.DataObject) -> None:
    """The same messages, laid out with any ASCII white space, give the same batch."""
    msgs = data.draw(
        st.lists(st.tuples(_CLIENTS, VALID_LOCATIONS, valid_times()), min_size=1, max_size=6)
    )
    ws = st.binary(min_size=1, max_size=3).map(lambda raw: bytes(_WS[b % 6] for b in raw))
    pad = st.binary(max_size=2).map(lambda raw: bytes(_WS[b % 6] for b in raw))
    spaced = [data.draw(pad) + data.draw(ws).join([b"IAMAT", *m]) + data.draw(pad) for m in msgs]
    plain = [iamat_line(*m) for m in msgs]
    a_store, b_store = ClientStore(), ClientStore()
    n_a, _, a = run_iamats(spaced, a_store)
    n_b, _, b = run_iamats(plain, b_store)
    assert n_a == n_b == len(msgs)
    assert (a.replies, a.log, a.entries, a.flood) == (b.replies, b.log, b.entries, b.flood)
    assert state(a_store) == state(b_store)


@SLOW
@given(
    held=records([b"c"], sorted(KNOWN)),
    msg=st.tuples(VALID_LOCATIONS, valid_times()),
    server=SERVERS,
    received_ns=RECEIVED_NS,
)
def test_newer_than_packed_is_apply_packed(
    held: Record, msg: tuple[bytes, bytes], server: bytes, received_ns: int
) -> None:
    location, time = msg
    received = format_ns(received_ns)
    store = store_of([held])
    held_packed = dict(store.packed())[b"c"]
    assert packed_key(held_packed) == order_key(held)
    new = make_record(b"c", location, time, received, server)
    newer = newer_than_packed(location, time, received, server, held_packed)
    assert newer is (order_key(new) > order_key(held))
    assert store.apply(new) is newer
    # And take_iamats agrees on the same record.
    store = store_of([held])
    _n, _backlog, batch = run_iamats(
        [iamat_line(b"c", location, time)], store, server=server, received_ns=received_ns
    )
    assert batch.log[0].endswith(b"kept=yes" if newer else b"kept=no")


# -- take_changelocs: which lines ---------------------------------------------------------


@FAST
@given(line=changeloc_ish(), hold=st.booleans())
@example(line=b"CHANGELOC c +1+1 1 1.000000000 Hill", hold=False)
@example(line=b"CHANGELOC c +1+1 1 1.000000000 Hill", hold=True)
@example(line=b"CHANGELOC c +1+1 1 1.00000000 Hill", hold=False)
@example(line=b"CHANGELOC c +90.0001+1 1 1.000000000 Hill", hold=False)
@example(line=b"CHANGELOC c +1+1 1 1.000000000 Nobody", hold=False)
@example(line=b" CHANGELOC\tc\x0b+1+1\x0c1\r1.000000000  Hill ", hold=True)
@example(line=b"CHANGELOC c\t1 +1+1 1 1.000000000 Hill", hold=False)
@example(line=b"CHANGELOC c  +1+1 1 1.000000000 Hill", hold=False)
@example(line=b"CHANGELOC c +1+1 1 1.000000000 Hill ", hold=True)
@example(line=b"CHANGELOC c +1+1 1 1.000000000 Hill\x0b", hold=False)
@example(line=b"CHANGELOC  c +1+1 1 1.000000000 Hill", hold=True)
def test_take_changelocs_accepts_a_line_iff_parse_line_says_changeloc(
    line: bytes, hold: bool
) -> None:
    msg = parse_line(line, peer=True)
    store = ClientStore()
    if hold and isinstance(msg, ChangeLoc):
        store.apply(record_from_changeloc(msg))  # the line is then a flood's second copy
    before = state(store)
    n, backlog, batch = run_changelocs([line, b"PING"], store)
    if isinstance(msg, ChangeLoc):
        assert n == batch.received == 1
        assert list(backlog) == [b"PING"]
        if hold:
            assert batch.duplicates == 1 and batch.applied == 0
        elif msg.server not in KNOWN:
            assert batch.unknown == [(msg.server, msg.client)] and batch.applied == 0
        else:
            assert batch.applied == 1
            assert batch.flood == [record_from_changeloc(msg).changeloc()]
    else:
        assert n == batch.received == 0
        assert backlog[0] is line and len(backlog) == 2
        assert state(store) == before
        assert (batch.entries, batch.flood, batch.unknown) == ([], [], [])


@FAST
@given(data=st.data(), limit=st.integers(0, 14))
def test_take_changelocs_stops_at_the_first_other_line_and_respects_the_limit(
    data: st.DataObject, limit: int
) -> None:
    lines = data.draw(
        st.lists(weighted((3, CHANGELOC_POOL), (1, changeloc_ish())), max_size=10),
        label="lines",
    )
    store = ClientStore()
    # Hold some of the valid ones already, so the duplicate shortcut is taken too.
    for line in lines:
        msg = parse_line(line, peer=True)
        if isinstance(msg, ChangeLoc) and data.draw(st.booleans(), label="hold"):
            store.apply(record_from_changeloc(msg))
    n, backlog, batch = run_changelocs(lines, store, limit=limit)
    expected = min(limit, prefix_length(lines, ChangeLoc, peer=True))
    assert n == batch.received == expected
    assert all(a is b for a, b in zip(backlog, lines[n:], strict=True))
    assert batch.applied + batch.duplicates + len(batch.unknown) <= n
    assert len(batch.entries) == len(batch.flood) == batch.applied
    assert batch.replies == batch.log == []


@pytest.mark.parametrize(
    "stop",
    [
        b"PING",
        b"SYNCED 2",
        b"",
        b"CHANGELOC c +1+1 1 1.00000000 Hill",  # 8 decimals received
        b"CHANGELOC c +1+1 1.5.5 1.000000000 Hill",
        b"CHANGELOC c +91+1 1 1.000000000 Hill",
        b"CHANGELOC c +1+1 1 1.000000000 Hill extra",
        b"IAMAT c +1+1 1",
    ],
)
def test_take_changelocs_leaves_the_first_other_line_at_the_head(stop: bytes) -> None:
    lines = [
        b"CHANGELOC a +1+1 1 1.000000000 Hill",
        b"CHANGELOC b +1+1 1 1.000000000 Hill",
        stop,
        b"CHANGELOC c +1+1 1 1.000000000 Hill",
    ]
    store = ClientStore()
    n, backlog, batch = run_changelocs(lines, store)
    assert n == 2 and batch.received == 2 and batch.applied == 2
    assert list(backlog) == [stop, lines[3]]
    assert store.get(b"c") is None


def test_take_changelocs_counts_received_across_calls() -> None:
    store = ClientStore()
    batch = Batch()
    backlog = uncut([b"CHANGELOC a +1+1 1 1.000000000 Hill", b"PING"])
    assert take_changelocs(backlog, 10, store, KNOWN, batch) == 1
    assert backlog.popleft() == b"PING"
    backlog.add((b"CHANGELOC a +1+1 1 1.000000000 Hill\nCHANGELOC b +1+1 1 1.0 Hill", 2))
    assert take_changelocs(backlog, 10, store, KNOWN, batch) == 1
    assert (batch.received, batch.applied, batch.duplicates) == (2, 1, 1)
    assert list(backlog.lines()) == [b"CHANGELOC b +1+1 1 1.0 Hill"]


# -- take_changelocs: what it applies -----------------------------------------------------


def test_take_changelocs_duplicates_are_counted_and_not_flooded_again() -> None:
    record = make_record(b"c", b"+1+1", b"5", format_ns(6 * NS), b"Smith")
    line = changeloc_line(record)
    store = ClientStore()
    n, _backlog, batch = run_changelocs(
        [line, line, b"CHANGELOC  c +1+1\t5 6.000000000 Smith"], store
    )
    assert n == 3
    assert (batch.received, batch.applied, batch.duplicates) == (3, 1, 2)
    assert batch.flood == [record.changeloc()]
    assert batch.entries == [encode_entry(record)]
    assert store.get(b"c") == record


def test_take_changelocs_skips_unknown_servers() -> None:
    store = ClientStore()
    lines = [
        b"CHANGELOC a +1+1 1 1.000000000 Nobody",
        b"CHANGELOC b +1+1 1 1.000000000 Hill",
        b"CHANGELOC c +1+1 1 1.000000000 hill",
    ]
    n, _backlog, batch = run_changelocs(lines, store)
    assert n == 3 and batch.received == 3 and batch.applied == 1
    assert batch.unknown == [(b"Nobody", b"a"), (b"hill", b"c")]
    assert [r.client for r in store] == [b"b"]
    assert len(batch.flood) == 1


def test_take_changelocs_does_not_apply_an_older_record() -> None:
    newer = make_record(b"c", b"+1+1", b"5", format_ns(6 * NS), b"Hill")
    older = make_record(b"c", b"+2+2", b"4.9999999999999999999", format_ns(7 * NS), b"Smith")
    store = store_of([newer])
    n, _backlog, batch = run_changelocs([changeloc_line(older)], store)
    assert n == 1
    assert (batch.received, batch.applied, batch.duplicates, batch.unknown) == (1, 0, 0, [])
    assert batch.flood == batch.entries == []
    assert store.get(b"c") == newer


def test_take_changelocs_tie_on_time_server_location_is_ordered_by_bytes() -> None:
    a = make_record(b"c", b"+1+1", b"1.5", format_ns(2 * NS), b"Hill")
    b = make_record(b"c", b"+1+1", b"1.50", format_ns(3 * NS), b"Hill")
    winner = max(a, b, key=order_key)
    for order in ([a, b], [b, a]):
        store = ClientStore()
        run_changelocs([changeloc_line(r) for r in order], store)
        assert store.get(b"c") == winner


@SLOW
@given(data=st.data())
def test_take_changelocs_equals_apply_one_at_a_time(data: st.DataObject) -> None:
    clients = data.draw(st.lists(_CLIENTS, min_size=1, max_size=3, unique=True), label="clients")
    servers = [*sorted(KNOWN), b"Nobody"]
    prior = data.draw(st.lists(records(clients, sorted(KNOWN)), max_size=5), label="prior")
    updates = data.draw(st.lists(records(clients, servers), min_size=1, max_size=12))
    # Some copies of what is held already, and of earlier lines: a flood's second copies.
    copies = data.draw(st.lists(st.sampled_from(prior + updates), max_size=6))
    delivered = data.draw(st.permutations(updates + copies))
    lines = [changeloc_line(r) for r in delivered]
    store, reference = store_of(prior), store_of(prior)
    limit = data.draw(st.integers(1, len(lines)))
    total = Batch()
    backlog = cut(lines)
    while backlog:
        batch = Batch()
        n = take_changelocs(backlog, limit, store, KNOWN, batch)
        assert 1 <= n <= limit
        for attr in ("entries", "flood", "unknown"):
            getattr(total, attr).extend(getattr(batch, attr))
        total.received += batch.received
        total.applied += batch.applied
        total.duplicates += batch.duplicates
    expected = Batch()
    for record in delivered:
        expected.received += 1
        if reference.holds(record.client, record.packed()):
            expected.duplicates += 1
        elif record.server not in KNOWN:
            expected.unknown.append((record.server, record.client))
        elif reference.apply(record):
            expected.applied += 1
            expected.entries.append(encode_entry(record))
            expected.flood.append(record.changeloc())
    assert state(store) == state(reference)
    for attr in ("received", "applied", "duplicates", "unknown", "entries", "flood"):
        assert getattr(total, attr) == getattr(expected, attr), attr
    for entry, line in zip(total.entries, total.flood, strict=True):
        decoded = decode_entry(entry.removesuffix(b"\n"))
        msg = parse_line(line.removesuffix(b"\n"), peer=True)
        assert isinstance(msg, ChangeLoc) and decoded is not None
        assert record_from_changeloc(msg) == decoded
        assert decoded in delivered
    assert all(r.server in KNOWN for r in store)


@SLOW
@given(data=st.data())
def test_take_changelocs_any_interleaving_and_duplication_ends_in_the_same_store(
    data: st.DataObject,
) -> None:
    clients = data.draw(st.lists(_CLIENTS, min_size=1, max_size=4, unique=True), label="clients")
    updates = data.draw(
        st.lists(records(clients, [*sorted(KNOWN), b"Nobody"]), min_size=1, max_size=20),
        label="updates",
    )
    greatest: dict[bytes, Record] = {}
    for record in updates:
        if record.server in KNOWN:
            held = greatest.get(record.client)
            if held is None or order_key(record) > order_key(held):
                greatest[record.client] = record
    expected = {c: r.changeloc().split(b" ", 2)[2].removesuffix(b"\n") for c, r in greatest.items()}
    for i in range(3):
        extra = data.draw(st.lists(st.sampled_from(updates), max_size=len(updates)))
        delivered = data.draw(st.permutations(updates + extra), label=f"delivery {i}")
        limit = data.draw(st.integers(1, len(delivered)), label=f"limit {i}")
        store = ClientStore()
        backlog = cut([changeloc_line(r) for r in delivered])
        applied = duplicates = 0
        while backlog:
            batch = Batch()
            take_changelocs(backlog, limit, store, KNOWN, batch)
            applied += batch.applied
            duplicates += batch.duplicates
        assert state(store) == expected
        assert applied >= len(expected)
        # A copy of a record already held, delivered again, is always seen as a duplicate.
        again = Batch()
        take_changelocs(
            cut([changeloc_line(r) for r in greatest.values()]), 100, store, KNOWN, again
        )
        assert again.duplicates == len(greatest) and again.applied == 0 and again.flood == []


# -- a whole read: the block form, or line by line ------------------------------------------


def batch_state(batch: Batch) -> tuple[object, ...]:
    return (
        batch.replies,
        batch.entries,
        batch.flood,
        batch.log,
        batch.received,
        batch.applied,
        batch.duplicates,
        batch.unknown,
    )


def single_spaced(line: bytes) -> bool:
    return line == b" ".join(line.split())


# Single-spaced copies of the pool lines, so that whole blocks are often all good.
_SPACED_IAMATS = IAMAT_POOL.map(lambda line: b" ".join(line.split()))
_SPACED_CHANGELOCS = CHANGELOC_POOL.map(lambda line: b" ".join(line.split()))


@FAST
@given(
    lines=st.lists(
        weighted((6, _SPACED_IAMATS), (1, IAMAT_POOL), (1, iamat_ish())), min_size=1, max_size=8
    ).filter(lambda lines: not any(b"\n" in line for line in lines)),
    held=st.lists(st.sampled_from([b"IAMAT a +1+1 1", b"IAMAT b +0+0 2"]), max_size=2),
    limit=st.integers(1, 10),
)
@example(lines=[b"IAMAT a +1+1 1"], held=[], limit=1)
@example(lines=[b"IAMAT a +1+1 1", b"IAMAT a +1+1 1 "], held=[], limit=5)
@example(lines=[b"IAMAT a +1+1 1", b""], held=[], limit=5)
@example(lines=[b"IAMAT a\x1c +1+1 1", b"IAMAT a\xa0 -0+0 0"], held=[], limit=5)
@example(lines=[b"IAMAT a +1+1 1\r"], held=[], limit=5)
@example(lines=[b"IAMAT a +1+1 1", b"IAMAT a +1+1 2"], held=[], limit=1)
def test_take_iamats_takes_a_whole_read_as_it_takes_the_same_lines_one_by_one(
    lines: list[bytes], held: list[bytes], limit: int
) -> None:
    store, reference = ClientStore(), ClientStore()
    for x in held:
        run_iamats([x], store, received_ns=NS)
        run_iamats([x], reference, received_ns=NS)
    n, rest, batch = run_iamats(lines, store, received_ns=2 * NS, limit=limit, backlog_of=uncut)
    n_ref, rest_ref, expected = run_iamats(lines, reference, received_ns=2 * NS, limit=limit)
    assert (n, rest) == (n_ref, rest_ref)
    assert batch_state(batch) == batch_state(expected)
    assert state(store) == state(reference)
    if all(isinstance(parse_line(x), IAmAt) and single_spaced(x) for x in lines):
        assert n == min(limit, len(lines))


@FAST
@given(
    lines=st.lists(
        weighted((6, _SPACED_CHANGELOCS), (1, CHANGELOC_POOL), (1, changeloc_ish())),
        min_size=1,
        max_size=8,
    ).filter(lambda lines: not any(b"\n" in line for line in lines)),
    held=st.lists(_SPACED_CHANGELOCS, max_size=3),
    limit=st.integers(1, 10),
)
@example(lines=[b"CHANGELOC a +1+1 1 1.000000000 Hill"] * 2, held=[], limit=5)
@example(
    lines=[b"CHANGELOC a +1+1 1 1.000000000 Hill"],
    held=[b"CHANGELOC a +1+1 2 1.000000000 Hill"],
    limit=5,
)
@example(lines=[b"CHANGELOC a +1+1 1 1.000000000 Nobody"], held=[], limit=5)
@example(lines=[b"CHANGELOC a +1+1 1 1.000000000 Hill", b"PING"], held=[], limit=5)
@example(lines=[b"CHANGELOC a\x1c +1+1 1 1.000000000 Hill\xff"], held=[], limit=5)
def test_take_changelocs_takes_a_whole_read_as_it_takes_the_same_lines_one_by_one(
    lines: list[bytes], held: list[bytes], limit: int
) -> None:
    store, reference = ClientStore(), ClientStore()
    run_changelocs(held, store)
    run_changelocs(held, reference)
    n, rest, batch = run_changelocs(lines, store, limit=limit, backlog_of=uncut)
    n_ref, rest_ref, expected = run_changelocs(lines, reference, limit=limit)
    assert (n, rest) == (n_ref, rest_ref)
    assert batch_state(batch) == batch_state(expected)
    assert state(store) == state(reference)


@FAST
@given(
    held=st.lists(_SPACED_CHANGELOCS, min_size=1, max_size=4),
    others=st.lists(
        weighted((6, _SPACED_CHANGELOCS), (1, CHANGELOC_POOL), (1, changeloc_ish())),
        max_size=5,
    ).filter(lambda lines: not any(b"\n" in line for line in lines)),
    data=st.data(),
    limit=st.integers(1, 10),
)
@example(  # a copy of the record held, after a newer record of its client
    held=[b"CHANGELOC a +1+1 1 1.000000000 Hill"],
    others=[b"CHANGELOC a +1+1 2 1.000000000 Hill"],
    data=None,
    limit=5,
)
def test_a_read_sifted_for_copies_is_taken_as_its_lines_one_by_one(
    held: list[bytes], others: list[bytes], data: st.DataObject | None, limit: int
) -> None:
    """`sift`: the copies of records held are dropped on sight, the rest checked whole;
    what comes out, held-back lines included, is what the lines one by one give."""
    store, reference = ClientStore(), ClientStore()
    run_changelocs(held, store)
    run_changelocs(held, reference)
    lines = others + held if data is None else data.draw(st.permutations(held + others))
    held_back = {line + b"\n": None for line in lines[::2]}
    held_back_ref = dict(held_back)
    n, rest, batch = run_changelocs(
        lines, store, limit=limit, backlog_of=uncut, held_back=held_back, sift=True
    )
    n_ref, rest_ref, expected = run_changelocs(
        lines, reference, limit=limit, held_back=held_back_ref
    )
    assert (n, rest) == (n_ref, rest_ref)
    assert batch_state(batch) == batch_state(expected)
    assert state(store) == state(reference)
    assert held_back == held_back_ref


def test_a_sifted_read_drops_its_copies_and_applies_the_rest() -> None:
    held = [b"CHANGELOC c%d +1+1 1 1.000000000 Hill" % i for i in range(4)]
    newer = [b"CHANGELOC d%d +1+1 2 1.000000000 Hill" % i for i in range(3)]
    store = ClientStore()
    run_changelocs(held, store)
    lines = [held[0], newer[0], held[1], held[2], newer[1], newer[2], held[3]]
    held_back = {newer[1] + b"\n": None, held[2] + b"\n": None, b"other\n": None}
    n, rest, batch = run_changelocs(lines, store, backlog_of=uncut, held_back=held_back, sift=True)
    assert (n, rest) == (7, [])
    assert (batch.received, batch.applied, batch.duplicates) == (7, 3, 4)
    assert batch.flood == [line + b"\n" for line in newer]
    assert held_back == {b"other\n": None}


def test_a_long_single_spaced_read_is_taken_whole_like_its_lines() -> None:
    iamats = [iamat_line(b"c%d" % (i % 7), b"+1+1", b"%d.5" % (i % 5)) for i in range(300)]
    store, reference = ClientStore(), ClientStore()
    n, rest, batch = run_iamats(iamats, store, received_ns=9 * NS, conn_id=3, backlog_of=uncut)
    n_ref, _rest, expected = run_iamats(iamats, reference, received_ns=9 * NS, conn_id=3)
    assert n == n_ref == 300 and rest == [] and batch_state(batch) == batch_state(expected)
    assert state(store) == state(reference)
    # The flood those IAMATs made, twice over and shuffled, into a node holding none of it.
    flood = [line.removesuffix(b"\n") for line in batch.flood] * 2
    flood = flood[1::2] + flood[::2]
    store, reference = ClientStore(), ClientStore()
    n, rest, batch = run_changelocs(flood, store, backlog_of=uncut)
    n_ref, _rest, expected = run_changelocs(flood, reference)
    assert n == n_ref == len(flood) and batch_state(batch) == batch_state(expected)
    assert batch.duplicates > 0 and batch.applied > 0
    assert state(store) == state(reference)


def test_a_backlog_keeps_reads_whole_until_someone_needs_single_lines() -> None:
    backlog = LineBacklog()
    backlog.add((b"", 0))
    assert not backlog and len(backlog) == 0
    backlog.add((b"a\nb", 2))
    backlog.add((b"c", 1))
    assert backlog.whole(3) == (b"a\nb\nc", 3) and backlog.whole(2) is None
    assert backlog.lines()[0] == b"a" and backlog.whole(3) is None  # cut now
    backlog.add((b"d\ne", 2))
    assert backlog.popleft() == b"a" and len(backlog) == 4
    backlog.put_back([b"x", b"y"])
    assert list(backlog.lines()) == [b"x", b"y", b"b", b"c", b"d", b"e"]
    backlog.clear()
    assert not backlog


def test_a_backlogs_head_is_checked_without_cutting_its_block() -> None:
    backlog = LineBacklog()
    backlog.add((b"WHATSAT a 1 1\nIAMAT b +1+1 1", 2))
    assert backlog.head_starts_with(b"WHATSAT") and not backlog.head_starts_with(b"IAMAT")
    assert backlog.whole(2) is not None  # still whole
    assert backlog.popleft() == b"WHATSAT a 1 1"
    assert backlog.head_starts_with(b"IAMAT") and not backlog.head_starts_with(b"WHATSAT")
