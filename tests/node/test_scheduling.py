"""The slice a node asks the kernel for: the quiet/busy policy, the governor against a fake
kernel (refusals, old kernels), the real kernel on this machine, and a real node process
whose main thread switches slices as a load comes and goes."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.scheduling import LinuxKernel, SliceGovernor, SlicePolicy
from tests.support import NodeProcess, free_ports, wait_until, write_topology


class FakeKernel:
    """A thread's slice as the kernel would keep it; `refuse` makes the next set fail."""

    def __init__(self, slice_ns: int = 1_400_000) -> None:
        self.default = self.current = slice_ns
        self.calls: list[int] = []
        self.refuse: OSError | None = None

    def slice_ns(self) -> int:
        return self.current

    def set_slice_ns(self, ns: int) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.calls.append(ns)
        self.current = ns or self.default


def governor(
    kernel: FakeKernel, quiet_us: int = 300, busy_above: int = 1000
) -> tuple[SliceGovernor, list[str]]:
    events: list[str] = []
    return SliceGovernor(quiet_us, busy_above, events.append, kernel), events


# -- the policy ---------------------------------------------------------------------------


def test_policy_goes_busy_above_the_bound_and_quiet_below_half_of_it() -> None:
    policy = SlicePolicy(busy_above=1000, quiet_after=0.1)
    assert not policy.observe(0, 0.0)  # a first look has no rate yet
    assert not policy.observe(900, 1.0) and not policy.busy  # 900/s: still quiet
    assert policy.observe(2000, 2.0) and policy.busy  # 1100/s: busy
    assert not policy.observe(2600, 3.0) and policy.busy  # 600/s: above half, stays busy
    assert policy.observe(3000, 4.0) and not policy.busy  # 400/s: quiet again
    assert policy.rate == 400


@given(
    st.lists(
        st.tuples(st.integers(0, 50_000), st.floats(0.001, 2.0, allow_nan=False)),
        min_size=1,
        max_size=40,
    )
)
def test_policy_follows_the_rate_with_hysteresis(steps: list[tuple[int, float]]) -> None:
    policy = SlicePolicy(busy_above=1000, quiet_after=0.1)
    lines, now, calm = 0, 0.0, 0.0  # calm: seconds busy but below half the bound
    policy.observe(lines, now)
    for added, seconds in steps:
        was = policy.busy
        lines, now = lines + added, now + seconds
        changed = policy.observe(lines, now)
        assert changed == (policy.busy != was)
        if not was:
            assert policy.busy == (policy.rate > 1000)  # busy at the first look above it
        elif policy.rate >= 500:
            assert policy.busy  # between half the bound and above it: stays busy
        else:
            calm += seconds
            assert policy.busy == (calm < 0.1)  # quiet after 0.1 s below half of it
        if not policy.busy or policy.rate >= 500:
            calm = 0.0


def test_policy_stays_busy_through_a_short_pause() -> None:
    policy = SlicePolicy(busy_above=1000, quiet_after=0.1)
    policy.observe(0, 0.0)
    assert policy.observe(100, 0.02) and policy.busy  # 5,000/s
    assert not policy.observe(100, 0.04) and not policy.observe(100, 0.06)  # 40 ms idle
    assert not policy.observe(200, 0.08) and policy.busy  # the load again: the pause forgotten
    assert not policy.observe(200, 0.12) and not policy.observe(200, 0.16)  # 80 ms calm
    assert policy.observe(200, 0.20) and not policy.busy  # 120 ms calm: quiet


def test_policy_ignores_a_look_that_is_not_later() -> None:
    policy = SlicePolicy(busy_above=10)
    policy.observe(0, 5.0)
    assert not policy.observe(1000, 5.0)  # no time passed: no rate, no change
    assert not policy.busy


# -- the governor against a fake kernel ---------------------------------------------------


class Tally:
    cpu_slice_ns = -1
    cpu_slice_changes = -1


def test_governor_starts_quiet_and_switches_with_the_load() -> None:
    kernel = FakeKernel()
    slices, events = governor(kernel)
    slices.start()
    tally = Tally()
    slices.report_to(tally)  # the node's counters come after the start
    assert (tally.cpu_slice_ns, tally.cpu_slice_changes) == (300_000, 0)
    assert slices.active and kernel.current == 300_000
    assert events == ["SCHED slice_us=300 quiet_slice_us=300 busy_above=1000 kernel_slice_us=1400"]
    slices.observe(0, 0.0)
    slices.observe(5000, 1.0)  # 5000 lines/s: busy, the kernel's own slice
    assert kernel.calls[-1] == 0 and kernel.current == 1_400_000
    assert events[-1] == "SCHED slice=kernel busy lines_per_s=5000"
    assert (tally.cpu_slice_ns, tally.cpu_slice_changes) == (0, 1)
    slices.observe(5100, 2.0)  # 100/s: quiet, the short slice again
    assert kernel.current == 300_000
    assert events[-1] == "SCHED slice=300us quiet lines_per_s=100"
    slices.observe(5200, 3.0)  # still quiet: the kernel is not asked again
    assert kernel.calls == [300_000, 0, 300_000] and len(events) == 3
    assert (tally.cpu_slice_ns, tally.cpu_slice_changes) == (300_000, 2)


def test_governor_with_zero_never_asks() -> None:
    kernel = FakeKernel()
    slices, events = governor(kernel, quiet_us=0)
    slices.start()
    slices.observe(0, 0.0)
    slices.observe(10**6, 1.0)
    assert not slices.active and kernel.calls == []
    assert events == ["SCHED slice=kernel reason=scheduling.quiet_slice_us is 0"]


def test_governor_on_a_kernel_without_per_task_slices_stays_off() -> None:
    kernel = FakeKernel(slice_ns=0)  # before Linux 6.12 a fair task reports no slice
    slices, events = governor(kernel)
    slices.start()
    assert not slices.active and kernel.calls == []
    assert events == ["SCHED slice=kernel reason=this kernel has no per-task slices"]


def test_governor_refused_at_the_start_stays_off_and_says_why() -> None:
    kernel = FakeKernel()
    kernel.refuse = OSError(1, "Operation not permitted")
    slices, events = governor(kernel)
    slices.start()
    assert not slices.active
    assert events == ["SCHED slice=kernel reason=cannot ask the kernel: Operation not permitted"]


def test_governor_refused_later_stops_trying_and_says_so_once() -> None:
    kernel = FakeKernel()
    slices, events = governor(kernel)
    slices.start()
    slices.observe(0, 0.0)
    kernel.refuse = OSError(22, "Invalid argument")
    slices.observe(5000, 1.0)
    slices.observe(5000, 2.0)
    slices.observe(10000, 3.0)
    assert not slices.active
    assert events[1:] == [  # it was quiet, on the short slice, when the kernel refused
        "SCHED slice=300us switching=stopped reason=cannot ask the kernel: Invalid argument"
    ]


async def test_governor_looks_less_often_while_no_line_comes() -> None:
    kernel = FakeKernel()
    slices, _ = governor(kernel)
    slices.start()
    counts = iter([0] * 7 + [10, 20, 30] + [30] * 3)  # idle, three lines between looks, idle
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 12:
            slices.active = False  # ends the loop after this look

    await slices.run(lambda: next(counts), interval=0.02, idle_interval=0.16, sleep=sleep)
    assert waits == [0.02, 0.04, 0.08, 0.16, 0.16, 0.16, 0.16, 0.02, 0.02, 0.02, 0.04, 0.08]


# -- the real kernel ------------------------------------------------------------------------


def _kernel_or_skip() -> LinuxKernel:
    try:
        kernel = LinuxKernel()
        if kernel.slice_ns() == 0:
            pytest.skip("this kernel has no per-task slices (Linux 6.12+)")
    except OSError as e:
        pytest.skip(f"no sched_getattr here: {e}")
    return kernel


def _in_a_thread(work: Callable[[], object]) -> object:  # the runner's thread keeps its own
    found: list[object] = []

    def run() -> None:
        try:
            found.append(work())
        except BaseException as e:  # the assertion is made on the test's thread
            found.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return found[0]


def test_the_real_kernel_takes_a_slice_for_the_calling_thread_only() -> None:
    kernel = _kernel_or_skip()
    before = kernel.slice_ns()

    def ask() -> tuple[int, int]:
        kernel.set_slice_ns(250_000)
        asked = kernel.slice_ns()
        kernel.set_slice_ns(0)  # 0: the kernel's own again
        return asked, kernel.slice_ns()

    assert _in_a_thread(ask) == (250_000, before)
    assert kernel.slice_ns() == before  # this thread's was never touched


def test_a_slice_asked_under_sched_batch_keeps_the_policy() -> None:
    kernel = _kernel_or_skip()

    def batch() -> tuple[int, int]:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        kernel.set_slice_ns(350_000)
        return os.sched_getscheduler(0), kernel.slice_ns()

    assert _in_a_thread(batch) == (os.SCHED_BATCH, 350_000)


def test_a_thread_outside_the_fair_class_is_left_as_it_is() -> None:
    kernel = _kernel_or_skip()

    def idle() -> object:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        slices = SliceGovernor(300, 1000, events.append, kernel)
        slices.start()
        return os.sched_getscheduler(0), slices.active

    events: list[str] = []
    assert _in_a_thread(idle) == (os.SCHED_IDLE, False)
    assert events == [
        "SCHED slice=kernel reason=cannot ask the kernel: the node runs under SCHED_IDLE:"
        " its scheduling is left as it is"
    ]


# -- a real node ----------------------------------------------------------------------------


def test_a_node_runs_quiet_on_the_short_slice_and_busy_on_the_kernels(tmp_path: Path) -> None:
    kernel = _kernel_or_skip()
    port = free_ports(1)[0]
    config = write_topology(
        tmp_path,
        ["Solo"],
        [],
        ports={"Solo": port},
        extra={"scheduling": {"quiet_slice_us": 400, "busy_above": 2000}},
    )
    node = NodeProcess("Solo", config, port)
    node.start()
    try:
        node.wait_ready()
        assert node.proc is not None
        pid = node.proc.pid
        wait_until(lambda: "SCHED slice_us=400" in node.log_text(), "the node's SCHED line")
        assert kernel.slice_ns(pid) == 400_000
        kernel_slice = int(node.log_text().split("kernel_slice_us=")[1].split()[0]) * 1000

        # A load of more than 2,000 lines a second, kept up until the node is busy.
        stop = threading.Event()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            threading.Thread(target=_drain, args=(s,), daemon=True).start()
            loader = threading.Thread(target=_load, args=(s, stop), daemon=True)
            loader.start()
            try:
                wait_until(lambda: kernel.slice_ns(pid) == kernel_slice, "the kernel's slice")
                wait_until(lambda: "SCHED slice=kernel busy" in node.log_text(), "busy logged")
            finally:
                stop.set()
                loader.join(10)
        wait_until(lambda: kernel.slice_ns(pid) == 400_000, "the short slice again")
        wait_until(lambda: "SCHED slice=400us quiet" in node.log_text(), "quiet logged")
    finally:
        node.stop()


def _load(s: socket.socket, stop: threading.Event) -> None:
    lines = b"IAMAT load +34.068930-118.445127 1700000000.0\n" * 200
    while not stop.wait(0.005):
        s.sendall(lines)


def _drain(s: socket.socket) -> None:
    try:
        while s.recv(1 << 16):
            pass
    except OSError:
        pass
