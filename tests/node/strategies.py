"""Hypothesis strategies shared by the property tests: records, times, locations, and the
well- and ill-formed lines of the ingest tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from hypothesis import strategies as st

from node.protocol import format_ns
from node.store import Record
from tests.node.records import OrderKey, make_record, order_key

# Valid locations only: few of them, so records with equal times tie on them.
VALID_LOCATIONS = st.one_of(
    st.sampled_from([b"+34.068930-118.445127", b"+34.06893-118.445127", b"-0+0", b"+90-180"]),
    st.builds(
        lambda lat, lon: b"%+.4f%+.3f" % (lat, lon),
        st.integers(-900_000, 900_000).map(lambda n: n / 10_000),
        st.integers(-180_000, 180_000).map(lambda n: n / 1000),
    ),
)


@st.composite
def valid_times(draw: st.DrawFn) -> bytes:
    """`DIGITS[.DIGITS]`, with leading and trailing zeros so equal values are spelled apart."""
    if draw(st.booleans()):  # few values: ties to break by server, location, bytes
        whole = b"%d" % draw(st.integers(0, 3))
        frac = draw(st.sampled_from([b"", b"5", b"25", b"000000001", b"123456789123"]))
    else:  # anything, including more digits than a 64-bit integer holds
        whole = b"%d" % draw(st.integers(0, 10**30))
        frac = draw(st.text("0123456789", max_size=15)).encode()
    whole = b"0" * draw(st.integers(0, 2)) + whole
    if frac or draw(st.booleans()):
        return whole + b"." + (frac or b"0") + b"0" * draw(st.integers(0, 3))
    return whole


T = TypeVar("T")
NS = 1_000_000_000
KNOWN = frozenset({b"Hill", b"Jaquez", b"Smith", b"Campbell", b"Singleton"})


# -- strategies -------------------------------------------------------------------------

_WS = b" \t\r\x0b\x0c\n"  # every byte bytes.split() splits on
_NOT_WS = [b"\xa0", b"\xc2\xa0", b"\x1c", b"\x1f", b"\x85", b"\x00"]  # never separators


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of `choices`, each picked in proportion to its weight (`st.one_of` is uniform over
    distinct strategies and merges repeated ones, so it cannot weight)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def _digits(min_size: int, max_size: int) -> st.SearchStrategy[bytes]:
    return st.text("0123456789", min_size=min_size, max_size=max_size).map(str.encode)


_CLIENTS = st.one_of(
    st.sampled_from([b"kiwi.cs.ucla.edu", b"a", b"IAMAT", b"\xff\xfe", b"caf\xc3\xa9", b"x\xa0y"]),
    st.binary(min_size=1, max_size=6).map(
        lambda raw: bytes(b if b not in _WS else 0x5F for b in raw)
    ),
)


@st.composite
def coordinates(draw: st.DrawFn, bound: int = 180) -> bytes:
    """One signed coordinate, well formed, often right at or just past a bound."""
    sign = draw(st.sampled_from([b"+", b"-"]))
    whole = draw(
        st.one_of(
            st.integers(0, bound),
            st.integers(0, 200),
            st.sampled_from([0, 9, 10, 19, 89, 90, 91, 99, 100, 109, 170, 179, 180, 181, 189]),
            st.integers(0, 10**25),
        )
    )
    zeros = b"0" * draw(st.integers(0, 3))
    frac = draw(
        st.one_of(
            st.none(),
            st.sampled_from([b"0", b"00", b"000000000000", b"0001", b"5", b"9", b"0" * 20 + b"1"]),
            _digits(1, 12),
        )
    )
    return sign + zeros + b"%d" % whole + (b"" if frac is None else b"." + frac)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes], alphabet: bytes) -> bytes:
    """`base` with one byte inserted, deleted or replaced: mostly malformed neighbours."""
    value = bytearray(draw(base))
    i = draw(st.integers(0, len(value)))
    op = draw(st.sampled_from(["insert", "delete", "replace"]))
    byte = draw(st.sampled_from(list(alphabet)))
    if op == "insert":
        value.insert(i, byte)
    elif i < len(value):
        if op == "delete":
            del value[i]
        else:
            value[i] = byte
    return bytes(value)


_LOCATION_ALPHABET = b"+-.0123456789e \xd9"
_WELL_FORMED_LOCATIONS = st.builds(lambda a, b: a + b, coordinates(90), coordinates(180))
_NON_ASCII_DIGITS = ["+\u0661+1", "+1+\u0661", "+\u0669\u0660-1"]
LOCATION_FIELDS = weighted(
    (4, _WELL_FORMED_LOCATIONS),
    (2, mutated(_WELL_FORMED_LOCATIONS, _LOCATION_ALPHABET)),
    (1, st.binary(max_size=12).map(lambda raw: bytes(_LOCATION_ALPHABET[b % 14] for b in raw))),
    (1, st.sampled_from([b"+34.068930-118.445127", b"+1+1+1", b"1+1", b"+1", b""])),
    (1, st.sampled_from(_NON_ASCII_DIGITS).map(str.encode)),
)

BAD_TIMES = st.sampled_from(
    [b"-1", b"+1", b"1e5", b".5", b"1.", b"1.2.3", b"0x10", b"1_000", "\u0661".encode(), b"1,5"]
)
TIME_FIELDS = weighted(
    (2, valid_times()), (1, BAD_TIMES), (1, mutated(valid_times(), b"0123456789.+-e"))
)

RECEIVED_NS = st.one_of(
    st.integers(0, 2**63),
    st.integers(0, 4 * NS),  # near the tie-heavy times: negative and zero diffs
    st.sampled_from([0, NS, 2 * NS, 2_500_000_000, 1520023935182837383]),
)
TIME_RECEIVED = RECEIVED_NS.map(format_ns)
RECEIVED_FIELDS = weighted(
    (4, TIME_RECEIVED),
    (1, _digits(21, 40).map(lambda d: d + b".123456789")),  # valid, beyond 64 bits
    (
        2,
        st.sampled_from(
            [b"1.5", b"1.0000000000", b"1.00000000", b"-1.000000000", b"1", b"1.00000000a", b".5"]
        ),
    ),
)
SERVERS = st.sampled_from(sorted(KNOWN))
SERVER_FIELDS = weighted((3, SERVERS), (1, st.sampled_from([b"Nobody", b"hill", b"\xffodd"])))


# For whole lines: each field is valid more often than not, so that a good share of the
# lines pass and the rest fail on one field at a time.
_LINE_LOCATIONS = weighted((4, VALID_LOCATIONS), (1, _WELL_FORMED_LOCATIONS), (1, LOCATION_FIELDS))
_LINE_TIMES = weighted((3, valid_times()), (1, TIME_FIELDS))


@st.composite
def joined(draw: st.DrawFn, fields: list[bytes]) -> bytes:
    """Fields joined by runs of white space, sometimes by a byte that is not white space."""
    runs = st.binary(min_size=1, max_size=3).map(lambda raw: bytes(_WS[b % 5] for b in raw))
    sep = weighted((5, st.just(b" ")), (5, runs), (1, st.sampled_from(_NOT_WS)))
    out = draw(st.binary(max_size=2).map(lambda raw: bytes(_WS[b % 5] for b in raw)))
    for i, field in enumerate(fields):
        if i:
            out += draw(sep)
        out += field
    return out + draw(st.binary(max_size=2).map(lambda raw: bytes(_WS[b % 5] for b in raw)))


@st.composite
def _iamat_ish(draw: st.DrawFn) -> bytes:
    keyword = draw(
        st.sampled_from(
            [b"IAMAT"] * 24 + [b"iamat", b"IAMAT:", b"WHATSAT", b"CHANGELOC", b"XIAMAT", b"AT"]
        )
    )
    fields = [keyword, draw(_CLIENTS), draw(_LINE_LOCATIONS), draw(_LINE_TIMES)]
    count = draw(st.sampled_from([4] * 12 + [3, 5, 1]))
    if count < 4:
        fields = fields[:count]
    elif count > 4:
        fields.append(draw(st.sampled_from([b"extra", b"1", b"+1+1"])))
    return draw(joined(fields))


@st.composite
def _changeloc_ish(draw: st.DrawFn) -> bytes:
    keyword = draw(
        st.sampled_from([b"CHANGELOC"] * 24 + [b"changeloc", b"IAMAT", b"CHANGELOCS", b"PING"])
    )
    fields = [
        keyword,
        draw(_CLIENTS),
        draw(_LINE_LOCATIONS),
        draw(_LINE_TIMES),
        draw(RECEIVED_FIELDS),
        draw(SERVER_FIELDS),
    ]
    count = draw(st.sampled_from([6] * 12 + [5, 7, 1]))
    if count < 6:
        fields = fields[:count]
    elif count > 6:
        fields.append(b"extra")
    return draw(joined(fields))


def iamat_ish() -> st.SearchStrategy[bytes]:
    """IAMAT lines good and bad, and now and then some other line."""
    other = st.sampled_from([b"", b" \t ", b"PING", b"WHATSAT kiwi 10 5", b"\xa0"])
    return weighted((12, _iamat_ish()), (1, other))


def changeloc_ish() -> st.SearchStrategy[bytes]:
    """CHANGELOC lines good and bad, and now and then some other line."""
    other = st.sampled_from([b"", b"  ", b"PING", b"SYNCED 3", b"HELLO a b c"])
    return weighted((12, _changeloc_ish()), (1, other))


@st.composite
def records(draw: st.DrawFn, clients: Sequence[bytes], servers: Sequence[bytes]) -> Record:
    return make_record(
        draw(st.sampled_from(clients)),
        draw(VALID_LOCATIONS),
        draw(valid_times()),
        draw(TIME_RECEIVED),
        draw(st.sampled_from(servers)),
    )


# Cheap lines for the sequence tests, most of them valid, so runs are long before a stop.
IAMAT_POOL = st.sampled_from(
    [
        b"IAMAT a +1+1 1",
        b"IAMAT b -90-180 1.5",
        b"IAMAT a +0+0 01.50",
        b"\tIAMAT  c\x0b+34.068930-118.445127 1520023934.918963997 ",
        b"IAMAT a +90.0001+0 1",
        b"IAMAT a +1+1",
        b"WHATSAT a 10 5",
        b"",
    ]
)
CHANGELOC_POOL = st.sampled_from(
    [
        b"CHANGELOC a +1+1 1 1.000000000 Hill",
        b"CHANGELOC a +1+1 2 1.000000000 Smith",
        b"CHANGELOC b -90-180 1.5 0.000000001 Jaquez",
        b" CHANGELOC\tc +0+0  01.50 99.999999999 Nobody",
        b"CHANGELOC a +1+1 1 1.00000000 Hill",
        b"CHANGELOC a +1+181 1 1.000000000 Hill",
        b"PING",
        b"",
    ]
)


# -- the store's property tests ------------------------------------------------------

_STORE_WS = b" \t\n\r\x0b\x0c"
# Clients: any bytes but the six field separators, valid UTF-8 or not.
STORE_CLIENTS = st.binary(min_size=1, max_size=6).map(
    lambda raw: bytes(b if b not in _STORE_WS else 0x5F for b in raw)
)
_STORE_SERVERS = st.sampled_from(
    [b"Goloman", b"Hands", b"Holiday", b"Welsh", b"Wilkes", b"\xffodd"]
)


@st.composite
def store_records(draw: st.DrawFn, clients: Sequence[bytes]) -> Record:
    return make_record(
        draw(st.sampled_from(clients)),
        draw(VALID_LOCATIONS),
        draw(valid_times()),
        format_ns(draw(st.integers(0, 2**63))),
        draw(_STORE_SERVERS),
    )


@st.composite
def store_updates(draw: st.DrawFn) -> list[Record]:
    """Distinct updates to a few clients: one record per ordering key, as a herd makes them.

    The node that hears an IAMAT stores at most one record per key (an equal key is the same
    record and is dropped), so two different records never share a key in a herd.
    """
    clients = draw(st.lists(STORE_CLIENTS, min_size=1, max_size=4, unique=True))
    records = draw(st.lists(store_records(clients), min_size=1, max_size=30))
    by_key: dict[tuple[bytes, OrderKey], Record] = {}
    for record in records:
        by_key.setdefault((record.client, order_key(record)), record)
    return list(by_key.values())


@st.composite
def deliveries(draw: st.DrawFn, updates: list[Record]) -> list[Record]:
    """The updates in any order, each at least once, some several times."""
    extra = draw(st.lists(st.sampled_from(updates), max_size=2 * len(updates)))
    return draw(st.permutations([*updates, *extra]))
