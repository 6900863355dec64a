"""Peer security with real node processes: wrong secret, replay, impersonation, bad records.

The attacker is this test: it speaks the handshake of docs/peers.md itself, with the herd's
secret when it plays an insider and without it otherwise, against real `python -m node`s.
"""

from __future__ import annotations

import os
import re
import socket
import stat
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from node.__main__ import EXIT_CONFIG
from node.handshake import Initiator, hello_line, new_nonce
from tests.support import Herd, NodeProcess, wait_until, write_topology

SECRET = "chaos-peer-secret"
SECRET_BYTES = SECRET.encode()
LOC = b"+34.068930-118.445127"


def _env(secret: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HERD_SECRET"}
    if secret is not None:
        env["HERD_SECRET"] = secret
    return env


@contextmanager
def herd_of(
    folder: Path, names: tuple[str, ...], links: list[tuple[str, str]], secret: str | None = SECRET
) -> Iterator[Herd]:
    config = write_topology(folder, names, links, extra={"places": {"provider": "offline"}})
    with Herd(config, env=_env(secret)) as herd:
        yield herd


class Line:
    """A blocking connection that reads replies line by line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self) -> bytes:
        return self.file.readline()

    def ask(self, line: bytes) -> bytes:
        self.send(line + b"\n")
        return self.readline()

    def closed_by_node(self) -> bool:
        """Whether the node closes the connection (EOF or reset) with nothing more to say."""
        try:
            return self.file.read() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def authenticate(port: int, me: bytes, them: bytes, secret: bytes = SECRET_BYTES) -> Line:
    """An inbound peer link to the node on `port`, as its neighbour `me`."""
    conn = Line(port)
    hs = Initiator(secret, me, them)
    conn.send(hs.hello())
    conn.send(hs.on_challenge(conn.readline().rstrip(b"\n")))
    hs.on_welcome(conn.readline().rstrip(b"\n"))
    return conn


def whatsat(node: NodeProcess, client: bytes) -> bytes:
    """The first line of the node's reply to `WHATSAT client 1 1`."""
    with closing(Line(node.port)) as c:
        return c.ask(b"WHATSAT " + client + b" 1 1")


def _count(node: NodeProcess, pattern: str) -> int:
    return len(re.findall(pattern, node.log_text()))


def _wait_log(node: NodeProcess, pattern: str, what: str, at_least: int = 1) -> None:
    wait_until(lambda: _count(node, pattern) >= at_least, f"{node.name}: {what}")


# -- the wrong secret --------------------------------------------------------------------------


def test_node_with_the_wrong_secret_never_links_and_keeps_retrying(tmp_path: Path) -> None:
    with herd_of(
        tmp_path,
        ("Goloman", "Hands", "Wilkes"),
        [("Goloman", "Hands"), ("Goloman", "Wilkes"), ("Hands", "Wilkes")],
    ) as herd:
        herd.nodes["Wilkes"].env = _env("not-the-herd-secret")
        herd.start()
        good, other, bad = herd.nodes["Goloman"], herd.nodes["Hands"], herd.nodes["Wilkes"]
        for a, b in (("Goloman", "Hands"), ("Hands", "Goloman")):
            _wait_log(herd.nodes[a], rf"LINK_UP peer={b} ", f"link to {b}")

        # Both directions fail the proof: each initiator sees a responder without the secret.
        why = r"reason=handshake: responder does not know the herd secret"
        _wait_log(bad, rf"LINK_FAILED peer=Goloman retry_in=\S+ {why}", "its link to Goloman")
        _wait_log(bad, rf"LINK_FAILED peer=Hands retry_in=\S+ {why}", "its link to Hands")
        _wait_log(good, rf"LINK_FAILED peer=Wilkes retry_in=\S+ {why}", "Goloman's link to it")

        # A real initiator drops the link on the bad CHALLENGE proof before it sends AUTH, so
        # the responder's log only shows its connections open and close. An AUTH with the
        # wrong secret, as an outsider would send, is refused and logged as PEER_AUTH_FAILED.
        conn = Line(good.port)
        hs = Initiator(b"not-the-herd-secret", b"Wilkes", b"Goloman")
        challenge = conn.ask(hs.hello().rstrip(b"\n"))
        assert challenge.startswith(b"CHALLENGE Goloman ")
        with pytest.raises(Exception, match="does not know the herd secret"):
            hs.on_challenge(challenge.rstrip(b"\n"))
        forged = b"AUTH " + b"0" * 64
        assert conn.ask(forged) == b"? " + forged + b"\n"
        assert conn.closed_by_node()
        conn.close()
        _wait_log(
            good,
            r"PEER_AUTH_FAILED conn=\d+ from=\S+ reason='Wilkes' does not know the herd secret",
            "the refused AUTH",
        )

        # Nothing flows either way, however long it keeps trying.
        with closing(Line(bad.port)) as c:
            assert c.ask(b"IAMAT from-outsider " + LOC + b" 1520023934").startswith(b"AT Wilkes ")
        with closing(Line(good.port)) as c:
            assert c.ask(b"IAMAT from-herd " + LOC + b" 1520023934").startswith(b"AT Goloman ")
        wait_until(
            lambda: whatsat(other, b"from-herd").startswith(b"AT Goloman "),
            "the herd's own update to flow between the good nodes",
        )
        tries = _count(bad, r"LINK_FAILED peer=Goloman ")
        _wait_log(bad, r"LINK_FAILED peer=Goloman ", "three more retries", at_least=tries + 3)
        assert whatsat(good, b"from-outsider") == b"? WHATSAT from-outsider 1 1\n"
        assert whatsat(other, b"from-outsider") == b"? WHATSAT from-outsider 1 1\n"
        assert whatsat(bad, b"from-herd") == b"? WHATSAT from-herd 1 1\n"
        for node in herd.nodes.values():
            assert "peer=Wilkes from=" not in node.log_text(), "an inbound link from Wilkes came up"
        assert "LINK_UP" not in bad.log_text() and "PEER_IN_UP" not in bad.log_text()
        # $HERD_SECRET set: no secret file is written.
        assert not (tmp_path / "run" / "herd.secret").exists()


# -- a recorded handshake replayed -------------------------------------------------------------


def test_replayed_handshake_is_refused(tmp_path: Path) -> None:
    with herd_of(tmp_path, ("Goloman", "Hands"), [("Goloman", "Hands")]) as herd:
        herd.start("Goloman")  # this test plays Hands, with the herd's secret
        node = herd.nodes["Goloman"]

        # Record a genuine handshake.
        first = Line(node.port)
        hs = Initiator(SECRET_BYTES, b"Hands", b"Goloman")
        hello = hs.hello()
        challenge = first.ask(hello.rstrip(b"\n"))
        auth = hs.on_challenge(challenge.rstrip(b"\n"))
        assert first.ask(auth.rstrip(b"\n")) == b"WELCOME Goloman\n"
        _wait_log(node, r"PEER_IN_UP conn=\d+ peer=Hands ", "the genuine link")
        first.close()

        # Replay it word for word on a new connection, a CHANGELOC right behind the AUTH.
        replay = Line(node.port)
        new_challenge = replay.ask(hello.rstrip(b"\n"))
        assert new_challenge.startswith(b"CHALLENGE Goloman ")
        assert new_challenge.split()[2] != challenge.split()[2], "the responder nonce repeated"
        replay.send(
            auth + b"CHANGELOC replayed " + LOC + b" 1520023934 1520023935.000000000 Hands\n"
        )
        assert replay.readline() == b"? " + auth
        assert replay.closed_by_node()
        replay.close()
        _wait_log(
            node,
            r"PEER_AUTH_FAILED conn=\d+ from=\S+ reason='Hands' does not know the herd secret",
            "the replayed AUTH",
        )
        # The AUTH alone, with no HELLO, proves nothing either.
        bare = Line(node.port)
        assert bare.ask(auth.rstrip(b"\n")) == b"? " + auth
        assert bare.closed_by_node()
        bare.close()
        _wait_log(node, r"PEER_AUTH_FAILED conn=\d+ from=\S+ reason=AUTH before HELLO", "bare AUTH")
        assert whatsat(node, b"replayed") == b"? WHATSAT replayed 1 1\n"
        assert _count(node, r"PEER_IN_UP ") == 1


# -- someone claiming to be a node -------------------------------------------------------------


def test_a_client_claiming_to_be_another_node_is_refused(tmp_path: Path) -> None:
    # Goloman's neighbour is Hands; Wilkes is in the herd but not Goloman's neighbour.
    with herd_of(
        tmp_path, ("Goloman", "Hands", "Wilkes"), [("Goloman", "Hands"), ("Hands", "Wilkes")]
    ) as herd:
        herd.start()
        node = herd.nodes["Goloman"]
        herd.wait_links_up()
        nonce = new_nonce()
        claims = [
            (hello_line(b"Wilkes", b"Goloman", nonce), r"'Wilkes' is not a neighbour of 'Goloman'"),
            (hello_line(b"Mallory", b"Goloman", nonce), r"'Mallory' is not a neighbour"),
            (hello_line(b"Goloman", b"Goloman", nonce), r"'Goloman' is not a neighbour"),
            (hello_line(b"Hands", b"Wilkes", nonce), r"HELLO addressed to 'Wilkes', this is"),
            (hello_line(b"Hands", b"goloman", nonce), r"HELLO addressed to 'goloman', this is"),
            (hello_line(b"Hands", b"Goloman", b"not-a-nonce"), r"malformed initiator nonce"),
        ]
        with closing(Line(node.port)) as c:
            for hello, reason in claims:
                assert c.ask(hello.rstrip(b"\n")) == b"? " + hello
                _wait_log(node, rf"PEER_AUTH_FAILED conn=\d+ from=\S+ reason={reason}", reason)
            # Refused HELLOs leave a plain client connection: peer lines stay invalid on it.
            forged = b"CHANGELOC claimed " + LOC + b" 1520023934 1520023935.000000000 Hands"
            assert c.ask(forged) == b"? " + forged + b"\n"

        # A neighbour's name without the secret: the CHALLENGE cannot be answered, nor reflected.
        with closing(Line(node.port)) as c:
            challenge = c.ask(hello_line(b"Hands", b"Goloman", nonce).rstrip(b"\n"))
            reflected = b"AUTH " + challenge.split()[3]
            assert c.ask(reflected) == b"? " + reflected + b"\n"
            assert c.closed_by_node()
        _wait_log(node, r"reason='Hands' does not know the herd secret", "the reflected proof")

        assert whatsat(node, b"claimed") == b"? WHATSAT claimed 1 1\n"
        assert _count(node, r"PEER_IN_UP ") == 1  # only the real Hands ever linked in
        assert "LINK_DOWN" not in node.log_text(), "the real link was disturbed"
        with closing(Line(node.port)) as c:
            assert c.ask(b"IAMAT real " + LOC + b" 1520023934").startswith(b"AT Goloman ")
        wait_until(
            lambda: whatsat(herd.nodes["Wilkes"], b"real").startswith(b"AT Goloman "),
            "the real herd to keep flooding",
        )


# -- malformed records from an authenticated peer ----------------------------------------------

MALFORMED = [
    b"CHANGELOC bad-lat +91+0 1520023934 1520023935.000000000 Hands",
    b"CHANGELOC bad-lng +1+180.5 1520023934 1520023935.000000000 Hands",
    b"CHANGELOC bad-loc 34.068930-118.445127 1520023934 1520023935.000000000 Hands",
    b"CHANGELOC bad-time " + LOC + b" -1520023934 1520023935.000000000 Hands",
    b"CHANGELOC bad-time " + LOC + b" 1.5e9 1520023935.000000000 Hands",
    b"CHANGELOC bad-recv " + LOC + b" 1520023934 1520023935.5 Hands",
    b"CHANGELOC bad-recv " + LOC + b" 1520023934 1520023935 Hands",
    b"CHANGELOC bad-recv " + LOC + b" 1520023934 \xd9\xa1.000000000 Hands",
    b"CHANGELOC short " + LOC + b" 1520023934 1520023935.000000000",
    b"CHANGELOC long " + LOC + b" 1520023934 1520023935.000000000 Hands extra",
    b"CHANGELOC\xc2\xa0nbsp " + LOC + b" 1520023934 1520023935.000000000 Hands",
    b"IAMAT peer-iamat " + LOC + b" 1520023934",
    b"WHATSAT bad-lat 1 1",
    b"SYNCED many",
    b"HELLO Hands Goloman " + b"0" * 32,
]


def test_malformed_changeloc_from_a_peer_drops_the_link_and_stores_nothing(
    tmp_path: Path,
) -> None:
    with herd_of(tmp_path, ("Goloman", "Hands"), [("Goloman", "Hands")]) as herd:
        herd.start("Goloman")  # this test plays Hands, with the herd's secret
        node = herd.nodes["Goloman"]
        for n, line in enumerate(MALFORMED, 1):
            link = authenticate(node.port, b"Hands", b"Goloman")
            link.send(line + b"\n")
            assert link.closed_by_node(), f"the link stayed up after {line!r}"
            link.close()
            _wait_log(node, r"PEER_BAD_LINE peer=Hands conn=\d+ ", f"bad line {n}", at_least=n)
            _wait_log(node, r"CONN_CUT conn=\d+ from=\S+ reason=bad peer line", "cut", at_least=n)
        for line in MALFORMED:
            client = line.split()[1]
            assert whatsat(node, client) == b"? WHATSAT " + client + b" 1 1\n", line

        # A well-formed record on a new authenticated link is applied, diff rebuilt exactly.
        link = authenticate(node.port, b"Hands", b"Goloman")
        link.send(b"CHANGELOC good " + LOC + b" 1520023930.5 1520023931.000000000 Hands\n")
        # A record naming a server outside the topology is skipped; the link stays up.
        link.send(b"CHANGELOC alien " + LOC + b" 1520023930 1520023931.000000000 Mars\n")
        link.send(b"CHANGELOC good2 +0+0 7 8.000000001 Hands\n")
        wait_until(
            lambda: whatsat(node, b"good2").startswith(b"AT Hands "), "the well-formed records"
        )
        assert whatsat(node, b"good") == b"AT Hands +0.500000000 good " + LOC + b" 1520023930.5\n"
        assert whatsat(node, b"good2") == b"AT Hands +1.000000001 good2 +0+0 7\n"
        assert whatsat(node, b"alien") == b"? WHATSAT alien 1 1\n"
        _wait_log(node, r"PEER_UNKNOWN_SERVER peer=Hands server=Mars client=alien", "skip")
        link.close()


# -- the secret file ---------------------------------------------------------------------------


def test_secret_file_is_private_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    with herd_of(tmp_path, ("Goloman", "Hands"), [("Goloman", "Hands")], secret=None) as herd:
        herd.start()
        herd.wait_links_up()  # both read the one file they raced to create
        secret_file = tmp_path / "run" / "herd.secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert len(secret_file.read_bytes().strip()) >= 32
        herd.stop()

        for mode in (0o644, 0o640, 0o604):
            secret_file.chmod(mode)
            node = herd.nodes["Goloman"]
            node.start()
            assert node.proc is not None
            assert node.proc.wait(30) == EXIT_CONFIG
            assert node.proc.stderr is not None
            lines = node.proc.stderr.read().decode().splitlines()
            node.proc.stderr.close()
            assert len(lines) == 1, lines
            assert f"chmod 600 {secret_file}" in lines[0] and f"{mode:o}" in lines[0], lines
            assert "Traceback" not in lines[0]
            assert f"START_FAILED node=Goloman reason=secret file {secret_file}" in node.log_text()

        secret_file.chmod(0o600)  # fixed as the message says: the node starts again
        herd.start("Goloman")
