"""Where a lone update spends its time, hop by hop, in our herd and in the Node.js herd.

    .venv/bin/python bench/hops.py [--samples N] [--no-nodejs]

Three real nodes in a chain, H1 - H2 - H3, and a fourth neighbour of all three played by
this script: the tap. A node floods what it applies to every neighbour but the one it came
from, so one IAMAT at H1 reaches the tap three times: from H1 at once, from H2 one hop
later, from H3 two hops later. With no polling in the way, each sample gives

- reply: the IAMAT's round trip at H1 (read, check, journal, answer);
- out:   IAMAT sent until H1's CHANGELOC reaches the tap (H1's work, its flood write, the
         tap's read);
- hop:   how much later H2's copy arrives than H1's, and H3's than H2's: one hop each, a
         neighbour reading, applying, journalling and flooding a record.

The tap speaks each herd's peer protocol (ours with its HELLO/CHALLENGE/AUTH handshake and
PINGs; Node.js's `HELLO NAME`) in a thread of its own, and every arrival, the reply's too,
is the kernel's timestamp of the packet reaching the socket (SO_TIMESTAMPNS), so how soon
this script gets to read it does not count. Samples go one at a time with a pause between,
so each update finds the herd idle. Medians and p99 over the samples, per system.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import selectors
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from systems import BENCH_DIR, HOST, REPO, Procs, System, free_ports, node_binary, wait_listening

from node.handshake import Responder

CHAIN = ("H1", "H2", "H3")
# The tap links to every node of the chain but never relays. Its name sorts before theirs, so
# no node holds its copy back for it (node.peers.Peers.hold_back_when_from): a node holds a
# relayed record back from a neighbour that sorts after it and also links to the sender,
# expecting that neighbour to send it first, and the tap never would.
TAP = "Gauge"
SECRET = "hops-bench-secret-0123456789abcdef"
PING_EVERY = 0.5  # seconds: our nodes drop a link silent for peer_timeout
GAP = 0.01  # seconds between samples: every update finds the herd idle
WAIT = 2.0  # seconds a sample may take before it counts as lost
T = TypeVar("T")


SO_TIMESTAMPNS = 35  # Linux <asm/socket.h>; Python's socket module does not name it
_TIMESPEC = struct.Struct("qq")


def kernel_stamps(sock: socket.socket) -> bool:
    """Have the kernel stamp each packet's arrival on `sock` (False where it cannot)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def receive(sock: socket.socket) -> tuple[bytes, float]:
    """What is waiting on `sock`, and when its packet reached this machine's socket (the
    kernel's stamp, POSIX seconds; our own clock where there is none)."""
    data, ancillary, _, _ = sock.recvmsg(65536, 64)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack(payload[: _TIMESPEC.size])
            return data, seconds + nanoseconds / 1e9
    return data, time.time()


class Tap:
    """The neighbour of every node, in its own thread: accepts their links and notes when
    each CHANGELOC reached its socket."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.arrivals: dict[bytes, dict[bytes, float]] = {}  # client -> sender -> time
        self.complete = threading.Condition()
        self.linked: set[bytes] = set()
        self._ours: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ, None)
        buffers: dict[socket.socket, bytes] = {}
        next_ping = time.monotonic()
        while not self._stop.is_set():
            for key, _ in selector.select(0.05):
                if key.fileobj is self.listener:
                    conn, _ = self.listener.accept()
                    sender = self._greet(conn)
                    kernel_stamps(conn)
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ, sender)
                    buffers[conn] = b""
                    continue
                conn = cast(socket.socket, key.fileobj)
                try:
                    data, at = receive(conn)
                except BlockingIOError:
                    continue
                if not data:
                    selector.unregister(conn)
                    conn.close()
                    continue
                *lines, buffers[conn] = (buffers[conn] + data).split(b"\n")
                for line in lines:
                    if line.startswith(b"CHANGELOC "):
                        self._arrived(line.split(b" ", 2)[1], key.data, at)
            if time.monotonic() >= next_ping:  # ours drop a link silent for peer_timeout
                next_ping = time.monotonic() + PING_EVERY
                for conn in self._ours:
                    with contextlib.suppress(OSError):
                        conn.send(b"PING\n")

    def _greet(self, conn: socket.socket) -> bytes:
        """The link's handshake, blocking: its sender's name."""
        conn.settimeout(10)
        reader = conn.makefile("rb")
        fields = reader.readline().split()
        if len(fields) == 4:  # ours: HELLO from to nonce, answered, then AUTH
            responder = Responder(self.secret, TAP.encode(), {n.encode() for n in CHAIN})
            conn.sendall(responder.on_hello(tuple(fields[1:])))
            conn.sendall(responder.on_auth(tuple(reader.readline().split()[1:])))
            sender = responder.peer or b"?"
            self._ours.append(conn)
        else:  # Node.js: `HELLO NAME`, believed
            sender = fields[1]
        self.linked.add(sender)
        return sender

    def _arrived(self, client: bytes, sender: bytes, at: float) -> None:
        with self.complete:
            self.arrivals.setdefault(client, {}).setdefault(sender, at)
            self.complete.notify_all()

    def wait(self, client: bytes, timeout: float) -> dict[bytes, float] | None:
        """The three arrivals of `client`'s record, once all are in (None after `timeout`)."""
        with self.complete:
            if not self.complete.wait_for(
                lambda: len(self.arrivals.get(client, {})) == len(CHAIN), timeout
            ):
                return None
            return self.arrivals.pop(client)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One lone update: when its IAMAT left, when the reply and each CHANGELOC copy arrived
    (POSIX seconds; arrivals are the kernel's stamps)."""

    sent: float
    answered: float
    copies: tuple[float, float, float]  # from H1, H2, H3


def take_samples(tap: Tap, h1: tuple[str, int], samples: int, warmup: int = 20) -> list[Sample]:
    """`samples` lone updates at H1, one at a time (after `warmup` more that are not kept)."""
    deadline = time.monotonic() + 30
    while len(tap.linked) < len(CHAIN):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {sorted(tap.linked)} linked to the tap")
        time.sleep(0.05)
    client_sock = socket.create_connection(h1)
    client_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    kernel_stamps(client_sock)
    found: list[Sample] = []
    lost = 0
    for i in range(samples + warmup):
        client = b"hop-%d-%d" % (os.getpid(), i)
        line = b"IAMAT %s +34.068930-118.445127 %.9f\n" % (client, time.time())
        sent = time.time()
        client_sock.sendall(line)
        reply, answered = b"", 0.0
        while not reply.endswith(b"\n"):
            data, answered = receive(client_sock)
            reply += data
        at = tap.wait(client, WAIT)
        if at is None:
            lost += 1
            continue
        if i >= warmup:
            t1, t2, t3 = (at[name.encode()] for name in CHAIN)
            found.append(Sample(sent, answered, (t1, t2, t3)))
        time.sleep(GAP)
    if lost:
        print(f"  {lost} samples lost (no copy within {WAIT:g} s)")
    client_sock.close()
    return found


def measure(tap: Tap, h1: tuple[str, int], samples: int) -> dict[str, list[float]]:
    """Per figure (reply, out, hop 1, hop 2), its seconds in every sample."""
    found: dict[str, list[float]] = {"reply": [], "out": [], "hop 1": [], "hop 2": []}
    for sample in take_samples(tap, h1, samples):
        t1, t2, t3 = sample.copies
        found["reply"].append(sample.answered - sample.sent)
        found["out"].append(t1 - sample.sent)
        found["hop 1"].append(t2 - t1)
        found["hop 2"].append(t3 - t2)
    return found


def topology(folder: Path, tap_port: int) -> dict[str, Any]:
    ports = free_ports(len(CHAIN))
    nodes = {name: {"host": HOST, "port": port} for name, port in zip(CHAIN, ports, strict=True)}
    nodes[TAP] = {"host": HOST, "port": tap_port}
    doc = {
        "nodes": nodes,
        "links": [["H1", "H2"], ["H2", "H3"], *([name, TAP] for name in CHAIN)],
        "places": {"provider": "offline"},
        "journal": {"fsync": "everysec"},
        "log_dir": str(folder / "logs"),
        "data_dir": str(folder / "data"),
        "run_dir": str(folder / "run"),
    }
    return doc


def run_system(
    label: str,
    argv: Callable[[str, Path], list[str]],
    folder: Path,
    ext: str,
    work: Callable[[Tap, tuple[str, int]], T],
) -> T:
    """Start the chain and its tap in `folder`, run `work` on them, stop everything."""
    folder.mkdir(parents=True)
    tap = Tap(SECRET.encode())
    tap.start()
    doc = topology(folder, tap.port)
    config = folder / f"topology.{ext}"
    config.write_text(json.dumps(doc, indent=2) + "\n")
    procs = Procs()
    try:
        for name in CHAIN:
            procs.spawn(name, argv(name, config), REPO, folder / "logs")
        addresses = {name: (HOST, int(doc["nodes"][name]["port"])) for name in CHAIN}
        wait_listening(System(label, label, addresses, procs, folder), 30.0)
        h1 = (HOST, int(doc["nodes"]["H1"]["port"]))
        return work(tap, h1)
    finally:
        procs.stop()
        tap.stop()
        print(f"{label}: done")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description="a lone update's time, hop by hop")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--no-nodejs", action="store_true")
    args = parser.parse_args()
    os.environ["HERD_SECRET"] = SECRET
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="herd-hops-") as tmp:
        results["ours"] = run_system(
            "ours",
            lambda name, config: [sys.executable, "-m", "node", name, "-c", str(config)],
            Path(tmp) / "ours",
            "yaml",
            lambda tap, h1: measure(tap, h1, args.samples),
        )
        binary = node_binary()
        if binary is not None and not args.no_nodejs:
            script = str(BENCH_DIR / "nodejs" / "herd.js")
            results["Node.js"] = run_system(
                "Node.js",
                lambda name, config: [binary, script, name, str(config)],
                Path(tmp) / "nodejs",
                "json",
                lambda tap, h1: measure(tap, h1, args.samples),
            )
    print(f"a lone update, {args.samples} samples, µs (p50 / p99)")
    systems = list(results)
    both = len(systems) == 2
    print(f"{'':<8}" + "".join(f"{s:>22}" for s in systems) + ("   ours/Node.js p50" * both))
    for part in ("reply", "out", "hop 1", "hop 2"):
        cells = []
        for system in systems:
            values = results[system][part]
            p50, p99 = statistics.median(values) * 1e6, percentile(values, 0.99) * 1e6
            cells.append(f"{p50:>10.0f} / {p99:<9.0f}")
        ratio = ""
        if both:
            a, b = (statistics.median(results[s][part]) for s in systems)
            ratio = f"{a / b:>18.2f}"
        print(f"{part:<8}" + "".join(f"{c:>22}" for c in cells) + ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
