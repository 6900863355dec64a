"""Hostile clients against a real node process: every limit, odd bytes, and a seeded fuzz.

Each test starts one `python -m node` process with the limits it exercises set small in
topology.yaml, attacks it from ordinary sockets, and checks the node's replies and log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import select
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Herd, NodeProcess, wait_until, write_topology

BACKOFF = {"peer_backoff_initial": 0.05, "peer_backoff_max": 5.0}
SWEEP = 1.0  # the node checks deadlines once a second
SLACK = 3.0  # a loaded 2-core machine: how late a cut-off may come beyond the sweep
FUZZ_LINES = 100_000
FUZZ_SEED = 20_180_302
FUZZ_CONNECTIONS = 4
MAX_FUZZ_LINE = 60_000  # under the default max_line_bytes
P99_BOUND = 0.250  # seconds; generous for a loaded 2-core machine
_DIFF = re.compile(rb"[+-]\d+\.\d{9}")


@contextlib.contextmanager
def solo_node(
    folder: Path, limits: dict[str, Any], *, name: str = "Solo", ghosts: tuple[str, ...] = ()
) -> Iterator[NodeProcess]:
    """One real node; `ghosts` are neighbours in its topology that never run."""
    config = write_topology(
        folder,
        (name, *ghosts),
        [(name, ghost) for ghost in ghosts],
        extra={"places": {"provider": "offline"}, "limits": {**BACKOFF, **limits}},
    )
    with Herd(config) as herd:
        herd.start(name)
        node = herd.nodes[name]
        yield node
        assert node.proc is not None and node.proc.poll() is None, "the node died"


class Client:
    """A blocking line client: send a line, read its one reply."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def ask(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\n")
        return self.file.readline()

    def ask_whatsat(self, line: bytes) -> bytes:
        """A WHATSAT's reply: the AT line, the JSON, the blank line."""
        self.sock.sendall(line + b"\n")
        reply = self.file.readline()
        while not reply.endswith(b"}\n\n") and not reply.startswith(b"? "):
            more = self.file.readline()
            assert more, f"connection closed mid-reply: {reply[-200:]!r}"
            reply += more
        return reply

    def read_to_end(self) -> bytes:
        """Everything until the node closes; a reset ends it too."""
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := self.sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _log_has(node: NodeProcess, pattern: str) -> re.Match[str] | None:
    return re.search(pattern, node.log_text())


def _wait_log(node: NodeProcess, pattern: str, what: str, timeout: float = 10.0) -> re.Match[str]:
    wait_until(lambda: _log_has(node, pattern) is not None, what, timeout)
    match = _log_has(node, pattern)
    assert match is not None
    return match


def _conn_id(node: NodeProcess, port: int) -> str:
    """The node's id for our connection from local `port`, from its CONN_OPEN event."""
    match = _wait_log(node, rf"CONN_OPEN conn=(\d+) from=127\.0\.0\.1:{port}\b", "CONN_OPEN")
    return match.group(1)


def _all_closed(node: NodeProcess) -> bool:
    """At least one connection came and every one that came has gone, says the log."""
    log = node.log_text()
    opened = log.count("CONN_OPEN")
    return opened > 0 and opened == log.count("CONN_CLOSE") + log.count("CONN_CUT")


# -- lines over the limit --------------------------------------------------------------------


def test_line_over_the_limit_is_refused_and_only_its_connection_closed(tmp_path: Path) -> None:
    limit = 1000
    with solo_node(tmp_path, {"max_line_bytes": limit}) as node:
        bystander = Client(node.port)
        assert bystander.ask(b"IAMAT by +1+1 1520023934").startswith(b"AT Solo ")

        # Exactly the limit is a line like any other; the connection stays open.
        edge = Client(node.port)
        at_limit = b"Z" * limit
        assert edge.ask(at_limit) == b"? " + at_limit + b"\n"
        assert edge.ask(at_limit + b"\r") == b"? " + at_limit + b"\n"  # CR is the terminator's
        assert edge.ask(b"IAMAT edge +1+1 1").startswith(b"AT Solo ")

        # One byte more: one `? ` reply with the first `limit` bytes, then the node closes.
        over = bytes(range(0x80, 0x100)) * 8 + b"\xc2\xa0\x00" * 400
        assert len(over) > limit and b"\n" not in over
        hostile = Client(node.port)
        hostile.sock.sendall(b"IAMAT before +1+1 1\n" + over + b"\nIAMAT after +1+1 1\n")
        reply = hostile.read_to_end()
        first, rest = reply.split(b"\n", 1)
        assert first.startswith(b"AT Solo ") and first.endswith(b" before +1+1 1")
        assert rest == b"? " + over[:limit] + b"\n", "one `? ` with the first bytes, then EOF"
        _wait_log(node, rf"LINE_TOO_LONG conn=\d+ limit={limit}", "LINE_TOO_LONG")

        # A line that never ends is refused the same way, before it ends.
        endless = Client(node.port)
        endless.sock.sendall(b"Q" * (limit * 5))
        assert endless.read_to_end() == b"? " + b"Q" * limit + b"\n"

        # Everyone else is unaffected.
        assert edge.ask(b"IAMAT edge +2+2 2").startswith(b"AT Solo ")
        assert bystander.ask_whatsat(b"WHATSAT by 10 1").endswith(b"}\n\n")
        for c in (bystander, edge, hostile, endless):
            c.close()


# -- a half-sent line held open ----------------------------------------------------------------


def test_half_sent_line_is_cut_after_the_deadline(tmp_path: Path) -> None:
    deadline = 1.0
    with solo_node(tmp_path, {"line_deadline": deadline, "idle_timeout": 0}) as node:
        holder = Client(node.port, timeout=deadline + SWEEP + SLACK + 5)
        holder.sock.sendall(b"IAMAT held +1+1 15200239")  # ... and never the rest
        # A trickler sends a byte now and then but never ends its line: still cut.
        trickler = Client(node.port)
        trickler.sock.sendall(b"IAMAT")
        holder_id = _conn_id(node, holder.sock.getsockname()[1])
        trickler_id = _conn_id(node, trickler.sock.getsockname()[1])
        started = time.monotonic()

        # Meanwhile an honest client, and one that finishes its slow line in time, are served.
        honest = Client(node.port)
        slow = Client(node.port)
        slow.sock.sendall(b"IAMAT slow ")
        worst = 0.0
        for i in range(6):
            t0 = time.monotonic()
            assert honest.ask(b"IAMAT honest +1+1 %d" % i).startswith(b"AT Solo ")
            worst = max(worst, time.monotonic() - t0)
            with contextlib.suppress(OSError):
                trickler.sock.sendall(b" ")
            time.sleep(0.2)  # pacing the trickle, not synchronisation
        assert slow.ask(b"+1+1 1").startswith(b"AT Solo ")
        assert worst < 1.0, "held half-lines must not slow anyone else"

        assert holder.read_to_end() == b"", "the holder gets no reply, only the cut"
        elapsed = time.monotonic() - started
        assert elapsed < deadline + SWEEP + SLACK
        _wait_log(
            node,
            rf"CONN_CUT conn={holder_id} from=127\.0\.0\.1:\d+ reason=line_deadline\(1s\)",
            "the holder's cut to be logged",
        )
        assert trickler.read_to_end() == b""
        _wait_log(
            node,
            rf"CONN_CUT conn={trickler_id} from=\S+ reason=line_deadline\(1s\)",
            "the trickler's cut to be logged",
        )
        assert honest.ask(b"IAMAT honest +1+1 9").startswith(b"AT Solo ")
        assert slow.ask(b"IAMAT slow +1+1 2").startswith(b"AT Solo ")
        for c in (holder, trickler, honest, slow):
            c.close()


# -- the connection cap ------------------------------------------------------------------------


def test_connections_over_the_cap_are_refused_at_once(tmp_path: Path) -> None:
    cap = 20
    with solo_node(tmp_path, {"max_connections": cap}) as node:
        # The start-up readiness check connected too: wait until the node has let it go.
        wait_until(lambda: _all_closed(node), "the readiness check's connection to close")
        held = [Client(node.port) for _ in range(cap)]
        for i, c in enumerate(held):  # each is registered once it has been answered
            assert c.ask(b"IAMAT cap%d +1+1 1" % i).startswith(b"AT Solo ")

        for _ in range(3):
            t0 = time.monotonic()
            extra = Client(node.port)
            with contextlib.suppress(OSError):
                extra.sock.sendall(b"IAMAT extra +1+1 1\n")
            assert extra.read_to_end() == b"", "the excess connection must get nothing"
            assert time.monotonic() - t0 < 2.0, "refused at once, not after a timeout"
            extra.close()
        refused = rf"CONN_REFUSED conn=\d+ from=127\.0\.0\.1:\d+ reason=max_connections\({cap}\)"
        wait_until(lambda: len(re.findall(refused, node.log_text())) >= 3, "3 refusals logged")
        assert node.log_text().count("CONN_REFUSED") == 3

        # Those already in are still served in full.
        for i, c in enumerate(held):
            assert c.ask_whatsat(b"WHATSAT cap%d 5 1" % i).endswith(b"}\n\n")

        # One leaves: a newcomer gets its place.
        held.pop().close()

        def newcomer_served() -> bool:
            c = Client(node.port)
            try:
                return c.ask(b"IAMAT late +1+1 1").startswith(b"AT Solo ")
            except OSError:
                return False
            finally:
                c.close()

        wait_until(newcomer_served, "a free slot after one connection closed", 10)
        for c in held:
            c.close()


# -- idle connections ------------------------------------------------------------------------


def test_idle_connections_are_closed_after_the_timeout(tmp_path: Path) -> None:
    idle = 1.0
    with solo_node(tmp_path, {"idle_timeout": idle}) as node:
        sleeper = Client(node.port, timeout=idle + SWEEP + SLACK + 5)
        assert sleeper.ask(b"IAMAT sleepy +1+1 1").startswith(b"AT Solo ")
        sleeper_id = _conn_id(node, sleeper.sock.getsockname()[1])
        silent = Client(node.port, timeout=idle + SWEEP + SLACK + 5)  # never says a word
        silent_id = _conn_id(node, silent.sock.getsockname()[1])
        started = time.monotonic()
        busy = Client(node.port)
        while time.monotonic() - started < idle + SWEEP + 0.5:  # busy past the timeout
            assert busy.ask(b"IAMAT busy +1+1 1").startswith(b"AT Solo ")
            time.sleep(0.2)  # pacing: a client that talks now and then, never idle long
        assert sleeper.read_to_end() == b""
        assert silent.read_to_end() == b""
        assert time.monotonic() - started < idle + SWEEP + SLACK
        for conn_id in (sleeper_id, silent_id):
            _wait_log(
                node,
                rf"CONN_CUT conn={conn_id} from=\S+ reason=idle_timeout\(1s\)",
                f"conn {conn_id}'s idle cut-off in the log",
            )
        assert busy.ask(b"IAMAT busy +1+1 2").startswith(b"AT Solo ")
        busy.close()
        sleeper.close()
        silent.close()


# -- bytes that are not text --------------------------------------------------------------------

ODD_CLIENTS = [
    b"\xff\xfe\xfd",  # not UTF-8 at all
    b"caf\xc3\xa9\xe2\x80\x8b",  # UTF-8 with a zero-width space
    b"\x00nul\x01\x02\x7f",  # control bytes
    b"\x1b[31mred\x1b[0m",  # terminal escapes
    b"a\x1cb\x1dc\x1ed\x1ff",  # separators to str.split(), not to the protocol
    b"nb\xc2\xa0sp",  # a non-breaking space is part of a field
    b"\xed\xa0\x80surrogate\xc0\xaf",  # encoded surrogate and overlong form
    b"back\\slash%s%n{}",
]


def test_non_utf8_and_control_bytes_are_echoed_exactly_in_every_field(tmp_path: Path) -> None:
    with solo_node(tmp_path, {}) as node:
        c = Client(node.port)
        for client in ODD_CLIENTS:
            reply = c.ask(b"IAMAT " + client + b" +34.068930-118.445127 1520023934.918963997")
            assert re.fullmatch(
                rb"AT Solo [+-]\d+\.\d{9} "
                + re.escape(client)
                + rb" \+34\.068930-118\.445127 1520023934\.918963997\n",
                reply,
                re.DOTALL,
            ), reply
            whatsat = c.ask_whatsat(b"WHATSAT " + client + b" 10 2")
            assert whatsat.split(b"\n", 1)[0] == reply.rstrip(b"\n")
            json.loads(whatsat.split(b"\n", 1)[1])

        # VT, FF, tab and CR separate fields; the reply uses single spaces.
        reply = c.ask(b"\x0b IAMAT\x0bvt\x0c+1+1\t\r1520023934\x0c\r")
        assert re.fullmatch(rb"AT Solo [+-]\d+\.\d{9} vt \+1\+1 1520023934\n", reply), reply

        # Odd bytes in each field of otherwise valid lines make them invalid, echoed exactly.
        bad_lines = [
            b"IAMAT\xc2\xa0x +1+1 1",  # a non-breaking space joins keyword and client
            b"IAMAT x +1+1\xc2\xa0 1",
            b"IAMAT x +1\x00+1 1",
            b"IAMAT x +1+1 1\x7f",
            b"IAMAT x \xff+1+1 1",
            b"IAMAT x +1+1 \xd9\xa1",  # an Arabic-Indic digit is not a digit here
            b"WHATSAT \xff\xfe\xfd 1\x00 2",
            b"WHATSAT \xff\xfe\xfd 1 \x1b2",
            b"WHATSAT \xff\xfe\xfd \xef\xbc\x91 2",  # a fullwidth digit
            b"\x00IAMAT x +1+1 1",
            b"iamat x +1+1 1",
            b"IAMAT x +1+1 1 \x1f",
            b"CHANGELOC \xff +1+1 1 1.000000000 Solo",
            b"HELLO \xff Solo " + b"0" * 32,
            b"\xff" * 300,
            b"mid\rline CR stays",
        ]
        for line in bad_lines:
            assert c.ask(line) == b"? " + line + b"\n", line
        # Blank lines get no reply, and replies stay in order.
        c.sock.sendall(b" \t\x0b\x0c\r\n\n\r\nIAMAT last +1+1 1\n")
        assert c.file.readline().endswith(b" last +1+1 1\n")
        c.close()


# -- the fuzz ------------------------------------------------------------------------------

FUZZ_CLIENTS = [b"kiwi.cs.ucla.edu", b"fz\xff\xfe", b"caf\xc3\xa9", b"\x01ctl\x7f", b"nb\xc2\xa0sp"]
SEPARATORS = [b" ", b"  ", b"\t", b"\x0b", b"\x0c", b"\r", b" \r\x0b", b"\xc2\xa0", b"\x00", b""]
ODD_BYTES = [b"\x0b", b"\x0c", b"\r", b"\t", b" ", b"\x00", b"\xff", b"\xc2\xa0", b"\x7f"]
ODD_BYTES += [b"+", b".", b"-", b"0", b"9"]


class Fuzzer:
    """Seeded lines: mutated valid client and peer lines, and random bytes; never an LF."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def number(self) -> bytes:
        rng = self.rng
        whole = b"%d" % rng.choice([0, 1, 7, 90, 180, 1520023934, rng.randrange(10**12)])
        if rng.random() < 0.6:
            return whole + b"." + b"%d" % rng.randrange(10**9) + b"0" * rng.randrange(3)
        return whole

    def location(self) -> bytes:
        rng = self.rng
        lat = rng.uniform(-95, 95)
        lng = rng.uniform(-185, 185)
        return b"%+.*f%+.*f" % (rng.randrange(7), lat, rng.randrange(7), lng)

    def valid(self) -> bytes:
        rng = self.rng
        client = rng.choice(FUZZ_CLIENTS)
        kind = rng.choices(range(7), weights=[40, 30, 10, 8, 1, 3, 8])[0]
        if kind == 0:
            return b"IAMAT %s %s %s" % (client, self.location(), self.number())
        if kind == 1:
            radius = rng.choice(
                [b"0", b"1", b"2.5", b"50", b"50.0", b"51", b"%d" % rng.randrange(99)]
            )
            return b"WHATSAT %s %s %d" % (client, radius, rng.randrange(0, 23))
        if kind == 2:
            return b"CHANGELOC %s %s %s %d.%09d Solo" % (
                client,
                self.location(),
                self.number(),
                rng.randrange(10**10),
                rng.randrange(10**9),
            )
        if kind == 3:
            who = rng.choice([b"Ghost", b"Solo", b"Nobody", b"ghost"])
            return b"HELLO %s Solo %s" % (who, rng.randbytes(16).hex().encode())
        if kind == 4:
            return b"AUTH %s" % rng.randbytes(32).hex().encode()
        if kind == 5:
            return b"SYNCED %d" % rng.randrange(100)
        return b""  # replaced by random bytes below

    def mutate(self, line: bytes) -> bytes:
        rng = self.rng
        data = bytearray(line)
        op = rng.randrange(9)
        if op == 0 and data:  # flip a bit
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert an odd byte or a random one
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.choice(ODD_BYTES) if rng.random() < 0.7 else rng.randbytes(1)
        elif op == 2 and data:  # delete a few bytes
            i = rng.randrange(len(data))
            del data[i : i + rng.randrange(1, 4)]
        elif op == 3:  # swap two fields
            fields = bytes(data).split(b" ")
            if len(fields) > 1:
                i, j = rng.sample(range(len(fields)), 2)
                fields[i], fields[j] = fields[j], fields[i]
            data = bytearray(b" ".join(fields))
        elif op == 4:  # a huge number
            digits = b"9" * rng.choice([20, 400, 4301, 20_000])
            data = bytearray(re.sub(rb"\d+", lambda _m: digits, bytes(data), count=1))
        elif op == 5:  # odd white space between, before and after the fields
            fields = bytes(data).split(b" ")
            data = bytearray(rng.choice(SEPARATORS))
            for f in fields:
                data += f + rng.choice(SEPARATORS)
        elif op == 6:  # drop or repeat a field
            fields = bytes(data).split(b" ")
            i = rng.randrange(len(fields))
            fields[i : i + 1] = [] if rng.random() < 0.5 else [fields[i]] * 2
            data = bytearray(b" ".join(fields))
        elif op == 7 and data:  # truncate
            del data[rng.randrange(len(data)) :]
        else:  # a CR, which belongs to the terminator only when it ends the line
            data += b"\r"
        return bytes(data).replace(b"\n", b"")

    def line(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            return rng.randbytes(rng.randrange(0, 120)).replace(b"\n", b"")
        if roll < 0.12:
            return rng.choice([b"", b" ", b"\t\r", b"\x0b\x0c"])
        line = self.valid() or rng.randbytes(rng.randrange(1, 60)).replace(b"\n", b"")
        for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
            line = self.mutate(line)
        return line[:MAX_FUZZ_LINE]  # over the limit would close the connection: tested above

    def sessions(self, count: int) -> list[list[bytes]]:
        """`count` lines cut into connections: a refused AUTH ends its connection."""
        sessions: list[list[bytes]] = [[]]
        for _ in range(count):
            line = self.line()
            sessions[-1].append(line)
            if _fields(line)[:1] == [b"AUTH"] or len(sessions[-1]) >= 5000:
                sessions.append([])
        return [s for s in sessions if s]


def _fields(line: bytes) -> list[bytes]:
    return _echo(line).split()


def _echo(line: bytes) -> bytes:
    """The line as the node sees it: a CR right before the LF is the terminator's."""
    return line[:-1] if line.endswith(b"\r") else line


def check_replies(lines: list[bytes], stream: bytes, counts: Counter[str]) -> None:
    """Each non-blank line got exactly one reply, in order, and the reply fits the line."""
    pos = 0
    for n, line in enumerate(lines):
        fields = _fields(line)
        if not fields:
            counts["blank"] += 1
            continue
        where = f"line {n} {line[:120]!r}, reply at {stream[pos : pos + 120]!r}"
        invalid = b"? " + _echo(line) + b"\n"
        if stream.startswith(invalid, pos):
            pos += len(invalid)
            counts["invalid"] += 1
            continue
        end = stream.find(b"\n", pos)
        assert end >= 0, f"no reply for {where}"
        reply = stream[pos:end]
        if fields[0] == b"IAMAT":
            at = reply.split(b" ")
            assert at[:2] == [b"AT", b"Solo"] and _DIFF.fullmatch(at[2]), where
            assert at[3:] == fields[1:], where
            counts["AT"] += 1
            pos = end + 1
        elif fields[0] == b"WHATSAT":
            assert reply.startswith(b"AT ") and reply.split(b" ")[3] == fields[1], where
            body_end = stream.find(b"}\n\n", end)
            assert stream[end + 1 : end + 2] == b"{" and body_end > 0, where
            body = json.loads(stream[end + 1 : body_end + 1])
            assert len(body["results"]) <= int(fields[3]), where
            counts["WHATSAT"] += 1
            pos = body_end + 3
        elif fields[0] == b"HELLO":
            assert reply.startswith(b"CHALLENGE Solo "), where
            counts["CHALLENGE"] += 1
            pos = end + 1
        else:
            raise AssertionError(f"unexpected reply to {where}")
    assert pos == len(stream), f"{len(stream) - pos} bytes of replies nobody asked for"


async def _run_session(port: int, lines: list[bytes], counts: Counter[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:

        async def send() -> None:
            data = b"".join(line + b"\n" for line in lines)
            for i in range(0, len(data), 1 << 16):
                writer.write(data[i : i + (1 << 16)])
                await writer.drain()
            writer.write_eof()

        sending = asyncio.create_task(send())
        stream = await asyncio.wait_for(reader.read(), 60)
        await asyncio.wait_for(sending, 10)
    finally:
        writer.close()
    check_replies(lines, stream, counts)
    counts["connections"] += 1


async def _fuzz(port: int, sessions: list[list[bytes]], counts: Counter[str]) -> None:
    queue = iter(sessions)

    async def worker() -> None:
        for lines in queue:
            await _run_session(port, lines, counts)

    await asyncio.gather(*(worker() for _ in range(FUZZ_CONNECTIONS)))


# The legitimate client, in its own process so the fuzzer's CPU use does not skew its clock.
PROBE = r"""
import json, select, socket, sys, time
port, baseline = int(sys.argv[1]), int(sys.argv[2])
sock = socket.create_connection(("127.0.0.1", port), timeout=30)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
replies = sock.makefile("rb")
samples = []
sock.sendall(b"IAMAT probe +34.068930-118.445127 1520023934.918963997\n")
replies.readline()
i = 0
while True:
    i += 1
    whatsat = i % 10 == 0
    t0 = time.monotonic()
    iamat = b"IAMAT probe +34.068930-118.445127 %d\n" % i
    sock.sendall(b"WHATSAT probe 2 2\n" if whatsat else iamat)
    reply = replies.readline()
    assert reply.startswith(b"AT "), reply
    while whatsat and not reply.endswith(b"}\n\n"):
        line = replies.readline()
        assert line, "closed"
        reply += line
    samples.append((t0, time.monotonic() - t0))
    if i == baseline:
        print("baseline", flush=True)
    if select.select([sys.stdin], [], [], 0.005)[0]:  # paces the client, and hears the end
        break
print(json.dumps(samples), flush=True)
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _stderr_so_far(node: NodeProcess) -> str:
    assert node.proc is not None and node.proc.stderr is not None
    os.set_blocking(node.proc.stderr.fileno(), False)
    return (node.proc.stderr.read() or b"").decode(errors="replace")


def test_fuzz_100k_lines_each_answered_once_while_others_stay_fast(tmp_path: Path) -> None:
    fuzzer = Fuzzer(FUZZ_SEED)
    sessions = fuzzer.sessions(FUZZ_LINES)
    assert sum(map(len, sessions)) == FUZZ_LINES
    with solo_node(tmp_path, {}, ghosts=("Ghost",)) as node:
        probe = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(node.port), "200"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert probe.stdout is not None and probe.stdin is not None
            ready, _, _ = select.select([probe.stdout], [], [], 30)
            assert ready and probe.stdout.readline() == b"baseline\n", "the probe failed"
            counts: Counter[str] = Counter()
            fuzz_start = time.monotonic()
            asyncio.run(_fuzz(node.port, sessions, counts))
            fuzz_end = time.monotonic()
            out, _ = probe.communicate(b"stop\n", timeout=30)
        finally:
            if probe.poll() is None:
                probe.kill()
                probe.wait(5)
        samples = json.loads(out.splitlines()[-1])

        # The node is alive and well, and said nothing on stderr but its start line.
        with contextlib.closing(Client(node.port)) as after:
            assert after.ask(b"IAMAT after +1+1 1").startswith(b"AT Solo ")
        stderr = _stderr_so_far(node)
        assert "Traceback" not in stderr and "Error" not in stderr, stderr

    before = [lat for t0, lat in samples if t0 < fuzz_start]
    during = [lat for t0, lat in samples if fuzz_start <= t0 < fuzz_end]
    answered = counts["invalid"] + counts["AT"] + counts["WHATSAT"] + counts["CHALLENGE"]
    print(
        f"\nfuzz: {FUZZ_LINES} lines (seed {FUZZ_SEED}) over {counts['connections']} connections"
        f" in {fuzz_end - fuzz_start:.1f}s; {answered} non-blank lines answered once each"
        f" ({counts['invalid']} `?`, {counts['AT']} AT, {counts['WHATSAT']} WHATSAT,"
        f" {counts['CHALLENGE']} CHALLENGE), {counts['blank']} blank unanswered"
    )
    for label, values in (("before", before), ("during", during)):
        print(
            f"probe latency {label} the fuzz: n={len(values)}"
            f" p50={_percentile(values, 0.5) * 1000:.1f}ms"
            f" p99={_percentile(values, 0.99) * 1000:.1f}ms max={max(values) * 1000:.1f}ms"
        )
    assert answered + counts["blank"] == FUZZ_LINES
    assert len(during) >= 50, "the probe must have run throughout the fuzz"
    assert _percentile(during, 0.99) < P99_BOUND


def test_fuzzer_is_seeded_and_never_sends_lf() -> None:
    a, b = Fuzzer(1).sessions(2000), Fuzzer(1).sessions(2000)
    assert a == b
    lines = [line for s in a for line in s]
    assert not any(b"\n" in line for line in lines)
    kinds = Counter(_fields(line)[:1][0] if _fields(line) else b"" for line in lines)
    assert kinds[b"IAMAT"] > 400 and kinds[b"WHATSAT"] > 300 and kinds[b""] > 20


@pytest.mark.parametrize(
    ("lines", "stream"),
    [
        ([b"IAMAT a +1+1 1"], b""),  # missing reply
        ([b"X"], b"? X\n? X\n"),  # a reply too many
        ([b"IAMAT a +1+1 1"], b"AT Solo +0.000000000 b +1+1 1\n"),  # someone else's reply
    ],
)
def test_reply_checker_catches_missing_extra_and_wrong_replies(
    lines: list[bytes], stream: bytes
) -> None:
    with pytest.raises(AssertionError):
        check_replies(lines, stream, Counter())
