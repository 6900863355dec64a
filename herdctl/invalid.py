"""Why a node answered `? ` to a client line: the first rule of docs/protocol.md it breaks.

`reason(line)` says it in a few words for `herdctl send`. The rules are node.protocol's own
checks, asked one field at a time (the other fields set to values known to pass), so this
module cannot drift from what a node accepts. Pure: bytes in, text out.
"""

from __future__ import annotations

from node import protocol

PEER_KEYWORDS = frozenset(
    {b"HELLO", b"CHALLENGE", b"AUTH", b"WELCOME", b"CHANGELOC", b"PING", b"SYNCED"}
)
CLIENT_KEYWORDS = (b"IAMAT", b"WHATSAT")
_GOOD_LOCATION = b"+0+0"
_GOOD_TIME = b"0"
_GOOD_RADIUS = b"1"
_GOOD_BOUND = b"1"
_SHOWN = 40  # characters of a field quoted in a reason


def shown(field: bytes) -> str:
    """A field as a reason quotes it: decoded leniently, cut to a readable length."""
    text = field.decode("utf-8", "replace")
    if len(text) > _SHOWN:
        text = text[: _SHOWN - 1] + "\u2026"
    return repr(text)


def refused_lines(reply: bytes) -> list[bytes]:
    """The lines a node's reply echoes after `? `: those it found invalid."""
    return [line[2:] for line in reply.split(b"\n") if line.startswith(b"? ")]


def reason(line: bytes, *, max_line: int = 65536) -> str:
    """Why `line` (as the node echoed it after `? `) is invalid, in a few words.

    An echo of `max_line` bytes or more is the start of a line the node found too long.
    """
    if len(line) >= max_line:
        return f"line longer than the node's max_line_bytes ({max_line})"
    fields = line.split()
    if not fields:
        return "empty line"
    keyword = fields[0]
    if keyword == b"IAMAT":
        return _iamat(fields)
    if keyword == b"WHATSAT":
        return _whatsat(fields)
    if keyword in PEER_KEYWORDS:
        return f"unknown keyword {shown(keyword)}: it is for links between nodes, not clients"
    if keyword.upper() in CLIENT_KEYWORDS:
        return f"unknown keyword {shown(keyword)}: keywords are upper case"
    return f"unknown keyword {shown(keyword)} (a client sends IAMAT or WHATSAT)"


def _field_count(keyword: str, names: str, fields: list[bytes]) -> str:
    return f"wrong field count: {keyword} takes 3 fields ({names}), got {len(fields) - 1}"


def _iamat(fields: list[bytes]) -> str:
    if len(fields) != 4:
        return _field_count("IAMAT", "client, location, time", fields)
    location, time = fields[2], fields[3]
    if protocol.iamat_fields(b"IAMAT c %s %s" % (location, _GOOD_TIME)) is None:
        if protocol.location_form(location):
            return (
                f"location out of range: {shown(location)} (latitude -90..90, longitude -180..180)"
            )
        return f"bad location {shown(location)} (ISO 6709: +DD.DDDD-DDD.DDDD, signs required)"
    if protocol.iamat_fields(b"IAMAT c %s %s" % (_GOOD_LOCATION, time)) is None:
        return f"bad time {shown(time)} (POSIX seconds: DIGITS[.DIGITS], no sign)"
    return "every field is valid; the node refused it anyway"


def _whatsat(fields: list[bytes]) -> str:
    if len(fields) != 4:
        return _field_count("WHATSAT", "client, radius, bound", fields)
    client, radius, bound = fields[1], fields[2], fields[3]
    radius_alone = protocol.parse_line(b"WHATSAT c %s %s" % (radius, _GOOD_BOUND))
    if not isinstance(radius_alone, protocol.WhatsAt):
        if protocol.time_key(radius) is not None:  # DIGITS[.DIGITS], so too big
            return f"radius > {protocol.MAX_RADIUS_KM} km: {shown(radius)}"
        return f"bad radius {shown(radius)} (km as DIGITS[.DIGITS], 0 to 50)"
    bound_alone = protocol.parse_line(b"WHATSAT c %s %s" % (_GOOD_RADIUS, bound))
    if not isinstance(bound_alone, protocol.WhatsAt):
        return f"bound outside 1..{protocol.MAX_BOUND}: {shown(bound)} (a whole number)"
    return f"unknown client {shown(client)}: no IAMAT for it has reached this node"
