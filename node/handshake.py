"""The peer handshake: HMAC challenge-response on the herd's shared secret. No I/O.

    initiator -> responder   HELLO <initiator> <responder> <nonce_i>
    responder -> initiator   CHALLENGE <responder> <nonce_r> <proof_r>
    initiator -> responder   AUTH <proof_i>
    responder -> initiator   WELCOME <responder>

Each proof is HMAC-SHA256(secret, role, initiator, responder, nonce_i, nonce_r) in hex, with a
different role label for each side, so neither proof can be reflected as the other. Both
nonces are fresh per connection, so a recorded handshake proves nothing on a new one. The
secret itself never crosses the wire.

Nonces and proofs never reach a log either: with both nonces and a proof, anyone who can read
the log can try secrets offline until one gives that proof. `redact` is what a log may
show of a handshake line, and no HandshakeError message contains a nonce or a proof.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Container

NONCE_HEX_LEN = 32
_NONCE = re.compile(rb"[0-9a-f]{%d}" % NONCE_HEX_LEN)
_PROOF = re.compile(rb"[0-9a-f]{64}")


# What each field of a handshake line is; only the names may be logged.
_SHAPES: dict[bytes, tuple[bytes, ...]] = {
    b"HELLO": (b"name", b"name", b"nonce"),
    b"CHALLENGE": (b"name", b"nonce", b"proof"),
    b"AUTH": (b"proof",),
    b"WELCOME": (b"name",),
}
_SHAPE_STARTS = tuple(_SHAPES)


class HandshakeError(Exception):
    """The other end of a peer link failed to prove it knows the secret, or spoke out of turn.

    Its message may go to a log: it names the peers, never a nonce or a proof."""


def new_nonce() -> bytes:
    """A fresh random nonce, as lowercase hex."""
    return secrets.token_hex(NONCE_HEX_LEN // 2).encode()


def is_nonce(field: bytes) -> bool:
    """True when `field` has the form of a nonce."""
    return _NONCE.fullmatch(field) is not None


def _proof(
    secret: bytes, role: bytes, initiator: bytes, responder: bytes, nonce_i: bytes, nonce_r: bytes
) -> bytes:
    msg = b"herd-v1\x00" + b"\x00".join((role, initiator, responder, nonce_i, nonce_r))
    return hmac.new(secret, msg, hashlib.sha256).hexdigest().encode()


def responder_proof(
    secret: bytes, initiator: bytes, responder: bytes, nonce_i: bytes, nonce_r: bytes
) -> bytes:
    """What the accepting node sends in CHALLENGE."""
    return _proof(secret, b"responder", initiator, responder, nonce_i, nonce_r)


def initiator_proof(
    secret: bytes, initiator: bytes, responder: bytes, nonce_i: bytes, nonce_r: bytes
) -> bytes:
    """What the connecting node sends in AUTH."""
    return _proof(secret, b"initiator", initiator, responder, nonce_i, nonce_r)


def proofs_match(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison of a received proof with the expected one."""
    return _PROOF.fullmatch(received) is not None and hmac.compare_digest(expected, received)


def hello_line(initiator: bytes, responder: bytes, nonce_i: bytes) -> bytes:
    return b"HELLO %s %s %s\n" % (initiator, responder, nonce_i)


def challenge_line(responder: bytes, nonce_r: bytes, proof: bytes) -> bytes:
    return b"CHALLENGE %s %s %s\n" % (responder, nonce_r, proof)


def auth_line(proof: bytes) -> bytes:
    return b"AUTH %s\n" % proof


def welcome_line(responder: bytes) -> bytes:
    return b"WELCOME %s\n" % responder


class Initiator:
    """The connecting side's half of the handshake, fed the responder's lines."""

    def __init__(self, secret: bytes, me: bytes, them: bytes, nonce: bytes | None = None) -> None:
        self._secret = secret
        self.me = me
        self.them = them
        self.nonce_i = nonce or new_nonce()

    def hello(self) -> bytes:
        return hello_line(self.me, self.them, self.nonce_i)

    def on_challenge(self, line: bytes) -> bytes:
        """Check the responder's CHALLENGE; return the AUTH line to send."""
        fields = line.split()
        if len(fields) != 4 or fields[0] != b"CHALLENGE":
            raise HandshakeError(f"expected CHALLENGE, got {_show(redact(line))}")
        _, name, nonce_r, proof = fields
        if name != self.them:
            raise HandshakeError(f"peer answered as {_show(name)}, expected {_show(self.them)}")
        if not is_nonce(nonce_r):
            raise HandshakeError("malformed responder nonce")
        expected = responder_proof(self._secret, self.me, self.them, self.nonce_i, nonce_r)
        if not proofs_match(expected, proof):
            raise HandshakeError("responder does not know the herd secret")
        return auth_line(initiator_proof(self._secret, self.me, self.them, self.nonce_i, nonce_r))

    def on_welcome(self, line: bytes) -> None:
        fields = line.split()
        if fields != [b"WELCOME", self.them]:
            raise HandshakeError(f"expected WELCOME, got {_show(redact(line))}")


class Responder:
    """The accepting side's half of the handshake, fed HELLO and AUTH fields.

    `allowed` holds the names that may connect (this node's neighbours). After a good AUTH,
    `peer` names the authenticated node.
    """

    def __init__(
        self, secret: bytes, me: bytes, allowed: Container[bytes], nonce: bytes | None = None
    ) -> None:
        self._secret = secret
        self.me = me
        self._allowed = allowed
        self._nonce_r = nonce or new_nonce()
        self._hello: tuple[bytes, bytes] | None = None  # (initiator, nonce_i)
        self._auth_tried = False  # an AUTH came after the HELLO, good or bad: no second one
        self.peer: bytes | None = None

    @property
    def awaiting_auth(self) -> bytes | None:
        """The initiator's name when HELLO was accepted but no AUTH has come yet (a failed
        AUTH counts as come: it has been reported already)."""
        return self._hello[0] if self._hello is not None and not self._auth_tried else None

    def on_hello(self, fields: tuple[bytes, ...]) -> bytes:
        """Check HELLO's fields; return the CHALLENGE line."""
        if self._hello is not None or self.peer is not None:
            raise HandshakeError("HELLO repeated")
        if len(fields) != 3:
            raise HandshakeError("HELLO needs 3 fields")
        initiator, responder, nonce_i = fields
        if responder != self.me:
            raise HandshakeError(f"HELLO addressed to {_show(responder)}, this is {_show(self.me)}")
        if initiator not in self._allowed:
            raise HandshakeError(f"{_show(initiator)} is not a neighbour of {_show(self.me)}")
        if not is_nonce(nonce_i):
            raise HandshakeError("malformed initiator nonce")
        self._hello = (initiator, nonce_i)
        proof = responder_proof(self._secret, initiator, self.me, nonce_i, self._nonce_r)
        return challenge_line(self.me, self._nonce_r, proof)

    def on_auth(self, fields: tuple[bytes, ...]) -> bytes:
        """Check AUTH's proof; return the WELCOME line and remember the peer."""
        if self._hello is None:
            raise HandshakeError("AUTH before HELLO")
        if self._auth_tried:
            raise HandshakeError("AUTH repeated")
        self._auth_tried = True
        if len(fields) != 1:
            raise HandshakeError("AUTH needs 1 field")
        initiator, nonce_i = self._hello
        expected = initiator_proof(self._secret, initiator, self.me, nonce_i, self._nonce_r)
        if not proofs_match(expected, fields[0]):
            raise HandshakeError(f"{_show(initiator)} does not know the herd secret")
        self.peer = initiator
        return welcome_line(self.me)


def redact(line: bytes) -> bytes:
    """`line` as a log may show it: a handshake line, or a `? ` reply to one, keeps its
    keyword and names and says what it withheld; any other line comes back unchanged.

    `HELLO Welsh Holiday <nonce>` -> `HELLO Welsh Holiday (nonce withheld)`,
    `? AUTH <proof>` -> `? AUTH (proof withheld)`, and a handshake line of the wrong shape
    shows no field at all: `HELLO (2 fields withheld)`.
    """
    head = line[2:] if line.startswith(b"? ") else line
    if head[:1].isalpha() and not head.startswith(_SHAPE_STARTS):
        return line  # no handshake keyword first: nothing to withhold (WHATSAT, IAMAT, ...)
    return redact_fields(line)


def redact_fields(line: bytes) -> bytes:
    """`redact` the long way, field by field, for any line (`redact` skips most lines)."""
    fields = line.split()
    refused = fields[:1] == [b"?"]
    keyword = fields[1:2] if refused else fields[:1]
    shape = _SHAPES.get(keyword[0]) if keyword else None
    if shape is None:
        return line
    args = fields[2:] if refused else fields[1:]
    shown = [b"? " + keyword[0] if refused else keyword[0]]
    if len(args) == len(shape):
        shown += [field for field, kind in zip(args, shape, strict=True) if kind == b"name"]
        withheld = b", ".join(kind for kind in shape if kind != b"name")
    else:
        withheld = b"%d field%s" % (len(args), b"s" * (len(args) != 1)) if args else b""
    if withheld:
        shown.append(b"(%s withheld)" % withheld)
    return b" ".join(shown)


def _show(data: bytes) -> str:
    return repr(data[:200].decode("utf-8", "backslashreplace"))
