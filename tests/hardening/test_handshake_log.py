"""No nonce or proof of the peer handshake reaches a log, and a failed AUTH is logged once.

With both nonces and one proof of a handshake, anyone can try secrets offline until one
gives that proof; a weak secret was once cracked from a 0644 log. In-process nodes on real
sockets; what crossed the wire is captured (the nonces as they are drawn, the proofs
computed from them, or the lines this test sent and read), then looked for in the logs.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path

import pytest

from node import handshake
from node.config import load_config
from node.handshake import Initiator, hello_line, new_nonce
from tests.hardening.harness import FAST_BACKOFF, SECRET, eventually, make_config, node_running
from tests.support import free_ports, write_topology

HEX_RUN = re.compile(r"[0-9a-fA-F]{32,}")  # a nonce is 32 hex digits, a proof 64


def leaks(log: str, secrets: set[bytes]) -> list[str]:
    """The lines of `log` that hold any of `secrets`, or any run of 32 hex digits."""
    return [
        line
        for line in log.splitlines()
        if HEX_RUN.search(line) or any(s.decode() in line for s in secrets)
    ]


def every_proof(nonces: list[bytes], names: tuple[bytes, bytes]) -> set[bytes]:
    """Both proofs for every pair of these nonces, either node initiating."""
    proofs = set()
    for nonce_i, nonce_r in itertools.permutations(nonces, 2):
        for a, b in (names, names[::-1]):
            proofs.add(handshake.responder_proof(SECRET, a, b, nonce_i, nonce_r))
            proofs.add(handshake.initiator_proof(SECRET, a, b, nonce_i, nonce_r))
    return proofs


def log_of(folder: Path, name: str) -> str:
    try:
        return (folder / f"{name}.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


async def test_a_link_between_two_nodes_leaves_no_nonce_or_proof_in_their_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[bytes] = []

    def recorded_nonce() -> bytes:
        drawn.append(new_nonce())
        return drawn[-1]

    monkeypatch.setattr(handshake, "new_nonce", recorded_nonce)
    config = make_config(tmp_path, ("Solo", "Buddy"))
    async with (
        node_running(config, "Solo", tmp_path, port=None) as solo,
        node_running(config, "Buddy", tmp_path, port=None) as buddy,
    ):
        await eventually(
            lambda: all(
                node.peers.links[peer].up and peer in node.peers.inbound
                for node, peer in ((solo, b"Buddy"), (buddy, b"Solo"))
            ),
            "both links up, each end authenticated",
        )
    assert len(drawn) >= 4, "a HELLO and a CHALLENGE each way draw a nonce apiece"
    secrets = {*drawn, *every_proof(drawn, (b"Solo", b"Buddy"))}
    for me, them in (("Solo", "Buddy"), ("Buddy", "Solo")):
        log = log_of(tmp_path, me)
        assert leaks(log, secrets) == []
        # The transcript is still there for an operator, names and all.
        for shown in (
            rf"IN conn=\d+ HELLO {them} {me} \(nonce withheld\)",
            rf"OUT conn=\d+ CHALLENGE {me} \(nonce, proof withheld\)",
            r"IN conn=\d+ AUTH \(proof withheld\)",
            rf"OUT conn=\d+ WELCOME {me}\n",
            rf"PEER_IN_UP conn=\d+ peer={them} ",
            rf"LINK_UP peer={them} ",
        ):
            assert re.search(shown, log), (shown, log)


class Client:
    """A connection to a node that sends lines and reads its replies, keeping both."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.wire: list[bytes] = []  # every line that crossed, either way

    @classmethod
    async def to(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def ask(self, line: bytes) -> bytes:
        self.writer.write(line + b"\n")
        reply = await asyncio.wait_for(self.reader.readline(), 10)
        self.wire += [line, reply]
        return reply

    async def closed_by_node(self) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(), 10) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.writer.close()


def fields_of(lines: list[bytes]) -> set[bytes]:
    """Every field of 32 or more characters in these lines: the nonces and proofs."""
    return {field for line in lines for field in line.split() if len(field) >= 32}


async def test_refused_handshakes_leave_no_nonce_or_proof_in_the_log(tmp_path: Path) -> None:
    config = make_config(tmp_path, ("Solo", "Buddy"))
    wire: list[bytes] = []
    async with node_running(config, "Solo", tmp_path) as solo:
        # A HELLO from a stranger: refused, and the connection stays a client's.
        stranger = await Client.to(solo.port)
        hello = hello_line(b"Mallory", b"Solo", new_nonce()).rstrip(b"\n")
        assert await stranger.ask(hello) == b"? " + hello + b"\n"  # the wire is unchanged
        stranger.close()
        # A neighbour's name without the secret: its AUTH is refused and the node hangs up.
        impostor = await Client.to(solo.port)
        hs = Initiator(b"not-the-secret", b"Buddy", b"Solo")
        challenge = await impostor.ask(hs.hello().rstrip(b"\n"))
        assert challenge.startswith(b"CHALLENGE Solo ")
        forged = b"AUTH " + handshake.initiator_proof(
            b"not-the-secret", b"Buddy", b"Solo", hs.nonce_i, challenge.split()[2]
        )
        assert await impostor.ask(forged) == b"? " + forged + b"\n"
        assert await impostor.closed_by_node()
        impostor.close()
        # An AUTH with no HELLO before it.
        bare = await Client.to(solo.port)
        assert await bare.ask(forged) == b"? " + forged + b"\n"
        assert await bare.closed_by_node()
        bare.close()
        wire = stranger.wire + impostor.wire + bare.wire
        await eventually(
            lambda: log_of(tmp_path, "Solo").count("CONN_CLOSE") == 3, "three connections closed"
        )
    log = log_of(tmp_path, "Solo")
    assert len(fields_of(wire)) == 5  # two HELLO nonces, the CHALLENGE's nonce and proof, AUTH
    assert leaks(log, fields_of(wire)) == []
    for shown in (
        r"IN conn=\d+ HELLO Mallory Solo \(nonce withheld\)",
        r"OUT conn=\d+ \? HELLO Mallory Solo \(nonce withheld\)",
        r"PEER_AUTH_FAILED conn=\d+ from=\S+ reason='Mallory' is not a neighbour of 'Solo'",
        r"OUT conn=\d+ \? AUTH \(proof withheld\)",
        r"PEER_AUTH_FAILED conn=\d+ from=\S+ reason='Buddy' does not know the herd secret",
        r"PEER_AUTH_FAILED conn=\d+ from=\S+ reason=AUTH before HELLO",
    ):
        assert re.search(shown, log), (shown, log)


async def test_a_link_the_neighbour_refuses_is_logged_without_the_nonce(tmp_path: Path) -> None:
    # Solo's topology links it to Buddy; Buddy's does not, so Buddy answers `? HELLO ...`.
    ports = dict(zip(("Solo", "Buddy"), free_ports(2), strict=True))
    extra = {"places": {"provider": "offline"}, "limits": FAST_BACKOFF}
    configs = {}
    for name, links in (("Solo", [("Solo", "Buddy")]), ("Buddy", [])):
        (tmp_path / name).mkdir()
        topology = write_topology(tmp_path / name, ports, links, ports=ports, extra=extra)
        configs[name] = load_config(topology)
    async with (
        node_running(configs["Buddy"], "Buddy", tmp_path, port=None),
        node_running(configs["Solo"], "Solo", tmp_path, port=None),
    ):
        why = r"handshake: expected CHALLENGE, got '\? HELLO Solo Buddy \(nonce withheld\)'"
        refused = re.compile(rf"LINK_FAILED peer=Buddy retry_in=\S+ reason={why}")
        await eventually(
            lambda: refused.search(log_of(tmp_path, "Solo")) is not None, "Solo's link refused"
        )
    for name in ("Solo", "Buddy"):
        assert leaks(log_of(tmp_path, name), set()) == []
    assert "reason='Solo' is not a neighbour of 'Buddy'" in log_of(tmp_path, "Buddy")


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        (b"AUTH " + b"0" * 64, "'Buddy' does not know the herd secret"),
        (b"AUTH", "AUTH needs 1 field"),
        (None, "closed before AUTH"),  # it hangs up instead, as a real node with another secret
    ],
)
async def test_a_failed_handshake_is_logged_once(
    tmp_path: Path, auth: bytes | None, reason: str
) -> None:
    config = make_config(tmp_path, ("Solo", "Buddy"))
    async with node_running(config, "Solo", tmp_path) as solo:
        client = await Client.to(solo.port)
        challenge = await client.ask(Initiator(SECRET, b"Buddy", b"Solo").hello().rstrip(b"\n"))
        assert challenge.startswith(b"CHALLENGE Solo ")
        if auth is not None:
            assert await client.ask(auth) == b"? " + auth + b"\n"
            assert await client.closed_by_node()
        client.close()
        await eventually(lambda: "CONN_CLOSE" in log_of(tmp_path, "Solo"), "the connection closed")
    log = log_of(tmp_path, "Solo")
    failures = [line for line in log.splitlines() if " PEER_AUTH_FAILED " in line]
    assert len(failures) == 1, failures
    assert f"reason={reason}" in failures[0], failures
