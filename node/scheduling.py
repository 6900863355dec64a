"""The CPU slice a node asks the kernel for: a short one while it is quiet.

Linux's fair scheduler (EEVDF, 6.6 and later) gives every task a slice, 0.7 ms times a
factor for the number of cores by default, and since 6.12 a task may ask for its own
(`sched_setattr`, the `sched_runtime` of a SCHED_OTHER task, 0.1 to 100 ms, no privilege
needed). A waking task whose slice is shorter than the running one's may preempt it.

A quiet node sleeps until a line comes and then has tens of microseconds of work: with a
short slice it takes a busy core at once instead of waiting out the slice of whatever runs
there, so a lone update crosses each hop of a herd that shares its machine (with clients,
other services, or the other nodes on one laptop) without waiting for a core at every hop.
A busy node is better off with the kernel's own slice: it has work queued anyway, its turns
are long, and preempting its clients and neighbours at every wakeup costs them all more
than it saves (bench/README.md, "A short slice while quiet", has the figures). So each node
counts the lines it handles (client requests and neighbours' records) and asks for
`quiet_slice_us` while it handles fewer than `busy_above` a second, the kernel's own slice
above that, back to the short one after 0.1 s below half of it.

`SlicePolicy` is pure; `SliceGovernor` applies it through a `Kernel`; `LinuxKernel` is the
real one, and where it cannot work (another system, a kernel before 6.12) the node runs on
the kernel's own slice, as it would without this module.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import platform
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

# struct sched_attr, SCHED_ATTR_SIZE_VER1 (<linux/sched/types.h>): size, policy, flags, nice,
# priority, runtime, deadline, period, util_min, util_max.
_SCHED_ATTR = struct.Struct("IIQiIQQQII")
_RUNTIME = 5  # the field that is a fair task's slice
_FAIR_POLICIES = (0, 3)  # SCHED_OTHER, SCHED_BATCH: the fair class, where runtime is a slice
_POLICY_NAMES = {1: "SCHED_FIFO", 2: "SCHED_RR", 5: "SCHED_IDLE", 6: "SCHED_DEADLINE"}
# How often a node looks at its load: `make bench`'s idle figure lasts a tenth of a second,
# and a node polled through it must have left its short slice by then. A node that saw no
# line since its last look doubles the wait up to LOOK_EVERY_IDLE: fifty looks a second cost
# an idle node 0.6 % of a core, three cost nothing measurable.
LOOK_EVERY = 0.02  # seconds
LOOK_EVERY_IDLE = 0.32  # seconds
_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr


class Kernel(Protocol):
    """The calling thread's fair-class slice: read and set, in nanoseconds."""

    def slice_ns(self) -> int:
        """The thread's slice now; 0 where the kernel has no per-task slices."""
        ...

    def set_slice_ns(self, ns: int) -> None:
        """Ask for a slice of `ns`; OSError when the kernel refuses."""
        ...


class LinuxKernel:
    """`sched_getattr`/`sched_setattr` through libc's `syscall`: set on the calling thread,
    read on it or on any thread of the machine (`tid`, as tests and tools look at a node)."""

    def __init__(self) -> None:
        numbers = _SYSCALLS.get(platform.machine()) if sys.platform == "linux" else None
        if numbers is None:
            raise OSError(f"no sched_setattr on {sys.platform}/{platform.machine()}")
        self._set, self._get = numbers
        self._libc = ctypes.CDLL(None, use_errno=True)

    def slice_ns(self, tid: int = 0) -> int:
        return int(self._attributes(tid)[_RUNTIME])

    def set_slice_ns(self, ns: int) -> None:
        # Everything else as it is: the policy, nice, flags such as reset-on-fork.
        fields = list(self._attributes())
        fields[0], fields[_RUNTIME] = _SCHED_ATTR.size, ns
        attr = ctypes.create_string_buffer(_SCHED_ATTR.pack(*fields), _SCHED_ATTR.size)
        if self._libc.syscall(self._set, 0, attr, 0) != 0:
            raise _errno_error("sched_setattr")

    def _attributes(self, tid: int = 0) -> tuple[int, ...]:
        """Thread `tid`'s `sched_attr` (0: the calling thread's); OSError outside the fair
        class, where
        `sched_runtime` is not a slice (a SCHED_DEADLINE task's is its budget) or an operator
        chose a policy (SCHED_IDLE, real time) that a node must not undo."""
        attr = ctypes.create_string_buffer(_SCHED_ATTR.size)
        if self._libc.syscall(self._get, tid, attr, _SCHED_ATTR.size, 0) != 0:
            raise _errno_error("sched_getattr")
        fields: tuple[int, ...] = _SCHED_ATTR.unpack(attr.raw)
        policy = fields[1]
        if policy not in _FAIR_POLICIES:
            name = _POLICY_NAMES.get(policy, f"policy {policy}")
            raise OSError(f"the node runs under {name}: its scheduling is left as it is")
        return fields


def _shown(slice_ns: int) -> str:
    """A slice as the log says it: `300us`, or `kernel` for the kernel's own (0)."""
    return f"{round(slice_ns / 1000)}us" if slice_ns else "kernel"


def _errno_error(call: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}")


class SlicePolicy:
    """Quiet or busy, from how many lines a node handled since the last look. Pure.

    Busy as soon as one look finds more than `busy_above` lines a second; quiet again only
    when every look for `quiet_after` seconds found fewer than half that, so a load with
    hiccups (a neighbour's fsync, a pause between a client's batches) keeps its slice."""

    def __init__(self, busy_above: float, quiet_after: float = 0.1) -> None:
        self.busy_above = busy_above
        self.quiet_below = busy_above / 2  # hysteresis: a load near the bound does not flap
        self.quiet_after = quiet_after
        self.busy = False
        self.rate = 0.0  # lines a second over the last interval
        self._last: tuple[int, float] | None = None
        self._calm_since: float | None = None  # busy, but below quiet_below since then

    def observe(self, lines: int, now: float) -> bool:
        """`lines` handled in all by `now` (seconds, any monotonic clock): whether the node
        just went from quiet to busy or back (`busy` says which)."""
        last, self._last = self._last, (lines, now)
        if last is None or now <= last[1]:
            return False
        self.rate = (lines - last[0]) / (now - last[1])
        if not self.busy:
            self.busy = self.rate > self.busy_above
            return self.busy
        if self.rate >= self.quiet_below:
            self._calm_since = None
            return False
        if self._calm_since is None:
            self._calm_since = last[1]  # calm over the whole interval just looked at
        if now - self._calm_since < self.quiet_after:
            return False
        self.busy, self._calm_since = False, None
        return True


class SliceTally(Protocol):
    """Where the slice in force is shown (`NodeCounters`: the node's metrics)."""

    cpu_slice_ns: int
    cpu_slice_changes: int


class SliceGovernor:
    """Keeps the calling thread's slice short while the node is quiet (see the module's
    docstring); every change is one log event, and counted in `tally`."""

    def __init__(
        self,
        quiet_slice_us: int,
        busy_above: int,
        log: Callable[[str], None],
        kernel: Kernel | None = None,
    ) -> None:
        self.quiet_slice_us = quiet_slice_us
        self.policy = SlicePolicy(busy_above)
        self._log = log
        self._kernel = kernel
        self.active = False  # the kernel took a short slice: watch the load
        self.slice_ns = 0  # the slice asked for and in force; 0: the kernel's own
        self.changes = 0
        self._tally: SliceTally | None = None

    def report_to(self, tally: SliceTally) -> None:
        """Keep `tally` up to date with the slice in force (the node's counters, made after
        the start)."""
        self._tally = tally
        self._report()

    def _report(self) -> None:
        if self._tally is not None:
            self._tally.cpu_slice_ns = self.slice_ns
            self._tally.cpu_slice_changes = self.changes

    def start(self) -> None:
        """Ask for the quiet slice (a node starts quiet), and say what came of it."""
        asked = self.quiet_slice_us
        if asked == 0:
            self._log("SCHED slice=kernel reason=scheduling.quiet_slice_us is 0")
            return
        try:
            kernel = self._kernel = self._kernel if self._kernel is not None else LinuxKernel()
            before = kernel.slice_ns()
            if before == 0:  # before 6.12 a fair task reports no slice: it cannot have one
                self._log("SCHED slice=kernel reason=this kernel has no per-task slices")
                return
            kernel.set_slice_ns(asked * 1000)
            granted = kernel.slice_ns()
        except OSError as e:
            self._log(f"SCHED slice=kernel reason=cannot ask the kernel: {e.strerror or e}")
            return
        self.active = True
        self.slice_ns = granted
        self._report()
        self._log(
            f"SCHED slice_us={round(granted / 1000)} quiet_slice_us={asked}"
            f" busy_above={self.policy.busy_above:g} kernel_slice_us={round(before / 1000)}"
        )

    def observe(self, lines: int, now: float) -> None:
        """`lines` handled in all by `now`: switch slices when the node went busy or quiet."""
        if not self.active or not self.policy.observe(lines, now):
            return
        assert self._kernel is not None
        busy = self.policy.busy
        wanted = 0 if busy else self.quiet_slice_us * 1000
        try:
            self._kernel.set_slice_ns(wanted)
        except OSError as e:  # the same call worked at the start: say so, and stop trying
            self.active = False
            self._log(
                f"SCHED slice={_shown(self.slice_ns)} switching=stopped"
                f" reason=cannot ask the kernel: {e.strerror or e}"
            )
            return
        self.slice_ns = wanted
        self.changes += 1
        self._report()
        self._log(
            f"SCHED slice={_shown(wanted)} {'busy' if busy else 'quiet'}"
            f" lines_per_s={self.policy.rate:.0f}"
        )

    async def run(
        self,
        lines: Callable[[], int],
        interval: float = LOOK_EVERY,
        idle_interval: float = LOOK_EVERY_IDLE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Look at `lines()` every `interval` seconds until cancelled; while no line comes,
        less and less often, up to every `idle_interval`."""
        wait, last = interval, lines()
        while self.active:
            await sleep(wait)
            seen = lines()
            self.observe(seen, time.monotonic())
            wait = interval if seen != last else min(2 * wait, idle_interval)
            last = seen
