"""The supervisor's core: one slot per node, the monitor step, and the control commands.

Each node's slot and its status row are in herdctl.slot, the messages in herdctl.messages.
`Manager` owns no sockets and reads no clock of its own: the OS is behind a `Launcher`, time
comes from the injected `clock` (monotonic, for the policy), `wall` (uptime) and `sleep`, so
tests replay scripted histories with fakes. The daemon (`herdctl.supervisor`) wires it up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Mapping

from herdctl.control import Progress
from herdctl.messages import Answer, NodeRow, Request, RequestError, checked_request
from herdctl.policy import Action, NodePolicy, PolicyConfig, State
from herdctl.procs import Launcher, Record
from herdctl.slot import (
    SERVING,
    Slot,
    back_to_normal,
    describe_exit,
    link_of,
    node_row,
    stamped,
    status_links,
)
from node.config import HerdConfig
from node.status import NodeStatus

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
_STALE_STATUS = 15.0  # seconds: nodes refresh their status file at least every 5 s
_POLL = 0.05  # seconds between looks while a request waits for a process


class Manager:
    """Applies the restart policy to every local node and answers control requests."""

    def __init__(
        self,
        config: HerdConfig,
        launcher: Launcher,
        *,
        log: Callable[[str], None] = lambda text: None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        policy: PolicyConfig | None = None,
        tick: float = 0.2,
        stop_timeout: float = 10.0,
        catchup_timeout: float = 60.0,
        sample_every: float = 1.0,
    ) -> None:
        self.config = config
        self.launcher = launcher
        self.slots = {
            name: Slot(spec, launcher.is_local(spec.host), NodePolicy(policy))
            for name, spec in config.nodes.items()
        }
        self.finished = asyncio.Event()  # set once `shutdown` has stopped every node
        self._policy = policy
        self._log = log
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._tick = tick
        self._stop_timeout = stop_timeout
        self._catchup_timeout = catchup_timeout
        self._sample_every = sample_every
        self._next_sample = 0.0

    # -- the monitor ------------------------------------------------------------------

    def adopt_all(self) -> None:
        """Take over from an earlier supervisor: adopt the node processes it left running,
        restart those it meant to run that died meanwhile, keep the FATAL ones FATAL."""
        now = self._clock()
        for name, slot in self._local():
            record = self.launcher.noted(name)
            if record is None:  # never started, or stopped on purpose
                continue
            slot.policy.restarts = record.restarts
            proc = self.launcher.adopt(name)
            if proc is not None:
                slot.proc = proc
                slot.policy.on_adopted(now, max(0.0, self._wall() - proc.started_at))
                self._log(f"ADOPTED node={name} pid={proc.pid} state={slot.policy.state}")
            else:
                self._found_dead(slot, record, now)
            self._record(slot)

    def _found_dead(self, slot: Slot, record: Record, now: float) -> None:
        name = slot.spec.name
        try:
            was = State(record.state or State.RUNNING)
        except ValueError:
            was = State.RUNNING
        slot.policy.on_found_dead(now, was)
        state = slot.policy.state
        if state is State.EXITED:
            why = "died while no supervisor was watching"
            slot.message = stamped(self._wall(), f"{why} (pid {record.pid})")
            self._log(f"LOST node={name} pid={record.pid} was={was}: {why}; respawning")
        elif state is State.FATAL:
            slot.message = record.message
            self._log(f"FATAL_KEPT node={name} message={record.message}")
        else:
            self._log(f"STATE node={name} {was} -> {state} (its stop ended unwatched)")

    def _record(self, slot: Slot) -> None:
        """Keep the node's record in run_dir in step, for a supervisor that takes over."""
        name, policy = slot.spec.name, slot.policy
        try:
            if policy.state is State.STOPPED:
                self.launcher.forget(name)
            else:
                self.launcher.note(name, policy.restarts, str(policy.state), slot.message)
        except OSError as e:  # a full disk must not stop the supervision
            self._log(f"RECORD_FAILED node={name} error={e}")

    def step(self) -> None:
        """Notice exits, apply the policy (spawning when due), refresh cpu and memory."""
        now = self._clock()
        for _, slot in self._local():
            self._advance(slot, now)
        if now >= self._next_sample:
            self._next_sample = now + self._sample_every
            for _, slot in self._local():
                sample = slot.proc.sample() if slot.proc is not None else None
                slot.cpu, slot.rss = sample if sample is not None else (None, None)

    async def run(self) -> None:
        """Step every `tick` seconds until `shutdown` has finished."""
        while not self.finished.is_set():
            try:
                self.step()
            except Exception as e:  # one bad look must not end the supervision
                self._log(f"MONITOR_ERROR error={type(e).__name__}: {e}")
            await self._sleep(self._tick)

    def _advance(self, slot: Slot, now: float) -> None:
        before, restarts = slot.policy.state, slot.policy.restarts
        if slot.proc is not None:
            exited, code = slot.proc.poll()
            if exited:
                self._exited(slot, now, code)
        if slot.policy.tick(now) is Action.SPAWN:
            self._spawn(slot, now)
        after = slot.policy.state
        if after is not before:
            extra = ""
            if slot.policy.next_spawn_at is not None:
                extra = f" respawn_in={max(0.0, slot.policy.next_spawn_at - now):.2f}s"
            self._log(f"STATE node={slot.spec.name} {before} -> {after}{extra}")
        if after is not before or slot.policy.restarts != restarts:
            self._record(slot)

    def _exited(self, slot: Slot, now: float, code: int | None) -> None:
        proc, name = slot.proc, slot.spec.name
        assert proc is not None
        slot.proc = None
        slot.cpu = slot.rss = None
        expected = slot.policy.state is State.STOPPING
        slot.policy.on_exit(now, code)
        if not expected:
            slot.message = stamped(self._wall(), describe_exit(code, proc.last_error(), name))
        self._log(f"EXITED node={name} pid={proc.pid} code={code} expected={expected}")

    def _spawn(self, slot: Slot, now: float) -> None:
        name = slot.spec.name
        try:
            proc = self.launcher.spawn(name)
        except OSError as e:
            slot.policy.on_spawned(now)
            slot.policy.on_exit(now, None)
            slot.message = stamped(self._wall(), f"cannot spawn: {e}")
            self._log(f"SPAWN_FAILED node={name} error={e}")
            return
        slot.proc = proc
        slot.policy.on_spawned(now)
        self._log(f"SPAWNED node={name} pid={proc.pid} restarts={slot.policy.restarts}")

    def _local(self) -> list[tuple[str, Slot]]:
        return [(name, slot) for name, slot in self.slots.items() if slot.local]

    # -- requests ---------------------------------------------------------------------

    async def handle(self, raw: Mapping[str, object], progress: Progress) -> Answer:
        """Answer one control request (see herdctl.control); errors become RequestError."""
        request = checked_request(raw)
        cmd = request["cmd"]
        if cmd == "ping":
            return {"ok": True, "pid": os.getpid(), "config": str(self.config.path)}
        if cmd == "status":
            return {"ok": True, "nodes": await self.status()}
        names = self.local_names() if cmd == "shutdown" else self._names(request)
        self._log(f"REQUEST cmd={cmd} names={','.join(names)}")
        if cmd == "start":
            self.start(names)
        elif cmd == "stop":
            await self.stop(names)
        elif cmd == "restart":
            await self.restart(names, rolling=request.get("rolling", False), progress=progress)
        else:
            await self.stop(names)
            self.finished.set()
        return {"ok": True}

    def local_names(self) -> list[str]:
        return [name for name, _ in self._local()]

    def start(self, names: list[str]) -> None:
        """Start each named node by hand; returns once spawned (or failed to spawn)."""
        now = self._clock()
        for name in names:
            slot = self.slots[name]
            slot.policy.request_start(now)
            self._advance(slot, now)

    async def stop(self, names: list[str]) -> None:
        """Stop the named nodes in parallel; returns once every one has exited."""
        results = await asyncio.gather(
            *(self._stop_one(self.slots[n]) for n in names), return_exceptions=True
        )
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        if errors:
            raise RequestError("; ".join(errors))

    async def restart(self, names: list[str], *, rolling: bool, progress: Progress) -> None:
        """Plain: stop them all, start them all. Rolling: one at a time, each caught up."""
        if not rolling:
            await self.stop(names)
            self.start(names)
            return
        for name in names:
            await progress(f"{name}: stopping")
            await self.stop([name])
            self.start([name])
            began = self._clock()
            await progress(f"{name}: started, waiting until it has caught up")
            await self._wait_caught_up(self.slots[name])
            await progress(f"{name}: caught up in {self._clock() - began:.1f}s")

    async def _stop_one(self, slot: Slot) -> None:
        name = slot.spec.name
        before = slot.policy.state
        must_signal = slot.policy.request_stop(self._clock())
        if slot.policy.state is not before:
            self._record(slot)  # STOPPING or STOPPED: a later supervisor must not restart it
        if not must_signal or slot.proc is None:
            if slot.policy.state is not before:
                self._log(f"STATE node={name} {before} -> {slot.policy.state}")
            return
        proc = slot.proc
        self._log(f"STOPPING node={name} pid={proc.pid}")
        proc.signal_group(signal.SIGTERM)
        deadline = self._clock() + self._stop_timeout
        killed = False
        while True:
            self._advance(slot, self._clock())
            if slot.proc is not proc:
                return
            if self._clock() >= deadline:
                if killed:
                    raise RequestError(f"node {name} (pid {proc.pid}) survived SIGKILL")
                self._log(f"KILL node={name} pid={proc.pid} after={self._stop_timeout:g}s")
                proc.signal_group(signal.SIGKILL)
                killed = True
                deadline = self._clock() + self._stop_timeout
            await self._sleep(_POLL)

    async def wait_caught_up(self, name: str, *, ignore: Collection[str] = ()) -> None:
        """Wait until node `name` runs, linked and synced with its running neighbours but
        those in `ignore`; RequestError if it does not start or catch up in time."""
        await self._wait_caught_up(self.slots[name], ignore)

    async def _wait_caught_up(self, slot: Slot, ignore: Collection[str] = ()) -> None:
        name = slot.spec.name
        deadline = self._clock() + self._catchup_timeout
        while True:
            self._advance(slot, self._clock())
            if slot.policy.state in (State.FATAL, State.STOPPED):
                raise RequestError(
                    f"{name} did not start again ({slot.policy.state}): {slot.message or '?'}"
                )
            lagging = await self._lagging(slot)
            if lagging is not None:
                lagging = [nb for nb in lagging if nb not in ignore]
            if lagging == []:
                return
            if self._clock() >= deadline:
                waiting = ", ".join(lagging) if lagging else "its own start"
                raise RequestError(
                    f"{name} did not catch up with its neighbours within "
                    f"{self._catchup_timeout:g}s (waiting for: {waiting})"
                )
            await self._sleep(_POLL * 2)

    async def _lagging(self, slot: Slot) -> list[str] | None:
        """Running neighbours not yet linked and synced with `slot`; None if it is not up."""
        status = self._node_file(slot)
        if slot.policy.state not in SERVING or status is None:
            return None
        if status.get("state") != "running":
            return None
        up = await self._reachable(self._node_files())
        links = status_links(status)
        return [
            nb
            for nb in self.config.neighbours(slot.spec.name)
            if up[nb] and not (link_of(links, nb).get("out") and link_of(links, nb).get("synced"))
        ]

    def _names(self, request: Request) -> list[str]:
        """The request's names, each a local node of the topology (["all"]: all of them)."""
        raw = request.get("names", [])
        if "all" in raw and "all" not in self.slots:
            return self.local_names()
        names: list[str] = []
        for name in raw:
            slot = self.slots.get(name)
            if slot is None:
                known = ", ".join(sorted(self.slots))
                raise RequestError(f"unknown node {name!r} (known: {known})")
            if not slot.local:
                raise RequestError(
                    f"node {name!r} is on {slot.spec.host}, not this machine; "
                    "run herdctl there to manage it"
                )
            if name not in names:
                names.append(name)
        return names

    # -- reload -----------------------------------------------------------------------

    def use_config(self, config: HerdConfig) -> None:
        """Take a reloaded topology (herdctl.reload): a slot for each new node, none for the
        nodes it dropped (stopped first by the caller), in its order. A kept node keeps its
        spec until `respec`, when it is restarted."""
        old = self.slots
        self.config = config
        self.slots = {
            name: old.get(name)
            or Slot(spec, self.launcher.is_local(spec.host), NodePolicy(self._policy))
            for name, spec in config.nodes.items()
        }

    def respec(self, name: str) -> None:
        """Give a (stopped) node the spec of the current topology."""
        slot = self.slots[name]
        slot.spec = self.config.nodes[name]
        slot.local = self.launcher.is_local(slot.spec.host)

    # -- status -----------------------------------------------------------------------

    async def status(self) -> list[NodeRow]:
        """One row per node, in topology order."""
        self.step()
        files = self._node_files()
        up = await self._reachable(files)
        now = self._wall()
        rows = []
        for name, slot in self.slots.items():
            row = node_row(slot, self.config.neighbours(name), up, files[name], now)
            if back_to_normal(row):
                slot.message = None
            rows.append(row)
        return rows

    async def _reachable(self, files: dict[str, NodeStatus | None]) -> dict[str, bool]:
        """Whether each node's port accepts connections: its status file, else psutil for
        ours, a probe for others. `files`: each node's fresh status file (`_node_files`)."""
        names = list(self.slots)
        found = await asyncio.gather(*(self._port_open(self.slots[n], files[n]) for n in names))
        return dict(zip(names, found, strict=True))

    def _node_files(self) -> dict[str, NodeStatus | None]:
        return {name: self._node_file(slot) for name, slot in self.slots.items()}

    async def _port_open(self, slot: Slot, told: NodeStatus | None) -> bool:
        spec = slot.spec
        if not slot.local:
            return await self.launcher.probe(spec.host, spec.port)
        if slot.proc is None or slot.policy.state not in SERVING:
            return False
        # The node's own fresh word first: it says "running" only once it serves its port,
        # and a node whose loop hangs stops refreshing the file. Then psutil (its socket
        # table costs tens of ms a node), as a probe connection would show up in the
        # node's log every time.
        if told is not None and told.get("state") == "running":
            return told.get("port") == spec.listen_port
        listening = slot.proc.listening(spec.listen_port)
        if listening is None:
            return await self.launcher.probe(spec.host, spec.port)
        return listening

    def _node_file(self, slot: Slot) -> NodeStatus | None:
        """The node's status file, if it is fresh and written by the process we watch."""
        if slot.proc is None:
            return None
        status = self.launcher.read_status(slot.spec.name)
        if status is None or status.get("pid") != slot.proc.pid:
            return None
        updated = status.get("updated_at")
        if isinstance(updated, int | float) and self._wall() - updated > _STALE_STATUS:
            return None
        return status
