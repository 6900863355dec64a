"""Tests for node.handshake: both halves wired back to back, no network.

Lines from the initiator go through parse_line, as the server does, so the responder sees
exactly the PeerLine fields a connection would hand it.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.handshake import (
    HandshakeError,
    Initiator,
    Responder,
    initiator_proof,
    is_nonce,
    new_nonce,
    redact,
    redact_fields,
)
from node.protocol import PeerLine, parse_line

SECRET = b"herd-secret"
NONCE_I = b"0123456789abcdef0123456789abcdef"
NONCE_R = b"fedcba9876543210fedcba9876543210"


def fields(line: bytes) -> tuple[bytes, ...]:
    """The fields the server hands the Responder for a HELLO or AUTH line."""
    msg = parse_line(line.removesuffix(b"\n"))
    assert isinstance(msg, PeerLine)
    return msg.fields


def responder(secret: bytes = SECRET, nonce: bytes | None = None) -> Responder:
    return Responder(secret, b"B", {b"A", b"C"}, nonce)


def challenge_of(res: Responder, hello: bytes) -> tuple[bytes, bytes, bytes]:
    """(challenge line, nonce_r, proof_r) for a HELLO."""
    line = res.on_hello(fields(hello))
    keyword, name, nonce_r, proof_r = line.split()
    assert (keyword, name) == (b"CHALLENGE", b"B")
    return line, nonce_r, proof_r


def test_full_exchange_with_the_same_secret_authenticates_both_ends():
    ini = Initiator(SECRET, b"A", b"B")
    res = responder()
    auth = ini.on_challenge(res.on_hello(fields(ini.hello())))
    welcome = res.on_auth(fields(auth))
    ini.on_welcome(welcome)
    assert res.peer == b"A"
    assert welcome == b"WELCOME B\n"


def test_handshake_lines_have_their_documented_shape():
    ini = Initiator(SECRET, b"A", b"B", NONCE_I)
    assert ini.hello() == b"HELLO A B " + NONCE_I + b"\n"
    line, nonce_r, proof_r = challenge_of(responder(nonce=NONCE_R), ini.hello())
    assert nonce_r == NONCE_R
    assert len(proof_r) == 64
    auth = ini.on_challenge(line)
    assert auth.startswith(b"AUTH ") and auth.endswith(b"\n") and len(auth.split()) == 2


def test_secret_never_crosses_the_wire():
    ini = Initiator(SECRET, b"A", b"B")
    res = responder()
    hello = ini.hello()
    challenge = res.on_hello(fields(hello))
    auth = ini.on_challenge(challenge)
    welcome = res.on_auth(fields(auth))
    assert SECRET not in hello + challenge + auth + welcome


def test_fresh_nonces_are_32_lowercase_hex_and_differ():
    nonces = {new_nonce() for _ in range(50)}
    assert len(nonces) == 50
    assert all(is_nonce(n) for n in nonces)


def test_initiator_rejects_a_responder_with_the_wrong_secret():
    ini = Initiator(SECRET, b"A", b"B")
    challenge = responder(secret=b"other").on_hello(fields(ini.hello()))
    with pytest.raises(HandshakeError, match="secret"):
        ini.on_challenge(challenge)


def test_responder_rejects_an_initiator_with_the_wrong_secret():
    res = responder()
    hello = Initiator(b"other", b"A", b"B", NONCE_I).hello()
    _, nonce_r, _ = challenge_of(res, hello)
    forged = initiator_proof(b"other", b"A", b"B", NONCE_I, nonce_r)
    with pytest.raises(HandshakeError, match="secret"):
        res.on_auth((forged,))
    assert res.peer is None


def test_recorded_auth_replayed_on_a_new_connection_fails():
    ini = Initiator(SECRET, b"A", b"B", NONCE_I)
    hello = ini.hello()
    first = responder()
    auth = ini.on_challenge(first.on_hello(fields(hello)))
    first.on_auth(fields(auth))
    assert first.peer == b"A"

    second = responder()  # a fresh nonce, as every new connection gets
    challenge_of(second, hello)
    with pytest.raises(HandshakeError):
        second.on_auth(fields(auth))
    assert second.peer is None


def test_recorded_challenge_replayed_to_a_new_initiator_fails():
    recorded = responder().on_hello(fields(Initiator(SECRET, b"A", b"B").hello()))
    with pytest.raises(HandshakeError):
        Initiator(SECRET, b"A", b"B").on_challenge(recorded)


def test_reflected_responder_proof_is_not_a_valid_auth():
    res = responder()
    _, _, proof_r = challenge_of(res, Initiator(SECRET, b"A", b"B").hello())
    with pytest.raises(HandshakeError):
        res.on_auth((proof_r,))
    assert res.peer is None


def test_hello_from_a_non_neighbour_is_refused():
    hello = Initiator(SECRET, b"Z", b"B").hello()
    with pytest.raises(HandshakeError, match="not a neighbour"):
        responder().on_hello(fields(hello))


def test_hello_addressed_to_another_node_is_refused():
    hello = Initiator(SECRET, b"A", b"C").hello()
    with pytest.raises(HandshakeError, match="addressed to"):
        responder().on_hello(fields(hello))


@pytest.mark.parametrize(
    "nonce",
    [
        NONCE_I.upper(),
        NONCE_I[:-1],
        NONCE_I + b"0",
        b"g" * 32,
        b"0" * 31 + b"\xff",
    ],
)
def test_hello_with_a_malformed_nonce_is_refused(nonce):
    with pytest.raises(HandshakeError, match="nonce"):
        responder().on_hello((b"A", b"B", nonce))


@pytest.mark.parametrize(
    "hello_fields", [(), (b"A",), (b"A", b"B"), (b"A", b"B", NONCE_I, b"extra")]
)
def test_hello_with_wrong_field_count_is_refused(hello_fields):
    with pytest.raises(HandshakeError):
        responder().on_hello(hello_fields)


def test_repeated_hello_is_refused():
    res = responder()
    hello = Initiator(SECRET, b"A", b"B").hello()
    res.on_hello(fields(hello))
    with pytest.raises(HandshakeError, match="repeated"):
        res.on_hello(fields(hello))


def test_auth_before_hello_is_refused():
    with pytest.raises(HandshakeError, match="before HELLO"):
        responder().on_auth((b"0" * 64,))


def test_auth_after_success_is_refused():
    ini = Initiator(SECRET, b"A", b"B")
    res = responder()
    auth = ini.on_challenge(res.on_hello(fields(ini.hello())))
    res.on_auth(fields(auth))
    with pytest.raises(HandshakeError):
        res.on_auth(fields(auth))
    with pytest.raises(HandshakeError):
        res.on_hello(fields(ini.hello()))


@pytest.mark.parametrize("auth_fields", [(), (b"a", b"b")])
def test_auth_with_wrong_field_count_is_refused(auth_fields):
    res = responder()
    res.on_hello(fields(Initiator(SECRET, b"A", b"B").hello()))
    with pytest.raises(HandshakeError):
        res.on_auth(auth_fields)


def test_auth_proof_in_uppercase_hex_is_refused():
    ini = Initiator(SECRET, b"A", b"B")
    res = responder()
    auth = ini.on_challenge(res.on_hello(fields(ini.hello())))
    with pytest.raises(HandshakeError):
        res.on_auth((fields(auth)[0].upper(),))


@pytest.mark.parametrize(
    "line",
    [
        b"WELCOME B",
        b"CHALLENGE B " + NONCE_R,
        b"CHALLENGE C " + NONCE_R + b" " + b"0" * 64,  # answered as another node
        b"CHALLENGE B xyz " + b"0" * 64,  # malformed nonce
        b"? HELLO A B " + NONCE_I,
    ],
)
def test_initiator_rejects_a_malformed_challenge(line):
    with pytest.raises(HandshakeError):
        Initiator(SECRET, b"A", b"B", NONCE_I).on_challenge(line)


@pytest.mark.parametrize("line", [b"WELCOME C\n", b"WELCOME\n", b"WELCOME B B\n", b"? AUTH x\n"])
def test_initiator_rejects_a_wrong_welcome(line):
    with pytest.raises(HandshakeError):
        Initiator(SECRET, b"A", b"B").on_welcome(line)


def test_proofs_bind_both_names():
    # A challenge computed for A cannot be accepted by C using the same nonce.
    res = responder()
    challenge = res.on_hello(fields(Initiator(SECRET, b"A", b"B", NONCE_I).hello()))
    with pytest.raises(HandshakeError):
        Initiator(SECRET, b"C", b"B", NONCE_I).on_challenge(challenge)


# -- what a log may show -----------------------------------------------------------------------

HEX_RUN = re.compile(rb"[0-9a-fA-F]{16,}")


def transcript() -> dict[str, bytes]:
    """Every line of one good handshake, and the replies a refused HELLO and AUTH get."""
    ini = Initiator(SECRET, b"A", b"B", NONCE_I)
    res = responder(nonce=NONCE_R)
    hello = ini.hello().rstrip(b"\n")
    challenge = res.on_hello(fields(ini.hello())).rstrip(b"\n")
    auth = ini.on_challenge(challenge).rstrip(b"\n")
    welcome = res.on_auth(fields(auth)).rstrip(b"\n")
    return {
        "hello": hello,
        "challenge": challenge,
        "auth": auth,
        "welcome": welcome,
        "refused hello": b"? " + hello,
        "refused auth": b"? " + auth,
    }


def test_redact_keeps_keyword_and_names_and_withholds_nonces_and_proofs():
    lines = transcript()
    assert {what: redact(line) for what, line in lines.items()} == {
        "hello": b"HELLO A B (nonce withheld)",
        "challenge": b"CHALLENGE B (nonce, proof withheld)",
        "auth": b"AUTH (proof withheld)",
        "welcome": b"WELCOME B",
        "refused hello": b"? HELLO A B (nonce withheld)",
        "refused auth": b"? AUTH (proof withheld)",
    }
    proofs = {lines["challenge"].split()[3], lines["auth"].split()[1]}
    for line in lines.values():
        assert not any(s in redact(line) for s in {NONCE_I, NONCE_R, *proofs}), line


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (b"HELLO A " + NONCE_I, b"HELLO (2 fields withheld)"),  # a nonce where a name goes
        (b"HELLO A B " + NONCE_I + b" x", b"HELLO (4 fields withheld)"),
        (b"AUTH " + NONCE_I + b" " + NONCE_R, b"AUTH (2 fields withheld)"),
        (b"? CHALLENGE " + NONCE_R, b"? CHALLENGE (1 field withheld)"),
        (b"AUTH", b"AUTH"),
        (b"  HELLO\tA  B " + NONCE_I + b"\r", b"HELLO A B (nonce withheld)"),
    ],
)
def test_redact_shows_no_field_of_a_handshake_line_of_the_wrong_shape(line, shown):
    assert redact(line) == shown


@pytest.mark.parametrize(
    "line",
    [
        b"IAMAT kiwi +34.068930-118.445127 1520023934.918963997",
        b"WHATSAT kiwi 10 5",
        b"? BOGUS " + NONCE_I,
        b"hello A B " + NONCE_I,  # keywords are case-sensitive: this is not a handshake line
        b"",
        b"?",
    ],
)
def test_redact_leaves_every_other_line_as_it_is(line):
    assert redact(line) == line


WORDS = st.sampled_from(
    [
        b"HELLO",
        b"AUTH",
        b"CHALLENGE",
        b"WELCOME",
        b"HELLOX",
        b"hello",
        b"?",
        b"? HELLO",
        b"WHATSAT",
        b"IAMAT",
        b"A",
        b"B",
        NONCE_I,
        b"\xff",
        b"0" * 64,
    ]
)
SPACES = st.sampled_from([b" ", b"  ", b"\t", b"\x0b", b""])


@given(st.lists(st.tuples(SPACES, WORDS), max_size=6), SPACES)
def test_redact_skips_only_lines_the_long_way_leaves_alone(pieces, tail):
    """The shortcut for lines without a handshake keyword first gives what the field by
    field way gives, for every line."""
    line = b"".join(space + word for space, word in pieces) + tail
    assert redact(line) == redact_fields(line)


def test_initiator_errors_name_what_came_without_its_nonce_or_proof():
    proof = b"0" * 64
    refused = [
        (b"? HELLO A B " + NONCE_I, "on_challenge", "'? HELLO A B (nonce withheld)'"),
        (b"CHALLENGE B " + NONCE_R + b" " + proof + b" x", "on_challenge", "CHALLENGE (4 fields"),
        (b"? AUTH " + proof, "on_welcome", "'? AUTH (proof withheld)'"),
        (b"CHALLENGE B " + NONCE_R + b" " + proof, "on_welcome", "'CHALLENGE B (nonce, proof"),
    ]
    for line, step, shown in refused:
        with pytest.raises(HandshakeError) as caught:
            getattr(Initiator(SECRET, b"A", b"B", NONCE_I), step)(line)
        assert shown in str(caught.value)
        assert HEX_RUN.search(str(caught.value).encode()) is None, str(caught.value)


def test_no_responder_error_contains_a_nonce_or_a_proof():
    lines = transcript()
    hello, auth = fields(lines["hello"]), fields(lines["auth"])
    attempts: list[tuple[tuple[bytes, ...], tuple[bytes, ...]]] = [
        ((b"A", b"B", b"0" * 31), auth),  # malformed nonce
        ((b"A", b"C", NONCE_I), auth),  # addressed elsewhere
        ((b"D", b"B", NONCE_I), auth),  # not a neighbour
        ((b"A", b"B", NONCE_I, NONCE_R), auth),  # too many fields
        (hello, (b"f" * 64,)),  # the wrong proof
        (hello, (NONCE_I, NONCE_R)),  # too many fields
        (hello, auth),  # the proof of another responder nonce
    ]
    for hello_fields, auth_fields in attempts:
        res = responder()
        with pytest.raises(HandshakeError) as caught:
            res.on_hello(hello_fields)
            res.on_auth(auth_fields)
        assert HEX_RUN.search(str(caught.value).encode()) is None, str(caught.value)


@pytest.mark.parametrize("auth_fields", [(b"f" * 64,), (), (b"a", b"b")])
def test_a_failed_auth_is_not_awaited_any_more(auth_fields):
    # The server reports a failed AUTH when it happens; awaiting_auth must not make it
    # report the same connection again as "closed before AUTH".
    res = responder()
    res.on_hello(fields(Initiator(SECRET, b"A", b"B").hello()))
    assert res.awaiting_auth == b"A"
    with pytest.raises(HandshakeError):
        res.on_auth(auth_fields)
    assert res.awaiting_auth is None
    assert res.peer is None
    with pytest.raises(HandshakeError, match="AUTH repeated"):
        res.on_auth(auth_fields)
