"""Tests for node.protocol: every valid and invalid line form, exact diffs, and line splitting.

Sans-IO, h11-style: bytes in, messages out, no sockets and no clock.
"""

from __future__ import annotations

import itertools
import random
import re
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.protocol import (
    MAX_BOUND,
    MAX_RADIUS_KM,
    Invalid,
    LineSplitter,
    PeerLine,
    TimeKey,
    WhatsAt,
    diff_from_received,
    format_at,
    format_diff,
    format_invalid,
    format_ns,
    parse_location,
    time_key,
)
from node.store import Record
from tests.node.records import ChangeLoc, IAmAt
from tests.node.records import parse as parse_line

NS = 1_000_000_000
DIFF_FORM = re.compile(rb"[+-]\d+\.\d{9}")


def reference_diff(received_ns: int, time_sent: bytes) -> bytes:
    """The PROTOCOL diff computed with exact fractions, rounded half-to-even beyond 1 ns."""
    whole, _, frac = time_sent.partition(b".")
    sent_ns = Fraction(int(whole + frac) * NS, 10 ** len(frac))
    diff_ns = round(Fraction(received_ns) - sent_ns)  # Fraction rounds half to even
    sign = b"-" if diff_ns < 0 else b"+"
    s, frac_ns = divmod(abs(diff_ns), NS)
    return b"%s%d.%09d" % (sign, s, frac_ns)


# -- IAMAT ------------------------------------------------------------------------------


def test_iamat_paper_example_parses_to_its_fields():
    line = b"IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997"
    assert parse_line(line) == IAmAt(
        b"kiwi.cs.ucla.edu", b"+34.068930-118.445127", b"1520023934.918963997"
    )


@pytest.mark.parametrize(
    "location",
    [
        b"+34-118",
        b"+34.1-118.2",
        b"-34.1+118.2",
        b"+0+0",
        b"-0-0",
        b"+90+180",
        b"-90-180",
        b"+90.000000000-180.000000000",
        b"+034.5-0118.5",
        b"+1.123456789012345678901234567890+2.5",
    ],
)
def test_iamat_accepts_location(location):
    assert parse_line(b"IAMAT c " + location + b" 1") == IAmAt(b"c", location, b"1")


@pytest.mark.parametrize(
    "location",
    [
        b"34.1-118.2",  # latitude without its sign
        b"+34.1118.2",  # longitude without its sign
        b"+34.1-118.",  # fraction dot without digits
        b"+34.-118.2",
        b"+.5-118.2",
        b"+34.1",  # latitude only
        b"+34.1-118.2+1",  # three numbers
        b"++34.1-118.2",
        b"+34.1--118.2",
        b"+90.0000001+0",  # latitude beyond 90
        b"-90.0000001+0",
        b"+0-180.5",  # longitude beyond 180
        b"+0+180.0000000000000000000000000001",
        b"+3e1-118",
        b"+34,1-118,2",
        b"+34.1-118.2x",
        b"+\xd9\xa3\xd9\xa4-118",  # Arabic-Indic digits are not DIGITS
        b"+1_0-118",
        b"",
    ],
)
def test_iamat_rejects_location(location):
    line = b"IAMAT c " + location + b" 1"
    assert parse_line(line) == Invalid(line)


@pytest.mark.parametrize(
    "time", [b"0", b"1520023934", b"1520023934.9", b"1520023934.918963997", b"1." + b"1" * 40]
)
def test_iamat_accepts_time(time):
    assert parse_line(b"IAMAT c +1+1 " + time) == IAmAt(b"c", b"+1+1", time)


@pytest.mark.parametrize(
    "time",
    [
        b"+1520023934.5",
        b"-1520023934.5",
        b"1e5",
        b"1E5",
        b"1.5e3",
        b"1520023934.",
        b".5",
        b"1.2.3",
        b"0x10",
        b"1_000",
        b"inf",
        b"nan",
        b"\xd9\xa1",  # Arabic-Indic one
    ],
)
def test_iamat_rejects_time(time):
    line = b"IAMAT c +1+1 " + time
    assert parse_line(line) == Invalid(line)


@pytest.mark.parametrize(
    "line",
    [
        b"IAMAT",
        b"IAMAT c",
        b"IAMAT c +1+1",
        b"IAMAT c +1+1 1 extra",
        b"iamat c +1+1 1",  # keywords are case-sensitive
        b"Iamat c +1+1 1",
        b"IAMATc +1+1 1",
        b"IAMAT\xc2\xa0c +1+1 1",  # a non-breaking space is part of the keyword field
        b"IAMAT\x1cc +1+1 1",  # \x1c separates str fields, never bytes fields
        b"BOGUS 1 2 3 4",
        b"AT A +0.1 c +1+1 1",
    ],
)
def test_malformed_iamat_or_unknown_keyword_is_invalid(line):
    assert parse_line(line) == Invalid(line)


@pytest.mark.parametrize(
    "line",
    [
        b"IAMAT\tc\t+1+1\t1",
        b"IAMAT   c  +1+1    1",
        b"IAMAT\x0bc\x0c+1+1\r1",
        b"  \t IAMAT c +1+1 1 \t\x0b\x0c\r ",
        b"\rIAMAT c +1+1 1\r",
    ],
)
def test_any_ascii_white_space_separates_fields(line):
    assert parse_line(line) == IAmAt(b"c", b"+1+1", b"1")


def test_client_name_with_non_breaking_space_is_kept_whole():
    assert parse_line(b"IAMAT a\xc2\xa0b +1+1 1") == IAmAt(b"a\xc2\xa0b", b"+1+1", b"1")


def test_non_utf8_client_name_is_kept_byte_for_byte():
    assert parse_line(b"IAMAT \xff\xfe\x80 +1+1 1") == IAmAt(b"\xff\xfe\x80", b"+1+1", b"1")


@pytest.mark.parametrize("line", [b"", b" ", b"\t", b"\r", b" \t\x0b\x0c\r\n "])
def test_blank_and_all_white_space_lines_get_nothing(line):
    assert parse_line(line) is None
    assert parse_line(line, peer=True) is None


def test_lone_non_breaking_space_is_not_blank():
    assert parse_line(b"\xc2\xa0") == Invalid(b"\xc2\xa0")


def test_invalid_keeps_the_line_exactly_as_received():
    line = b"  BOGUS\t1  2 "
    assert parse_line(line) == Invalid(line)
    assert format_invalid(line) == b"?   BOGUS\t1  2 \n"


# -- WHATSAT ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("radius", "km"),
    [(b"0", 0.0), (b"10", 10.0), (b"2.5", 2.5), (b"50", 50.0), (b"50.000", 50.0), (b"007", 7.0)],
)
def test_whatsat_accepts_radius(radius, km):
    assert parse_line(b"WHATSAT c " + radius + b" 5") == WhatsAt(b"c", km, 5)


@pytest.mark.parametrize(
    "radius",
    [b"50.0001", b"51", b"-1", b"+1", b".5", b"5.", b"1e1", b"inf", b"nan", b"1,5", b"\xd9\xa1"],
)
def test_whatsat_rejects_radius(radius):
    line = b"WHATSAT c " + radius + b" 5"
    assert parse_line(line) == Invalid(line)


@pytest.mark.parametrize(("bound", "n"), [(b"1", 1), (b"20", 20), (b"7", 7), (b"01", 1)])
def test_whatsat_accepts_bound(bound, n):
    # `01` is a string of decimal digits, so it is the decimal integer 1.
    assert parse_line(b"WHATSAT c 10 " + bound) == WhatsAt(b"c", 10.0, n)


@pytest.mark.parametrize(
    "bound", [b"0", b"21", b"00", b"-1", b"+1", b"1.0", b"1e1", b"", b"\xd9\xa1"]
)
def test_whatsat_rejects_bound(bound):
    line = b"WHATSAT c 10 " + bound
    assert parse_line(line) == Invalid(line)


@pytest.mark.parametrize(
    "line", [b"WHATSAT c 10", b"WHATSAT c 10 5 5", b"WHATSAT", b"whatsat c 10 5"]
)
def test_whatsat_with_wrong_fields_is_invalid(line):
    assert parse_line(line) == Invalid(line)


def reference_whatsat(radius: bytes, bound: bytes) -> tuple[float, int] | None:
    """PROTOCOL's rule read literally: radius DIGITS[.DIGITS] km, at most MAX_RADIUS_KM (50);
    bound decimal digits, 1 to MAX_BOUND (20); compared exactly, as Fractions. The node's
    patterns spell the two limits out, so a change of either fails here."""
    if re.fullmatch(rb"[0-9]+(\.[0-9]+)?", radius) is None:
        return None
    if re.fullmatch(rb"[0-9]+", bound) is None:
        return None
    whole, _, frac = radius.partition(b".")
    km = Fraction(int(whole + frac), 10 ** len(frac))
    n = int(bound)
    if km > MAX_RADIUS_KM or not 1 <= n <= MAX_BOUND:
        return None
    return float(km), n


def _number(max_digits: int) -> st.SearchStrategy[bytes]:
    digits = st.text("0123456789", min_size=1, max_size=max_digits).map(str.encode)
    near = st.sampled_from([b"50", b"49", b"51", b"050", b"20", b"21", b"0", b"1", b"19"])
    return st.one_of(digits, near)


@given(
    whole=_number(4),
    frac=st.one_of(st.none(), _number(4), st.sampled_from([b"0", b"000", b"0001"])),
    bound=st.one_of(_number(3), st.sampled_from([b"+1", b"1.0", b"", b"0x1"])),
)
def test_whatsat_radius_and_bound_checks_agree_with_exact_arithmetic(
    whole: bytes, frac: bytes | None, bound: bytes
) -> None:
    radius = whole if frac is None else whole + b"." + frac
    line = b"WHATSAT c " + radius + b" " + bound
    expected = reference_whatsat(radius, bound)
    got = parse_line(line)
    if expected is None:
        assert got == Invalid(line)
    else:
        assert got == WhatsAt(b"c", *expected)


def test_whatsat_with_a_5000_digit_radius_gets_a_verdict():
    assert parse_line(b"WHATSAT c " + b"0" * 5000 + b"5 3") == WhatsAt(b"c", 5.0, 3)
    line = b"WHATSAT c 1" + b"0" * 5000 + b" 3"
    assert parse_line(line) == Invalid(line)


def test_whatsat_with_a_5000_digit_bound_gets_a_verdict_not_an_exception():
    assert parse_line(b"WHATSAT c 10 " + b"0" * 5000 + b"1") == WhatsAt(b"c", 10.0, 1)
    line = b"WHATSAT c 10 1" + b"0" * 5000
    assert parse_line(line) == Invalid(line)


def test_iamat_with_a_huge_integer_time_parses_not_raises():
    time = b"1" * 5000
    assert parse_line(b"IAMAT c +1+1 " + time) == IAmAt(b"c", b"+1+1", time)


# -- peer lines -------------------------------------------------------------------------

CHANGELOC = b"CHANGELOC c +1-2 1520023934.918963997 1520023935.182837383 Bailey"


def test_changeloc_parses_on_an_authenticated_peer_link():
    assert parse_line(CHANGELOC, peer=True) == ChangeLoc(
        b"c", b"+1-2", b"1520023934.918963997", b"1520023935.182837383", b"Bailey"
    )


def test_changeloc_from_an_unauthenticated_connection_is_invalid():
    assert parse_line(CHANGELOC) == Invalid(CHANGELOC)


@pytest.mark.parametrize(
    "time_received",
    [b"1520023935", b"1520023935.18283738", b"1520023935.1828373830", b"+1.000000000", b".1"],
)
def test_changeloc_needs_exactly_nine_decimals_received(time_received):
    line = b"CHANGELOC c +1-2 1 " + time_received + b" Bailey"
    assert parse_line(line, peer=True) == Invalid(line)


@pytest.mark.parametrize(
    "line",
    [
        b"CHANGELOC c 1-2 1 1.000000000 Bailey",
        b"CHANGELOC c +1-2 1e3 1.000000000 Bailey",
        b"CHANGELOC c +1-2 1 1.000000000",
        b"CHANGELOC c +1-2 1 1.000000000 Bailey extra",
        b"changeloc c +1-2 1 1.000000000 Bailey",
    ],
)
def test_malformed_changeloc_is_invalid_even_from_a_peer(line):
    assert parse_line(line, peer=True) == Invalid(line)


@pytest.mark.parametrize(
    ("line", "keyword", "fields"),
    [
        (b"HELLO A B 0123", b"HELLO", (b"A", b"B", b"0123")),
        (b"HELLO", b"HELLO", ()),
        (b"AUTH\tabc", b"AUTH", (b"abc",)),
        (b" AUTH a b ", b"AUTH", (b"a", b"b")),
    ],
)
def test_handshake_lines_are_peer_lines_before_authentication(line, keyword, fields):
    assert parse_line(line) == PeerLine(keyword, fields)


@pytest.mark.parametrize("line", [b"HELLO A B 0123", b"AUTH abc"])
def test_handshake_lines_are_invalid_once_authenticated(line):
    assert parse_line(line, peer=True) == Invalid(line)


@pytest.mark.parametrize("line", [b"hello A B 0123", b"auth abc", b"WELCOME A", b"CHALLENGE A"])
def test_other_handshake_words_are_invalid_from_a_client(line):
    assert parse_line(line) == Invalid(line)


# -- location and time helpers ----------------------------------------------------------


def test_parse_location_gives_signed_degrees():
    assert parse_location(b"+34.068930-118.445127") == (34.06893, -118.445127)
    assert parse_location(b"-90+180") == (-90.0, 180.0)
    assert parse_location(b"+90.1+0") is None


def test_time_key_compares_times_as_exact_decimals():
    def key(t: bytes) -> TimeKey:
        k = time_key(t)
        assert k is not None
        return k

    assert key(b"1.5") == key(b"1.50") == key(b"01.500")
    assert key(b"1") == key(b"1.0") == key(b"1.000000000000")
    assert key(b"1.5") < key(b"1.50001")
    assert key(b"1.49999999999999999999") < key(b"1.5")
    assert key(b"2") > key(b"1.99999999999999999999")
    assert key(b"10") > key(b"9.9")


def test_time_key_orders_like_fractions():
    rng = random.Random(6709)
    times = [
        b"%d.%s" % (rng.randrange(3), b"".join(b"%d" % rng.randrange(10) for _ in range(n)))
        if n
        else b"%d" % rng.randrange(3)
        for n in (rng.randrange(6) for _ in range(300))
    ]

    def exact(t: bytes) -> Fraction:
        return Fraction(t.decode())

    for a, b in itertools.pairwise(times):
        ka, kb = time_key(a), time_key(b)
        assert ka is not None and kb is not None
        assert (ka < kb) == (exact(a) < exact(b)), (a, b)
        assert (ka == kb) == (exact(a) == exact(b)), (a, b)


@pytest.mark.parametrize("time", [b"-1", b"+1", b"1e5", b".5", b"1.", b""])
def test_time_key_rejects_malformed_time(time):
    assert time_key(time) is None


# -- diff -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received_ns", "time_sent", "diff"),
    [
        (1520023935182837383, b"1520023934.918963997", b"+0.263873386"),
        (1520023934918962997, b"1520023934.918963997", b"-0.000001000"),
        (1520023934918963997, b"1520023934.918963997", b"+0.000000000"),
        (1520023934000050000, b"1520023934", b"+0.000050000"),  # str(float) would say 5e-05
        (1520023934000000005, b"1520023934", b"+0.000000005"),
        (1520023934000000000, b"1520023935", b"-1.000000000"),
        (1520023934919000000, b"1520023934.918", b"+0.001000000"),
        (1520023934918963997, b"1520023934.918963997000", b"+0.000000000"),
        (1520023934918963998, b"1520023934.918963996999", b"+0.000000001"),
        (0, b"0", b"+0.000000000"),
        (5 * NS, b"0", b"+5.000000000"),
        (0, b"1520023934.5", b"-1520023934.500000000"),
    ],
)
def test_format_diff_is_signed_with_nine_decimals(received_ns, time_sent, diff):
    assert format_diff(received_ns, time_sent) == diff


@pytest.mark.parametrize(
    ("received_ns", "time_sent", "diff"),
    [
        (2 * NS, b"1.0000000005", b"+1.000000000"),  # 999999999.5 ns -> 1000000000
        (2 * NS, b"1.0000000015", b"+0.999999998"),  # 999999998.5 ns -> 999999998
        (2 * NS, b"1.0000000025", b"+0.999999998"),  # 999999997.5 ns -> 999999998
        (NS, b"1.0000000005", b"+0.000000000"),  # -0.5 ns -> 0, and zero is "+"
        (NS, b"1.0000000015", b"-0.000000002"),  # -1.5 ns -> -2
        (NS, b"1.0000000025", b"-0.000000002"),  # -2.5 ns -> -2
        (NS, b"1.00000000049999", b"+0.000000000"),
        (NS, b"1.00000000050001", b"-0.000000001"),
        (NS, b"0.999999999999", b"+0.000000000"),  # 0.001 ns
    ],
)
def test_format_diff_rounds_beyond_nanoseconds_half_to_even(received_ns, time_sent, diff):
    assert format_diff(received_ns, time_sent) == reference_diff(received_ns, time_sent) == diff


def test_format_diff_matches_exact_arithmetic_on_realistic_times():
    rng = random.Random(2018)
    for _ in range(2000):
        sent = rng.randrange(10**9, 2 * 10**9)
        digits = rng.randrange(19)  # 10 integer digits + 18 fraction digits
        frac = b"".join(b"%d" % rng.randrange(10) for _ in range(digits))
        time_sent = b"%d.%s" % (sent, frac) if digits else b"%d" % sent
        received_ns = sent * NS + rng.randrange(-5 * NS, 5 * NS)
        got = format_diff(received_ns, time_sent)
        assert got == reference_diff(received_ns, time_sent), (received_ns, time_sent)
        assert DIFF_FORM.fullmatch(got)


def test_format_diff_with_large_times_is_exact_and_never_exponent():
    received_ns = 10**30 + 123456789
    for time_sent in (b"1" + b"0" * 21, b"999999999999999999999.999999999", b"5", b"0.000000001"):
        got = format_diff(received_ns, time_sent)
        assert got == reference_diff(received_ns, time_sent)
        assert DIFF_FORM.fullmatch(got)
    assert format_diff(10**30, b"0") == b"+1000000000000000000000.000000000"


def test_format_diff_does_not_double_round_long_fractions():
    # Exact diff is 81036003.4999...9 ns, so +0.081036003; rounding to 28 digits first gives
    # 81036003.5 and then half-even gives 81036004.
    time_sent = b"1520023934.918963996500000000000000000001"
    assert format_diff(1520023935000000000, time_sent) == b"+0.081036003"


def test_format_diff_handles_large_times_with_long_fractions():
    time_sent = b"123456789012345678901.1234567891"
    assert format_diff(10**30, time_sent) == reference_diff(10**30, time_sent)


def test_format_diff_handles_a_5000_digit_time():
    assert format_diff(0, b"1" + b"0" * 4999) == b"-1" + b"0" * 4999 + b".000000000"


def test_format_ns_is_seconds_with_nine_decimals():
    assert format_ns(1520023935182837383) == b"1520023935.182837383"
    assert format_ns(1520023935000000000) == b"1520023935.000000000"
    assert format_ns(7) == b"0.000000007"
    assert format_ns(0) == b"0.000000000"


def test_diff_from_received_rebuilds_the_diff_of_format_diff():
    rng = random.Random(9)
    for _ in range(500):
        received_ns = rng.randrange(10**18, 2 * 10**18)
        time_sent = b"%d.%d" % (rng.randrange(10**9, 2 * 10**9), rng.randrange(10**12))
        assert diff_from_received(format_ns(received_ns), time_sent) == format_diff(
            received_ns, time_sent
        )


# -- replies ----------------------------------------------------------------------------


def test_format_at_joins_fields_with_single_spaces():
    assert (
        format_at(b"Bailey", b"+0.263873386", b"c\xff", b"+34.068930-118.445127", b"1.5")
        == b"AT Bailey +0.263873386 c\xff +34.068930-118.445127 1.5\n"
    )


def test_a_records_changeloc_round_trips_through_parse():
    line = Record(b"c\xc2\xa0", b"+1-2", b"1.5", b"2.000000000", b"Bailey").changeloc()
    assert line == b"CHANGELOC c\xc2\xa0 +1-2 1.5 2.000000000 Bailey\n"
    assert parse_line(line[:-1], peer=True) == ChangeLoc(
        b"c\xc2\xa0", b"+1-2", b"1.5", b"2.000000000", b"Bailey"
    )


def test_format_invalid_is_question_mark_space_line_lf():
    assert format_invalid(b"BOGUS 1 2 3 4") == b"? BOGUS 1 2 3 4\n"
    assert format_invalid(b"\xff\x00") == b"? \xff\x00\n"


def feed(splitter: LineSplitter, data: bytes) -> list[bytes]:
    """The lines a feed completes, one by one."""
    block, count = splitter.feed(data)
    lines = block.split(b"\n") if count else []
    assert len(lines) == count
    return lines


def eof(splitter: LineSplitter) -> list[bytes]:
    last = splitter.feed_eof()
    return [] if last is None else [last]


# -- LineSplitter -----------------------------------------------------------------------

STREAM = b"".join(
    [
        b"IAMAT a +1+1 1\r\n",
        b"WHATSAT a 10 5\n",
        b"\n",
        b"x\r\r\n",
        b"a\rb\n",
        b"\r\n",
        b"\xc2\xa0\xff\n",
        b"tail without LF",
    ]
)
STREAM_LINES = [b"IAMAT a +1+1 1", b"WHATSAT a 10 5", b"", b"x\r", b"a\rb", b"", b"\xc2\xa0\xff"]


def test_splitter_cuts_a_whole_stream_into_lines():
    s = LineSplitter()
    assert feed(s, STREAM) == STREAM_LINES
    assert s.pending == len(b"tail without LF")
    assert eof(s) == [b"tail without LF"]
    assert s.pending == 0


def test_splitter_fed_one_byte_at_a_time_gives_the_same_lines():
    s = LineSplitter()
    lines: list[bytes] = []
    for i in range(len(STREAM)):
        lines += feed(s, STREAM[i : i + 1])
    assert lines == STREAM_LINES
    assert eof(s) == [b"tail without LF"]


def test_splitter_gives_the_same_lines_for_any_chunking():
    rng = random.Random(64)
    for _ in range(200):
        s = LineSplitter()
        lines: list[bytes] = []
        i = 0
        while i < len(STREAM):
            n = rng.randrange(0, 12)
            lines += feed(s, STREAM[i : i + n])
            i += n
        assert lines + eof(s) == [*STREAM_LINES, b"tail without LF"]


def test_splitter_strips_only_the_cr_right_before_lf():
    s = LineSplitter()
    assert feed(s, b"a\r\r\n") == [b"a\r"]
    assert feed(s, b"\rb\n") == [b"\rb"]


def test_splitter_keeps_cr_split_from_its_lf_across_feeds_as_terminator():
    s = LineSplitter()
    assert feed(s, b"abc\r") == []
    assert feed(s, b"\n") == [b"abc"]


def test_splitter_returns_many_lines_from_one_feed():
    s = LineSplitter()
    assert feed(s, b"1\n2\n3\n" * 1000) == [b"1", b"2", b"3"] * 1000
    assert s.pending == 0


def test_splitter_holds_a_line_without_lf_until_eof():
    s = LineSplitter()
    assert feed(s, b"IAMAT a +1+1 1") == []
    assert feed(s, b"") == []
    assert s.pending == 14
    assert eof(s) == [b"IAMAT a +1+1 1"]


def test_splitter_eof_keeps_a_trailing_cr_without_lf():
    s = LineSplitter()
    feed(s, b"abc\r")
    assert eof(s) == [b"abc\r"]


def test_splitter_eof_with_nothing_pending_gives_no_line():
    s = LineSplitter()
    assert feed(s, b"a\n") == [b"a"]
    assert eof(s) == []
    assert eof(LineSplitter()) == []


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"])
def test_splitter_accepts_a_line_of_exactly_max_line_bytes(terminator):
    s = LineSplitter(max_line=8)
    assert feed(s, b"12345678" + terminator) == [b"12345678"]
    assert s.overlong is None


def test_splitter_accepts_max_line_bytes_with_crlf_fed_byte_by_byte():
    s = LineSplitter(max_line=8)
    lines: list[bytes] = []
    for b in b"12345678\r\n":
        lines += feed(s, bytes([b]))
    assert lines == [b"12345678"]
    assert s.overlong is None


def test_splitter_accepts_max_line_bytes_at_eof():
    s = LineSplitter(max_line=8)
    assert feed(s, b"12345678") == []
    assert eof(s) == [b"12345678"]
    assert s.overlong is None


def test_splitter_flags_an_overlong_line_whose_lf_is_in_the_same_feed():
    s = LineSplitter(max_line=8)
    assert feed(s, b"ok\n" + b"x" * 20 + b"\nafter\n") == [b"ok"]
    assert s.overlong == b"x" * 8


def test_splitter_flags_an_overlong_line_still_growing_without_lf():
    s = LineSplitter(max_line=8)
    assert feed(s, b"ok\nxxxxx") == [b"ok"]
    assert s.overlong is None
    assert feed(s, b"yyyyy") == []
    assert s.overlong == b"xxxxxyyy"


def test_splitter_flags_an_overlong_line_fed_byte_by_byte():
    s = LineSplitter(max_line=8)
    for b in b"0123456789":
        assert feed(s, bytes([b])) == []
    assert s.overlong == b"01234567"


def test_splitter_stops_producing_lines_after_an_overlong_one():
    s = LineSplitter(max_line=8)
    feed(s, b"x" * 20)
    assert s.overlong == b"x" * 8
    assert feed(s, b"\nIAMAT a +1+1 1\n") == []
    assert eof(s) == []
    assert s.overlong == b"x" * 8


def test_splitter_flags_a_line_one_byte_over_max_line():
    s = LineSplitter(max_line=8)
    assert feed(s, b"123456789\n") == []
    assert s.overlong == b"12345678"


def test_splitter_flags_a_pending_line_one_byte_over_max_line():
    s = LineSplitter(max_line=8)
    assert feed(s, b"123456789") == []
    assert s.overlong == b"12345678"
