"""The scale figures: a node holding a million clients, and ten thousand idle connections.

    .venv/bin/python bench/scale.py [--clients N] [--idle N]

`million_clients` preloads one node by writing its journal directly (the entry format of
node/journal.py: `<crc32 of body, 8 hex> <body>\\n` with body `client location time_sent
time_received server`), starts it and reads its replay time from its `JOURNAL_REPLAY`
log line and its RSS from psutil, then starts a fresh neighbour and times it until its
status file says it has caught up (link synced, every client known).

`idle_connections` measures the p99 of 8 x 1 active clients on one node of a running
herd without and with N idle client connections held open, alternately.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from figures import INGEST_INTO, Settings, latency
from systems import (
    HOST,
    BenchError,
    Procs,
    System,
    log_text,
    node_argv,
    start_herd,
    wait_listening,
    write_topology,
)

from node.entries import encode_packed

PRELOADED = "Welsh"  # holds the clients; its only neighbour is Holiday
FRESH = "Holiday"
SCALE_NAMES = (FRESH, PRELOADED)
CATCH_UP_TIMEOUT = 180.0
REPLAY_TIMEOUT = 120.0
_REPLAY = re.compile(
    r"JOURNAL_REPLAY .*?entries=(\d+) clients=(\d+) damaged=(\d+).*seconds=([\d.]+)"
)


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE (children inherit it) towards `wanted`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def write_journal(folder: Path, clients: int, server: bytes = PRELOADED.encode()) -> int:
    """A wal segment of `clients` entries, one per client; its size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    base = 1_700_000_000
    size = 0
    with open(folder / "wal-00000001.log", "wb") as f:
        for start in range(0, clients, 50_000):
            chunk = []
            for i in range(start, min(clients, start + 50_000)):
                lat, lng = (i % 180_000) / 1000 - 90, (i % 360_000) / 1000 - 180
                packed = b"%+.6f%+.6f %d.%06d %d.%09d %s" % (
                    lat,
                    lng,
                    base + i,
                    i % 1_000_000,
                    base + i + 1,
                    i,
                    server,
                )
                chunk.append(encode_packed(b"client-%07d" % i, packed))
            data = b"".join(chunk)
            f.write(data)
            size += len(data)
    return size


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).memory_info().rss / 2**20
    return float("nan")


def _wait_replay(system: System, name: str, deadline: float) -> tuple[int, int, int, float]:
    while time.monotonic() < deadline:
        m = _REPLAY.search(log_text(system, name))
        if m:
            entries, clients, damaged = int(m.group(1)), int(m.group(2)), int(m.group(3))
            return entries, clients, damaged, float(m.group(4))
        for p in system.procs.procs:
            if p.popen.poll() is not None:
                raise BenchError(f"{p.name} exited during replay\n{p.tail()}")
        time.sleep(0.05)
    raise BenchError(f"{name}: no JOURNAL_REPLAY line within {REPLAY_TIMEOUT:g}s")


def _status(run_dir: Path, name: str) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((run_dir / f"{name}.status.json").read_text())
        if isinstance(data, dict):
            return data
    return {}


def million_clients(folder: Path, s: Settings) -> dict[str, Any]:
    """Replay time, RSS and a fresh neighbour's catch-up for one node holding N clients."""
    config, topo = write_topology(folder, SCALE_NAMES)
    data_dir, run_dir = Path(topo["data_dir"]), Path(topo["run_dir"])
    n = s.scale_clients
    t0 = time.monotonic()
    size = write_journal(data_dir / PRELOADED, n)
    written_s = time.monotonic() - t0
    procs = Procs()
    addresses = {name: (HOST, int(topo["nodes"][name]["port"])) for name in SCALE_NAMES}
    system = System("herd (Python), scale", "ours", addresses, procs, folder)
    try:
        started = time.monotonic()
        holder = procs.spawn(PRELOADED, node_argv(PRELOADED, config), Path.cwd(), folder / "logs")
        entries, clients, damaged, replay_s = _wait_replay(
            system, PRELOADED, started + REPLAY_TIMEOUT
        )
        if entries != n or clients != n or damaged:
            raise BenchError(
                f"journal replay read entries={entries} clients={clients} damaged={damaged}"
                f" of {n} written: has the journal format of node/journal.py changed?"
            )
        wait_listening(
            System("", "", {PRELOADED: addresses[PRELOADED]}, procs, folder), REPLAY_TIMEOUT
        )
        listening_s = time.monotonic() - started
        time.sleep(0.5)  # let the start-up garbage settle before reading RSS
        rss_holder = _rss_mb(holder.pid)
        started = time.monotonic()
        fresh = procs.spawn(FRESH, node_argv(FRESH, config), Path.cwd(), folder / "logs")
        deadline = started + CATCH_UP_TIMEOUT
        while True:
            st = _status(run_dir, FRESH)
            link = st.get("links", {}).get(PRELOADED, {})
            if link.get("synced") and st.get("clients", 0) >= n:
                break
            if fresh.popen.poll() is not None:
                raise BenchError(f"{FRESH} exited during catch-up\n{fresh.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{FRESH} had {st.get('clients', 0)} of {n} clients after {CATCH_UP_TIMEOUT:g}s"
                )
            time.sleep(0.05)
        catch_up_s = time.monotonic() - started
        rss_fresh = _rss_mb(fresh.pid)
        rss_holder_after = _rss_mb(holder.pid)
    finally:
        procs.stop()
    return {
        "clients": n,
        "journal_mb": round(size / 2**20, 1),
        "journal_write_s": round(written_s, 2),
        "replay_s": replay_s,
        "listening_s": round(listening_s, 2),
        "rss_mb": round(max(rss_holder, rss_fresh), 1),
        "rss_holder_mb": round(rss_holder, 1),
        "rss_holder_after_sync_mb": round(rss_holder_after, 1),
        "rss_fresh_mb": round(rss_fresh, 1),
        "catch_up_s": round(catch_up_s, 2),
    }


def _open_idle(address: tuple[str, int], count: int, deadline: float) -> list[socket.socket]:
    socks: list[socket.socket] = []
    try:
        while len(socks) < count:
            if time.monotonic() > deadline:
                raise BenchError(f"opened only {len(socks)} of {count} idle connections in time")
            socks.append(socket.create_connection(address, timeout=5.0))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _wait_connections(system: System, name: str, count: int, deadline: float) -> None:
    """Wait until the node reports holding `count` client connections (ours only)."""
    run_dir = system.folder / "run"
    if not (run_dir / f"{name}.status.json").exists():
        time.sleep(0.5)
        return
    while _status(run_dir, name).get("connections", 0) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"{name} never reported {count} connections")
        time.sleep(0.1)


def idle_connections(system: System, s: Settings, *, into: str = INGEST_INTO) -> dict[str, Any]:
    """p99 of 8 x 1 active clients without and with `idle_connections` idle ones.

    The change is the median of the pairs' ratios (with / without): a pair's two runs are
    seconds apart, so the machine's drift over the minute cancels out of each ratio."""
    address = system.address(into)
    without: list[float] = []
    with_idle: list[float] = []
    open_s: list[float] = []
    for _ in range(s.idle_pairs):
        without.append(latency(system, s, into=into).get("latency_ms.p99"))
        t0 = time.monotonic()
        socks = _open_idle(address, s.idle_connections, t0 + 120.0)
        try:
            _wait_connections(system, into, s.idle_connections, t0 + 120.0)
            open_s.append(time.monotonic() - t0)
            with_idle.append(latency(system, s, into=into).get("latency_ms.p99"))
        finally:
            for sock in socks:
                sock.close()
    p99_without, p99_with = statistics.median(without), statistics.median(with_idle)
    ratios = [w / wo for wo, w in zip(without, with_idle, strict=True) if wo > 0]
    return {
        "idle_connections": s.idle_connections,
        "p99_without_ms": round(p99_without, 3),
        "p99_with_ms": round(p99_with, 3),
        "change": round(statistics.median(ratios) - 1, 3) if ratios else float("nan"),
        "open_s": round(statistics.median(open_s), 2),
        "samples_without_ms": without,
        "samples_with_ms": with_idle,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="herd scale figures")
    parser.add_argument("--clients", type=int, default=Settings.scale_clients)
    parser.add_argument("--idle", type=int, default=Settings.idle_connections)
    args = parser.parse_args()
    s = Settings(scale_clients=args.clients, idle_connections=args.idle)
    raise_fd_limit(2 * args.idle + 1000)
    with tempfile.TemporaryDirectory(prefix="herd-scale-") as tmp:
        print(json.dumps(million_clients(Path(tmp) / "million", s), indent=2))
        herd = start_herd(Path(tmp) / "herd")
        try:
            print(json.dumps(idle_connections(herd, s), indent=2))
        finally:
            herd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
