"""A small network of "machines" on this one: a network namespace per host, wired to a bridge.

`Lab` makes a switch namespace holding a bridge, and one namespace per host with its own
`eth0` (a veth pair to the bridge) and an address in 10.213.0.0/24. Those addresses exist
only inside the lab's namespaces: no interface of the real machine is touched and nothing
routes out, so the herd's traffic stays in the lab. Each host runs its own `herdctl` from
its own folder (its own run, log and data folders, as a separate machine has), all from one
topology.yaml naming the hosts' addresses, with one shared `HERD_SECRET`.

Faults come from the network, not from killing processes: `link_down`/`link_up` take a
host's interface down and up; `drop` loses a share of a host's outgoing TCP packets with
nftables (`numgen random`); `delay` adds latency with tc netem where the kernel has it.
`close` kills every process in the lab's namespaces and deletes them, even after a failure.
Root only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUBNET = "10.213.0"  # /24, inside the lab only
FIRST_HOST = 11  # host i is 10.213.0.(11 + i)
NODE_PORT = 12000  # every node the same port: they are on different hosts
METRICS_PORT = 12100
HERDCTL = str(Path(sys.executable).with_name("herdctl"))
COMMAND_TIMEOUT = 90.0
_labs = itertools.count()


class LabUnavailable(Exception):
    """This machine cannot make the lab (not root, no `ip`, no namespaces); says why."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why no lab can be made here, or None when one can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"herdprobe{os.getpid()}"
    try:
        run(["ip", "netns", "add", probe])
    except (RuntimeError, OSError) as e:
        return f"cannot make a network namespace: {e}"
    run(["ip", "netns", "del", probe], check=False)
    return None


@dataclass(frozen=True)
class Host:
    """One machine of the lab: its namespace, address, folder and node."""

    name: str  # the node it runs
    netns: str
    address: str
    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / "topology.yaml"

    def status_file(self, node: str) -> Path:
        return self.folder / "run" / f"{node}.status.json"


class Lab:
    """Hosts in network namespaces on one bridge; use as a context manager."""

    def __init__(self, folder: Path, names: Sequence[str]) -> None:
        self.id = f"hl{os.getpid() % 100000}x{next(_labs)}"
        self.switch = f"{self.id}-sw"
        self.folder = folder
        self.secret = secrets.token_hex(32)
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._netns(self.switch)
        self._ip(self.switch, "link", "add", "br0", "type", "bridge")
        self._ip(self.switch, "link", "set", "br0", "up")
        for i, name in enumerate(names):
            self._add_host(i, name)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building -----------------------------------------------------------------------

    def _netns(self, netns: str) -> None:
        run(["ip", "netns", "add", netns])
        self._namespaces.append(netns)
        self._ip(netns, "link", "set", "lo", "up")

    def _ip(self, netns: str, *args: str) -> None:
        run(["ip", "-n", netns, *args])

    def _add_host(self, i: int, name: str) -> None:
        netns = f"{self.id}-{i}"
        self._netns(netns)
        port = f"v{i}"
        veth = ("type", "veth", "peer", "name", "eth0", "netns", netns)
        self._ip(self.switch, "link", "add", port, *veth)
        self._ip(self.switch, "link", "set", port, "master", "br0", "up")
        address = f"{SUBNET}.{FIRST_HOST + i}"
        self._ip(netns, "addr", "add", f"{address}/24", "dev", "eth0")
        self._ip(netns, "link", "set", "eth0", "up")
        folder = self.folder / name
        folder.mkdir(parents=True)
        self.hosts[name] = Host(name, netns, address, folder)

    def write_topology(
        self, links: Iterable[tuple[str, str]], limits: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One topology.yaml, the same on every host (relative folders: each host's own)."""
        doc: dict[str, Any] = {
            "nodes": {
                name: {"host": h.address, "port": NODE_PORT, "metrics_port": METRICS_PORT}
                for name, h in self.hosts.items()
            },
            "links": [list(link) for link in links],
            "places": {"provider": "offline"},
            "limits": dict(limits or {}),
        }
        text = yaml.safe_dump(doc, sort_keys=False)
        for host in self.hosts.values():
            host.config.write_text(text)
        return doc

    # -- running --------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k not in ("HERD_CONFIG", "HERD_SECRET")}
        return {**keep, "HERD_SECRET": self.secret}

    def exec_argv(self, host: Host, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", host.netns, *argv]

    def herdctl(
        self, name: str, *args: str, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """`herdctl -c TOPOLOGY ARGS` on host `name`, in its folder and namespace."""
        host = self.hosts[name]
        return subprocess.run(
            self.exec_argv(host, [HERDCTL, "-c", str(host.config), *args]),
            cwd=host.folder,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status(self, name: str) -> dict[str, dict[str, Any]]:
        """`herdctl status --json` on host `name`, by node."""
        done = self.herdctl(name, "status", "--json")
        return {row["name"]: row for row in json.loads(done.stdout)}

    def send(self, name: str, node: str, line: str) -> str:
        """Send one line from host `name` to `node` (`herdctl send`): the reply."""
        done = self.herdctl(name, "send", node, line)
        if done.returncode != 0:
            raise AssertionError(f"send {line!r} to {node} from {name}: {done.stderr}")
        return done.stdout

    def clients(self, name: str) -> int | None:
        """The client records host `name`'s node holds, from its status file."""
        with contextlib.suppress(OSError, ValueError):
            value = json.loads(self.hosts[name].status_file(name).read_text()).get("clients")
            return value if isinstance(value, int) else None
        return None

    # -- faults ---------------------------------------------------------------------------

    def link_down(self, name: str) -> None:
        self._ip(self.hosts[name].netns, "link", "set", "eth0", "down")

    def link_up(self, name: str) -> None:
        self._ip(self.hosts[name].netns, "link", "set", "eth0", "up")

    def drop(self, name: str, percent: int) -> None:
        """Lose `percent` % of host `name`'s outgoing TCP packets (nftables), one way only."""
        netns = self.hosts[name].netns
        script = (
            "table inet herdlab {\n"
            "  chain out {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    meta l4proto tcp numgen random mod 100 < {percent} drop\n"
            "  }\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", netns, "nft", "-f", "-"],
            input=script,
            text=True,
            check=True,
            capture_output=True,
        )

    def heal_drop(self, name: str) -> None:
        self.run_in(self.hosts[name], ["nft", "delete", "table", "inet", "herdlab"])

    def delay(self, name: str, ms: int) -> None:
        """Add `ms` of latency to host `name`'s outgoing packets (tc netem)."""
        argv = ["tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", f"{ms}ms"]
        self.run_in(self.hosts[name], argv)

    def run_in(self, host: Host, argv: Sequence[str]) -> str:
        """Run a command in `host`'s namespace; its output."""
        return run(self.exec_argv(host, argv))

    # -- the end ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every herd, kill whatever is left in the lab's namespaces, delete them."""
        for name in self.hosts:
            with contextlib.suppress(Exception):
                self.herdctl(name, "down", timeout=30)
        for netns in self._namespaces:
            pids = run(["ip", "netns", "pids", netns], check=False).split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for netns in reversed(self._namespaces):
            run(["ip", "netns", "del", netns], check=False)
        self._namespaces.clear()


def netem_missing() -> str | None:
    """Why tc netem cannot be used here, or None."""
    if shutil.which("tc") is None:
        return "no `tc` command"
    probe = f"herdnetem{os.getpid()}"
    try:
        run(["ip", "netns", "add", probe])
        argv = ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
        run(["ip", "netns", "exec", probe, *argv])
    except RuntimeError as e:
        return f"tc netem is not available in this kernel ({e})"
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return None


def nft_missing() -> str | None:
    return None if shutil.which("nft") else "no `nft` command (nftables) to drop packets"
