"""Connection slots: client caps, the neighbours' probation pool, the fd limit; rate-limited
events. Pure, no sockets."""

from __future__ import annotations

import resource

from node.admission import FD_HEADROOM, Admission, client_cap, raise_fd_limit, reserve_for
from node.logbook import RateLimited


def test_clients_are_admitted_up_to_both_caps_then_go_on_probation() -> None:
    slots: Admission[str] = Admission(per_host=2, total=3, reserve=4)
    assert slots.admit("a1", "10.0.0.1") == ("client", None)
    assert slots.admit("a2", "10.0.0.1") == ("client", None)
    assert slots.admit("a3", "10.0.0.1") == ("probation", None)  # over per-address
    assert slots.admit("b1", "10.0.0.2") == ("client", None)
    assert slots.admit("c1", "10.0.0.3") == ("probation", None)  # over the total
    assert (slots.clients, list(slots.probation)) == (3, ["a3", "c1"])
    slots.release("a1")
    assert slots.admit("c2", "10.0.0.3") == ("client", None)  # a freed slot is reused


def test_a_full_probation_pool_evicts_its_oldest_member() -> None:
    slots: Admission[int] = Admission(per_host=1, total=1, reserve=3)
    slots.admit(0, "h")
    for i in range(1, 4):
        assert slots.admit(i, "h") == ("probation", None)
    assert slots.admit(4, "h") == ("probation", 1)
    assert slots.admit(5, "h") == ("probation", 2)
    assert list(slots.probation) == [3, 4, 5] and 1 not in slots.probation


def test_an_authenticated_neighbour_counts_against_no_client_cap() -> None:
    slots: Admission[str] = Admission(per_host=1, total=1, reserve=2)
    slots.admit("client", "127.0.0.1")
    assert slots.admit("neighbour", "127.0.0.1") == ("probation", None)
    slots.release("neighbour")  # what the hand-over to the peer side does
    assert not slots.probation
    slots.admit("link-in-as-client", "127.0.0.2")  # total cap reached: probation
    slots.release("client")
    assert slots.clients == 0 and slots.admit("next", "127.0.0.1") == ("client", None)
    slots.release("neighbour")  # a second release (the link's connection_lost) changes nothing
    assert slots.clients == 1 and list(slots.probation) == ["link-in-as-client"]
    # A neighbour that came in under the caps also leaves the counts when it authenticates.
    roomy: Admission[str] = Admission(per_host=5, total=5, reserve=2)
    roomy.admit("n", "h")
    roomy.release("n")
    assert roomy.clients == 0 and roomy.by_host["h"] == 0


def test_release_is_idempotent() -> None:
    slots: Admission[str] = Admission(per_host=2, total=2, reserve=2)
    slots.admit("a", "h")
    slots.release("a")
    slots.release("a")
    assert slots.clients == 0 and "h" not in slots.by_host


def test_the_cap_stays_below_the_fd_limit() -> None:
    assert client_cap(16000, 20000, 8) == 16000
    assert client_cap(16000, 1024, 8) == 1024 - FD_HEADROOM - 8
    assert client_cap(16000, 10, 8) == 1  # never zero: one client is still served
    assert reserve_for(1) == 4 and reserve_for(3) == 6


def test_the_soft_fd_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
        got = raise_fd_limit()
        assert got == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if hard != resource.RLIM_INFINITY:
            assert got == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limited_events_say_how_many_they_held_back() -> None:
    lines: list[str] = []
    clock = Clock()
    limited = RateLimited(lines.append, burst=2, period=1.0, clock=clock)
    for i in range(500):
        limited.event("CONN_REFUSED", f"CONN_REFUSED conn={i}")
    assert lines == ["CONN_REFUSED conn=0", "CONN_REFUSED conn=1"]
    clock.now += 1.0
    limited.event("CONN_REFUSED", "CONN_REFUSED conn=900")
    assert lines[2:] == ["CONN_REFUSED_SUPPRESSED count=498 seconds=1", "CONN_REFUSED conn=900"]
    limited.event("LOOP_ERROR", "LOOP_ERROR a")  # another kind has its own budget
    assert lines[-1] == "LOOP_ERROR a"


def test_rate_limited_flush_reports_a_flood_that_stopped() -> None:
    lines: list[str] = []
    clock = Clock()
    limited = RateLimited(lines.append, burst=1, clock=clock)
    for _ in range(10):
        limited.event("LOOP_ERROR", "LOOP_ERROR accept")
    limited.report_ended()  # the period has not ended: nothing yet
    assert lines == ["LOOP_ERROR accept"]
    clock.now += 5
    limited.report_ended()
    assert lines == ["LOOP_ERROR accept", "LOOP_ERROR_SUPPRESSED count=9 seconds=1"]
    limited.report_ended()
    assert len(lines) == 2
