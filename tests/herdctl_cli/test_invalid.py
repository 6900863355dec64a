"""herdctl.invalid: why a node answered `? ` to a line, one rule at a time. Pure."""

from __future__ import annotations

import pytest

from herdctl.invalid import reason, refused_lines
from node import protocol

IAMAT = b"IAMAT kiwi +34.068930-118.445127 1520023934.918963997"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"BOGUS 1 2 3", "unknown keyword 'BOGUS' (a client sends IAMAT or WHATSAT)"),
        (b"iamat kiwi +1+1 1", "unknown keyword 'iamat': keywords are upper case"),
        (b"PING", "unknown keyword 'PING': it is for links between nodes, not clients"),
        (b"CHANGELOC a +0+0 1 1.000000000 Welsh", "for links between nodes"),
        (b"IAMAT kiwi +1+1", "wrong field count: IAMAT takes 3 fields (client, location, time)"),
        (IAMAT + b" extra", "got 4"),
        (b"WHATSAT kiwi 10", "wrong field count: WHATSAT takes 3 fields (client, radius, bound)"),
        (b"IAMAT polar +90.0000001+0 1", "location out of range: '+90.0000001+0'"),
        (b"IAMAT polar +45.5-180.5 1", "location out of range"),
        (b"IAMAT polar 45.5-120 1", "bad location '45.5-120' (ISO 6709"),
        (b"IAMAT polar +45.-120 1", "bad location"),
        (b"IAMAT clock +1+1 -1764000000", "bad time '-1764000000'"),
        (b"IAMAT clock +1+1 1.764e9", "bad time"),
        (b"IAMAT clock +1+1 .5", "bad time"),
        (b"WHATSAT kiwi 50.1 20", "radius > 50 km: '50.1'"),
        (b"WHATSAT kiwi +10 5", "bad radius '+10'"),
        (b"WHATSAT kiwi 50 21", "bound outside 1..20: '21'"),
        (b"WHATSAT kiwi 10 0", "bound outside 1..20: '0'"),
        (b"WHATSAT kiwi 10 x", "bound outside 1..20: 'x'"),
        (b"WHATSAT nobody 10 5", "unknown client 'nobody': no IAMAT for it has reached"),
        (b"WHATSAT nobody 50.0 020", "unknown client"),
    ],
)
def test_reason_names_the_first_rule_broken(line: bytes, why: str) -> None:
    assert why in reason(line)


def test_the_reasons_agree_with_the_protocol() -> None:
    """Every line with a field reason is one the node's own checks refuse."""
    for line in (b"IAMAT a +91+0 1", b"IAMAT a +1+1 x", b"WHATSAT a 51 1", b"WHATSAT a 1 21"):
        assert protocol.iamat_fields(line) is None
        assert isinstance(protocol.parse_line(line), protocol.Invalid)


def test_an_echo_as_long_as_the_limit_is_an_overlong_line() -> None:
    assert reason(b"I" * 100, max_line=100) == "line longer than the node's max_line_bytes (100)"
    assert reason(b"I" * 99, max_line=100).startswith("unknown keyword")


def test_quoted_fields_are_cut_and_decoded_leniently() -> None:
    why = reason(b"\xff" + b"X" * 100)
    assert "\ufffd" in why
    assert len(why) < 120


def test_refused_lines_are_the_echoes_after_question_mark() -> None:
    reply = b'AT Welsh +0.1 a +1+1 1\n? BOGUS\n{\n   "x" : 1\n}\n\n? WHATSAT a 1 99\n'
    assert refused_lines(reply) == [b"BOGUS", b"WHATSAT a 1 99"]
    assert refused_lines(b"AT Welsh +0.1 a +1+1 1\n") == []
