"""`node.blocks`: a block of IAMAT or CHANGELOC lines cut into fields exactly as the
protocol's regex cuts each line, whichever scanner runs (the C one when the compiled core is
built: tests/node/test_native.py runs this file on it too)."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from node import blocks, protocol
from node.protocol import CHANGELOC_LINES, IAMAT_LINES

# Pieces near the edges of each rule, so that generated lines are valid about half the time
# and fail, when they do, by one byte in one field.
SIGNS = st.sampled_from([b"+", b"-", b"", b"++", b"."])
ZEROS = st.sampled_from([b"", b"0", b"00", b"000"])
INTEGERS = st.sampled_from(
    [
        *(b"0", b"1", b"9", b"10", b"34", b"89", b"90", b"91", b"99", b"100", b"118"),
        *(b"179", b"180", b"181", b"199", b"999", b"1000", b"", b"1a", b"\xc2\xa0"),
    ]
) | st.binary(max_size=4)
FRACTIONS = st.sampled_from(
    [b"", b".", b".0", b".000", b".0001", b".5", b".068930", b".1.2", b".x", b"e5"]
) | st.builds(lambda d: b"." + d, st.text("0123456789", max_size=12).map(str.encode))


@st.composite
def coordinate(draw: st.DrawFn) -> bytes:
    return draw(SIGNS) + draw(ZEROS) + draw(INTEGERS) + draw(FRACTIONS)


LOCATIONS = st.builds(bytes.__add__, coordinate(), coordinate()) | st.binary(max_size=6)
DECIMALS = st.sampled_from(
    [b"1700000000", b"1700000000.5", b"0", b"0.0", b"1.", b".5", b"1e9", b"1700000000.5\r"]
) | st.builds(
    lambda whole, fraction: whole + fraction,
    st.text("0123456789", max_size=12).map(str.encode),
    FRACTIONS,
)
RECEIVED = st.sampled_from(
    [b"1700000000.123456789", b"0.000000000", b"1.12345678", b"1.1234567890", b".123456789"]
) | st.builds(
    lambda whole, fraction: whole + b"." + fraction,
    st.text("0123456789", max_size=4).map(str.encode),
    st.text("0123456789", min_size=8, max_size=10).map(str.encode),
)
NAMES = st.sampled_from(
    [b"kiwi", b"Goloman", b"x", b"", b"a\tb", b"a\rb", b"a\x0bb", b"a\x0cb", b"\xc2\xa0", b"\x1c"]
) | st.binary(min_size=1, max_size=5).filter(lambda b: b"\n" not in b)
SPACES = st.sampled_from([b" "] * 12 + [b"  ", b"\t", b""])


@st.composite
def iamat_line(draw: st.DrawFn) -> bytes:
    keyword = draw(st.sampled_from([b"IAMAT"] * 8 + [b"iamat", b"IAMATX", b"CHANGELOC", b""]))
    fields = [keyword, draw(NAMES), draw(LOCATIONS), draw(DECIMALS)]
    return _joined(draw, fields)


@st.composite
def changeloc_line(draw: st.DrawFn) -> bytes:
    keyword = draw(st.sampled_from([b"CHANGELOC"] * 8 + [b"CHANGELO", b"IAMAT", b""]))
    fields = [keyword, draw(NAMES), draw(LOCATIONS), draw(DECIMALS), draw(RECEIVED)]
    return _joined(draw, [*fields, draw(NAMES)])


def _joined(draw: st.DrawFn, fields: list[bytes]) -> bytes:
    if draw(st.integers(0, 9)) == 0:  # a field too many or too few
        fields = fields[:-1] if draw(st.booleans()) else [*fields, draw(NAMES)]
    line = fields[0]
    for field in fields[1:]:
        line += draw(SPACES) + field
    return line.replace(b"\n", b"")


def regex_cut(pattern: re.Pattern[bytes], block: bytes) -> list[tuple[bytes, ...]]:
    """The regex's fields of each line up to the first that is not of the form."""
    cut = []
    for line in block.split(b"\n"):
        found = pattern.findall(line)
        if not found:
            break
        cut.append(found[0])
    return cut


def check(scan: object, pattern: re.Pattern[bytes], block: bytes) -> None:
    assert callable(scan)
    lines = block.split(b"\n")
    expected = regex_cut(pattern, block)
    got = scan(block)
    if len(expected) == len(lines):  # every line of the form: its fields, in order
        assert got == expected == pattern.findall(block)
    else:  # the caller must see that some line is not
        assert len(got) < len(lines)
        if blocks.SCANNER == "c":  # the C scanner stops at that line
            assert got == expected


@settings(max_examples=1500)
@given(st.lists(iamat_line(), min_size=1, max_size=4))
@example([b"IAMAT kiwi +34.068930-118.445127 1700000000.5"])
@example([b"IAMAT kiwi +90.000-180 1", b"IAMAT kiwi -090+180.0 1.0"])
@example([b"IAMAT kiwi +90.0001+0 1", b"IAMAT k +0-180.000001 1"])
@example([b"IAMAT kiwi +89.999999-179.999999 00.0", b"IAMAT kiwi +0000-0000 1"])
@example([b"IAMAT kiwi +34-118 1", b"", b"IAMAT kiwi +34-118 1"])
def test_iamat_blocks_are_cut_as_the_regex_cuts_each_line(lines: list[bytes]) -> None:
    check(blocks.iamat_lines, IAMAT_LINES, b"\n".join(lines))


@settings(max_examples=1500)
@given(st.lists(changeloc_line(), min_size=1, max_size=4))
@example([b"CHANGELOC kiwi +34.068930-118.445127 1700000000.5 1700000001.000000001 Goloman"])
@example([b"CHANGELOC k +90-180 1 0.000000000 \xc2\xa0", b"CHANGELOC k +9-18 1 1.12345678 G"])
@example([b"CHANGELOC k +1+1 1 1.123456789 G\r"])
def test_changeloc_blocks_are_cut_as_the_regex_cuts_each_line(lines: list[bytes]) -> None:
    check(blocks.changeloc_lines, CHANGELOC_LINES, b"\n".join(lines))


@given(st.binary(max_size=120))
def test_any_bytes_at_all_are_cut_as_the_regex_cuts_them(block: bytes) -> None:
    check(blocks.iamat_lines, IAMAT_LINES, block)
    check(blocks.changeloc_lines, CHANGELOC_LINES, block)


VALID_LINES = [
    b"IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997",
    b"IAMAT k -90+180 0",
    b"IAMAT k +090.000-0180.0 01.10",
    b"CHANGELOC kiwi +34.068930-118.445127 1520023934.918963997 1520023935.000000001 Hands",
    b"CHANGELOC k +89.9-179.9 1 0.000000000 G",
]
# Every byte a rule treats apart: separators, digits at their edges, signs, the dot.
PROBES = b" \t\n\r\x0b\x0c\x00\x1c\xa0\xff+-.0123456789/:aeE"


def test_every_one_byte_change_to_a_valid_line_is_cut_as_the_regex_cuts_it() -> None:
    """Each byte of a valid line replaced, each probe inserted before it, and each byte
    deleted: the scanner and the regex agree on all of them."""
    for line in VALID_LINES:
        pattern = IAMAT_LINES if line.startswith(b"IAMAT") else CHANGELOC_LINES
        scan = blocks.iamat_lines if pattern is IAMAT_LINES else blocks.changeloc_lines
        for i in range(len(line) + 1):
            variants = [line[:i] + line[i + 1 :]]
            for probe in PROBES:
                variants.append(line[:i] + bytes([probe]) + line[i:])
                variants.append(line[:i] + bytes([probe]) + line[i + 1 :])
            for variant in variants:
                check(scan, pattern, variant)
                check(scan, pattern, line + b"\n" + variant)


def test_a_long_block_is_cut_whole() -> None:
    lines = [
        b"CHANGELOC c%d +%d.5-%d.25 1700000000.%d 1700000001.000000001 Hands"
        % (i, i % 90, i % 180, i)
        for i in range(3000)
    ]
    block = b"\n".join(lines)
    cut = blocks.changeloc_lines(block)
    assert len(cut) == 3000
    assert cut[2999] == (
        b"c2999",
        lines[2999].split(b" ", 2)[2],
        b"+29.5-119.25",
        b"1700000000.2999",
        b"1700000001.000000001",
        b"Hands",
    )
    broken = block.replace(b" c1500 ", b" c 1500 ")
    assert len(blocks.changeloc_lines(broken)) < 3000


@given(
    st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), min_size=1),
    st.integers(0, 14),
)
@example([b""], 0)
@example([b"abc", b""], 2)
@example([b"abc", b"de"], 3)
def test_a_reads_lines_are_counted_and_measured_as_the_python_does(
    lines: list[bytes], max_line: int
) -> None:
    block = b"\n".join(lines)
    within = len(lines) if max(map(len, lines)) <= max_line else -1
    assert protocol._lines_within(block, max_line) == within
    assert protocol._count_lines_within(block, max_line) == within
