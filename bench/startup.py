"""Start-up times: how soon a spawned node listens, and how long a herdctl command takes.

    .venv/bin/python bench/startup.py [--runs N]

A supervisor or a grader probes a restarted node at once, and an operator types herdctl
commands by the dozen, so both are measured as whole processes, from outside:

- spawn to listening: `python -m node NAME` on a one-node topology (offline places, no
  key, a metrics port) until its port accepts a connection; the process is then stopped;
- `herdctl --help`, and `herdctl status` against a running herd (`herdctl up` first);
- for scale, the bare interpreter (`python -c pass`) in the same run: what no command of
  ours can go below, and a gauge of how loaded the machine is.

Each figure is the median of N runs, with min and max, and its target from the operator
issue. Then, for the record, the imports that weigh most (`python -X importtime`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from systems import HOST, REPO, free_ports, node_argv, write_topology

NODE_TARGET = 0.2  # seconds from spawn to listening, offline places
COMMAND_TARGET = 0.15  # seconds for `herdctl --help` and `herdctl status`
LISTEN_TIMEOUT = 10.0
HERDCTL = str(Path(sys.executable).with_name("herdctl"))
# As a user's machine runs them: with byte-code caches (a CI or sandbox may turn them off,
# which makes every start compile every module again).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def spawn_to_listening(config: Path, port: int) -> float:
    """Seconds from spawning the node to its port taking a connection."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        node_argv("Welsh", config),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
        start_new_session=True,
    )
    try:
        deadline = started + LISTEN_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.05):
                return time.perf_counter() - started
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise SystemExit(f"the node exited with {proc.returncode}: {err.strip()}")
            if time.perf_counter() > deadline:
                raise SystemExit(f"the node did not listen on {port} in {LISTEN_TIMEOUT:g} s")
            time.sleep(0.001)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def command_time(argv: list[str], cwd: Path) -> float:
    """Seconds one whole herdctl process takes; it must succeed."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return took


def figure(name: str, runs: int, once: Callable[[], float], target: float | None) -> str:
    once()  # warm the file cache: the first run after a build reads every .pyc from disk
    times = [once() for _ in range(runs)]
    median = statistics.median(times)
    row = (
        f"{name:<28} median {median * 1e3:6.1f} ms  (min {min(times) * 1e3:.1f}, max"
        f" {max(times) * 1e3:.1f})"
    )
    if target is None:
        return row
    return f"{row}  target <= {target * 1e3:.0f} ms  {'PASS' if median <= target else 'FAIL'}"


@contextlib.contextmanager
def running_herd(config: Path, folder: Path) -> Iterator[None]:
    env = {**ENV, "HERD_CONFIG": str(config)}
    subprocess.run([HERDCTL, "up"], cwd=folder, env=env, capture_output=True, check=True)
    try:
        yield
    finally:
        subprocess.run([HERDCTL, "down"], cwd=folder, env=env, capture_output=True, check=False)


def heaviest_imports(module: str, count: int = 6) -> list[str]:
    """The `count` imports with the largest cumulative time under `-X importtime`."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    return [f"  {us / 1e3:7.1f} ms  {name.strip()}" for us, name in rows[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description="herd start-up times (make bench)")
    parser.add_argument("--runs", type=int, default=9, help="runs per figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herd-startup-") as tmp:
        folder = Path(tmp)
        config, topology = write_topology(folder / "one", names=("Welsh",))
        port = int(topology["nodes"]["Welsh"]["port"])
        # As the default topology runs it: with its metrics port (bound at start, the
        # metrics code imported only on the first scrape).
        topology["nodes"]["Welsh"]["metrics_port"] = free_ports(1)[0]
        config.write_text(json.dumps(topology, indent=2) + "\n")
        print(f"start-up, {args.runs} runs each, {os.cpu_count()} cores, {sys.version.split()[0]}")
        bare = [sys.executable, "-c", "pass"]
        print(figure("python (for scale)", args.runs, lambda: command_time(bare, folder), None))
        print(
            figure(
                "node spawn -> listening",
                args.runs,
                lambda: spawn_to_listening(config, port),
                NODE_TARGET,
            )
        )
        print(
            figure(
                "herdctl --help",
                args.runs,
                lambda: command_time([HERDCTL, "--help"], folder),
                COMMAND_TARGET,
            )
        )
        herd, _ = write_topology(folder / "herd")
        with running_herd(herd, folder / "herd"):
            status = [HERDCTL, "-c", str(herd), "status"]
            print(
                figure(
                    "herdctl status (herd up)",
                    args.runs,
                    lambda: command_time(status, folder),
                    COMMAND_TARGET,
                )
            )
    for module in ("node.__main__", "herdctl.cli"):
        print(f"heaviest imports of {module} (cumulative, -X importtime):")
        print("\n".join(heaviest_imports(module)))


if __name__ == "__main__":
    main()
