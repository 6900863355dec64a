"""The herd wire protocol as pure functions: bytes in, messages and replies out.

Nothing here touches a socket or reads a clock; the caller passes the receive time in.
Every rule quoted from PROTOCOL.md is enforced here, byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal

# Field separators: ASCII space, tab, CR, LF, FF, VT. bytes.split() with no argument
# splits on exactly these, never on non-ASCII bytes such as a non-breaking space.
_LOCATION = re.compile(rb"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")
TIME = re.compile(rb"(\d+)(?:\.(\d+))?")
TIME_RECEIVED = re.compile(rb"\d+\.\d{9}")
# The same form as _LOCATION with the ranges built in, so one match validates a location:
# |latitude| <= 90 and |longitude| <= 180 exactly, whatever the leading or trailing zeros.
LOCATION_IN_RANGE = re.compile(
    rb"[+-]0*(?:[1-8]?\d(?:\.\d+)?|90(?:\.0+)?)"
    rb"[+-]0*(?:(?:1[0-7]\d|[1-9]?\d)(?:\.\d+)?|180(?:\.0+)?)"
)
_FIELD = rb"[^ \t\n\r\f\v]+"  # one field as bytes.split() cuts them
_DECIMAL = rb"\d+(?:\.\d+)?"  # DIGITS[.DIGITS]: a time_sent, a WHATSAT radius
# A record as the store packs it, `location time_sent time_received server`, every field
# valid (the server a single field; whether it is known is the caller's check). One match
# checks what three would, faster than the three: the flood's hot path runs it per record.
PACKED_RECORD = re.compile(
    rb"%s %s %s %s" % (LOCATION_IN_RANGE.pattern, _DECIMAL, TIME_RECEIVED.pattern, _FIELD)
)
# A client name and its packed record, as a journal entry's body holds them: the groups
# are the client and the packed record. Replay checks every entry with it.
CLIENT_RECORD = re.compile(rb"(%s) (%s)" % (_FIELD, PACKED_RECORD.pattern))
# An IAMAT's `location time`, both valid: one match checks the two.
LOCATION_AND_TIME = re.compile(rb"%s %s" % (LOCATION_IN_RANGE.pattern, _DECIMAL))
# Valid single-spaced lines in a block of LF-separated lines, their fields as groups: `^`
# and `$` hold each match to one line, so a block with as many matches as lines holds
# nothing else. One findall over a read replaces a split and a match per line.
IAMAT_LINES = re.compile(
    rb"(?m)^IAMAT (%s) (%s) (%s)$" % (_FIELD, LOCATION_IN_RANGE.pattern, _DECIMAL)
)
CHANGELOC_LINES = re.compile(  # groups: client, then the packed record and its four fields
    rb"(?m)^CHANGELOC (%s) ((%s) (%s) (%s) (%s))$"
    % (_FIELD, LOCATION_IN_RANGE.pattern, _DECIMAL, TIME_RECEIVED.pattern, _FIELD)
)
_BOUND = re.compile(rb"\d+")

MAX_RADIUS_KM = 50
MAX_BOUND = 20
# A WHATSAT's radius of 0 to MAX_RADIUS_KM km and bound of 1 to MAX_BOUND, leading zeros
# allowed, each checked exactly by one match on its digits: no Decimal and no int() of a
# number that may be thousands of digits long (a poller sends one WHATSAT per reply).
_RADIUS_IN_RANGE = re.compile(rb"0*(?:[1-4]?\d(?:\.\d+)?|50(?:\.0+)?)")
_BOUND_IN_RANGE = re.compile(rb"0*(?:[1-9]|1\d|20)")
NS_PER_S = 1_000_000_000
_NANOSECOND = Decimal("1e-9")

# A time compares as (integer digit count, integer digits, fraction digits), with leading zeros
# of the integer and trailing zeros of the fraction stripped: comparing these tuples is then
# the same as comparing the decimals, with no int() (Python limits int() to 4300 digits).
TimeKey = tuple[int, bytes, bytes]


@dataclass(frozen=True, slots=True)
class WhatsAt:
    """`WHATSAT <client> <radius> <bound>` from a client; radius in km."""

    client: bytes
    radius_km: float
    bound: int


@dataclass(frozen=True, slots=True)
class Synced:
    """`SYNCED <count>` between peers: the sender's whole-state dump of `count` records ended."""

    count: int


@dataclass(frozen=True, slots=True)
class Ping:
    """`PING` between peers, both ways, every heartbeat: the link is alive."""


@dataclass(frozen=True, slots=True)
class PeerLine:
    """A handshake line (HELLO, AUTH): keyword plus its raw fields, checked by the handshake."""

    keyword: bytes
    fields: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Invalid:
    """A line that is none of the valid forms; answered with `? ` and the line."""

    line: bytes


Message = WhatsAt | Synced | Ping | PeerLine | Invalid

PEER_KEYWORDS = frozenset({b"HELLO", b"AUTH"})


def valid_location(field: bytes) -> bool:
    """Whether a field is an ISO 6709 location with latitude and longitude in range."""
    return LOCATION_IN_RANGE.fullmatch(field) is not None


def location_form(field: bytes) -> bool:
    """Whether a field has the ISO 6709 form `[+-]DIGITS[.DIGITS][+-]DIGITS[.DIGITS]`,
    whatever its range (`valid_location` checks both)."""
    return _LOCATION.fullmatch(field) is not None


def parse_location(field: bytes) -> tuple[float, float] | None:
    """Latitude and longitude of an ISO 6709 field, or None when it breaks the rule."""
    if not valid_location(field):
        return None
    m = _LOCATION.fullmatch(field)
    assert m is not None
    return float(m.group(1)), float(m.group(2))


def time_key(field: bytes) -> TimeKey | None:
    """The exact ordering key of a `DIGITS[.DIGITS]` time, or None when it breaks the rule."""
    m = TIME.fullmatch(field)
    if m is None:
        return None
    whole = m.group(1).lstrip(b"0")
    return len(whole), whole, (m.group(2) or b"").rstrip(b"0")


IAmAtFields = tuple[bytes, bytes, bytes]  # client, location, time_sent
# client, the packed record, and the packed record's location, time_sent, time_received, server
ChangeLocFields = tuple[bytes, bytes, bytes, bytes, bytes, bytes]


def iamat_fields(line: bytes) -> IAmAtFields | None:
    """`IAMAT <client> <location> <time>`, fields split by any white space: the client,
    location and time when every field is valid, else None. The one check of an IAMAT
    line; `IAMAT_LINES` is the same check for a block of single-spaced lines."""
    fields = line.split()
    if (
        len(fields) != 4
        or fields[0] != b"IAMAT"
        or LOCATION_AND_TIME.fullmatch(b"%s %s" % (fields[2], fields[3])) is None
    ):
        return None
    return fields[1], fields[2], fields[3]


def changeloc_fields(line: bytes) -> ChangeLocFields | None:
    """`CHANGELOC <client> <location> <time_sent> <time_received> <server>`, fields split
    by any white space: the client, the record packed as the store keeps it, and its four
    fields, when every field is valid (whether the server is known is the caller's check);
    else None. The one check of a CHANGELOC line; `CHANGELOC_LINES` is the same check for
    a block of single-spaced lines."""
    fields = line.split()
    if len(fields) != 6 or fields[0] != b"CHANGELOC":
        return None
    packed = b" ".join(fields[2:])
    if PACKED_RECORD.fullmatch(packed) is None:
        return None
    return fields[1], packed, fields[2], fields[3], fields[4], fields[5]


def parse_line(line: bytes, *, peer: bool = False) -> Message | None:
    """Parse one line (terminator already removed) that is not a valid IAMAT or CHANGELOC;
    None for a blank line.

    Those two arrive by the thousand and are taken by `node.ingest`, checked by
    `iamat_fields` and `changeloc_fields`; a line of theirs that reaches here failed that
    check and is Invalid. `peer` says the connection has authenticated as a peer; only
    then are PING and SYNCED valid.
    """
    fields = line.split()
    if not fields:
        return None
    keyword = fields[0]
    n = len(fields)
    if keyword == b"WHATSAT" and n == 4:
        radius, bound = fields[2], fields[3]
        if _RADIUS_IN_RANGE.fullmatch(radius) and _BOUND_IN_RANGE.fullmatch(bound):
            # float() of the digits rounds once, as float(Decimal(digits)) would.
            return WhatsAt(fields[1], float(radius), int(bound.lstrip(b"0")))
    elif keyword == b"PING" and n == 1 and peer:
        return Ping()
    elif keyword == b"SYNCED" and n == 2 and peer and _BOUND.fullmatch(fields[1]):
        return Synced(int(fields[1][:18]))
    elif keyword in PEER_KEYWORDS and not peer:
        return PeerLine(keyword, tuple(fields[1:]))
    return Invalid(line)


PING_LINE = b"PING\n"


def format_synced(count: int) -> bytes:
    """The line that ends a whole-state dump on a peer link."""
    return b"SYNCED %d\n" % count


def format_invalid(line: bytes) -> bytes:
    """The reply to an invalid line: `? ` plus the line as received."""
    return b"? " + line + b"\n"


def format_ns(ns: int) -> bytes:
    """POSIX nanoseconds as `SECONDS.NNNNNNNNN` (the CHANGELOC time_received form)."""
    s, frac = divmod(ns, NS_PER_S)
    return b"%d.%09d" % (s, frac)


def format_diff(received_ns: int, time_sent: bytes) -> bytes:
    """`received - sent` in seconds, always signed, exactly 9 decimals, computed exactly."""
    whole, _, frac = time_sent.partition(b".")
    if len(frac) <= 9 and len(whole) <= 20:
        # The common case, in integer nanoseconds: exact and several times faster.
        diff_ns = received_ns - int(whole + frac) * _NS_PER_DIGITS[len(frac)]
        if diff_ns < 0:
            return b"-%d.%09d" % divmod(-diff_ns, NS_PER_S)
        return b"+%d.%09d" % divmod(diff_ns, NS_PER_S)
    return _exact_diff(format_ns(received_ns), time_sent)


# Nanoseconds per unit of the last digit of a time with 0 to 9 decimals.
_NS_PER_DIGITS = tuple(10 ** (9 - decimals) for decimals in range(10))


def diff_from_received(time_received: bytes, time_sent: bytes) -> bytes:
    """The diff of a flooded record, rebuilt from its 9-decimal receive time."""
    whole, _, frac = time_received.partition(b".")
    if len(whole) <= 20:
        return format_diff(int(whole) * NS_PER_S + int(frac), time_sent)
    return _exact_diff(time_received, time_sent)


def _exact_diff(time_received: bytes, time_sent: bytes) -> bytes:
    """`received - sent` for operands of any length.

    Decimal with a context as wide as the operands is exact for any number of digits (no
    int() digit limit, no 28-digit rounding); beyond 1 ns it rounds half to even, once.
    """
    ctx = Context(
        prec=len(time_sent) + len(time_received) + 2,
        rounding=ROUND_HALF_EVEN,
        Emax=MAX_EMAX,
        Emin=MIN_EMIN,
    )
    exact = ctx.subtract(Decimal(time_received.decode()), Decimal(time_sent.decode()))
    diff = exact.quantize(_NANOSECOND, context=ctx)
    return (b"-" if diff < 0 else b"+") + format(diff.copy_abs(), "f").encode()


# The two lines a node writes by the thousand, one definition each; the hot path
# (`node.ingest`) formats with them directly, to spare a call per record.
AT_LINE = b"AT %s %s %s %s %s\n"  # server, diff, client, location, time_sent
# client, then its record as the store packs it: `location time_sent time_received server`
CHANGELOC_LINE = b"CHANGELOC %s %s\n"


def format_at(server: bytes, diff: bytes, client: bytes, location: bytes, time: bytes) -> bytes:
    """The AT line, with its LF."""
    return AT_LINE % (server, diff, client, location, time)


Lines = tuple[bytes, int]  # complete lines joined by LF (no LF after the last), and how many


class LineSplitter:
    """Cuts a byte stream into lines, h11-style: feed bytes, take complete lines.

    A line ends at LF; a CR right before the LF belongs to the terminator. At EOF a last
    line without LF is still a line. A pending line longer than `max_line` is an error:
    `overlong` then holds its first bytes and the caller should answer and close.

    The complete lines of a feed come out as one block, as they arrived: a read of whole
    lines is handed over without a copy, and cut into single lines only by whoever needs
    them one by one (`node.ingest.LineBacklog`).
    """

    __slots__ = ("_buf", "max_line", "overlong")

    def __init__(self, max_line: int = 65536) -> None:
        # A bytearray grows in place: a line trickling in one byte at a time costs O(n).
        self._buf = bytearray()
        self.max_line = max_line
        self.overlong: bytes | None = None

    @property
    def pending(self) -> int:
        """Bytes of a line received but not yet terminated."""
        return len(self._buf)

    def feed(self, data: bytes) -> Lines:
        """Add received bytes; return the lines they complete, terminators removed, as one
        block and its line count (0: none yet)."""
        if self.overlong is not None:
            return b"", 0
        buf = self._buf
        # find(), not `in`: bytes' `in` first tries its operand as an integer, and formats
        # and clears a TypeError before it searches (2.5 % of a polled node's CPU).
        if not buf and data.endswith(b"\n"):
            complete = data[:-1]  # whole lines only, the common case: nothing is kept
        elif data.find(b"\n") < 0:
            buf += data
            self._check_overlong()
            return b"", 0
        elif buf:
            buf += data
            end = buf.rfind(b"\n")
            complete = bytes(buf[:end])
            del buf[: end + 1]
        else:
            end = data.rfind(b"\n")
            complete = data[:end]
            buf += data[end + 1 :]
        if complete.find(b"\r") >= 0:
            complete = b"\n".join([_strip_cr(x) for x in complete.split(b"\n")])
        count = _lines_within(complete, self.max_line)
        if count < 0:
            lines = complete.split(b"\n")
            for i, line in enumerate(lines):
                if len(line) > self.max_line:
                    self.overlong = line[: self.max_line]
                    buf.clear()
                    return b"\n".join(lines[:i]), i
        if buf:
            self._check_overlong()
        return complete, count

    def feed_eof(self) -> bytes | None:
        """The client closed its side: the unterminated rest, if any, is a last line.

        It has no terminator, so nothing is stripped from it.
        """
        rest = bytes(self._buf)
        self._buf.clear()
        if self.overlong is not None or not rest:
            return None
        return rest

    def _check_overlong(self) -> None:
        buf = self._buf
        # One byte of slack only for a CR that may yet turn out to be half the terminator.
        if len(buf) > self.max_line + buf.endswith(b"\r"):
            self.overlong = bytes(buf[: self.max_line])
            buf.clear()


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def _count_lines_within(block: bytes, max_line: int) -> int:
    """How many LF-separated lines `block` holds, or -1 when one of them is longer than
    `max_line` bytes."""
    if len(block) > max_line and max(map(len, block.split(b"\n"))) > max_line:
        return -1  # else no line in it can be too long
    return block.count(b"\n") + 1


# `LineSplitter.feed`'s count of a read's lines: the C of node/_blocks.c when the compiled
# core is built (one pass, no list of the lines), else the Python above.
_lines_within: Callable[[bytes, int], int] = _count_lines_within
try:
    from node import _blocks
except ImportError:  # the compiled core is not built, or not used (node.native)
    pass
else:
    _lines_within = _blocks.lines_within
