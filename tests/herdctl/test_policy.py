"""The restart policy, driven by scripted histories on a fake clock: no processes, no sleeps."""

from __future__ import annotations

import pytest

from herdctl.policy import EXIT_CONFIG, Action, NodePolicy, PolicyConfig, State
from node.__main__ import EXIT_CONFIG as NODE_EXIT_CONFIG


class Script:
    """A policy plus a clock the test moves by hand; records what `tick` asked for."""

    def __init__(self, **config: float) -> None:
        self.now = 0.0
        self.policy = NodePolicy(PolicyConfig(**config))  # type: ignore[arg-type]
        self.spawns: list[float] = []

    def at(self, now: float) -> Script:
        """Move the clock to `now` and obey `tick` (spawning at once when asked)."""
        self.now = now
        if self.policy.tick(now) is Action.SPAWN:
            self.spawns.append(now)
            self.policy.on_spawned(now)
        return self

    def start(self) -> Script:
        self.policy.request_start(self.now)
        return self.at(self.now)

    def die(self, code: int | None = 1) -> Script:
        self.policy.on_exit(self.now, code)
        return self

    def state(self) -> State:
        return self.policy.state


def test_a_new_policy_is_stopped_and_never_spawns_by_itself() -> None:
    s = Script()
    assert s.state() is State.STOPPED
    assert s.at(100.0).spawns == []


def test_start_spawns_at_once_and_is_running_after_startsecs() -> None:
    s = Script().start()
    assert (s.spawns, s.state()) == ([0.0], State.STARTING)
    assert s.at(0.99).state() is State.STARTING
    assert s.at(1.0).state() is State.RUNNING
    assert s.policy.restarts == 0


def test_failed_starts_back_off_doubling_then_go_fatal() -> None:
    s = Script().start()
    s.at(0.2).die(2)
    assert s.state() is State.BACKOFF
    assert s.policy.next_spawn_at == pytest.approx(0.7)
    s.at(0.69)
    assert s.spawns == [0.0]
    s.at(0.7).at(0.8).die(2)  # respawned at 0.7, dead again
    assert s.policy.next_spawn_at == pytest.approx(1.8)
    s.at(1.8).at(1.9).die(2)
    assert s.policy.next_spawn_at == pytest.approx(3.9)
    s.at(3.9).at(4.0).die(2)  # the third retry failed too
    assert s.state() is State.FATAL
    assert s.policy.next_spawn_at is None
    assert s.spawns == [0.0, 0.7, 1.8, 3.9]
    assert s.policy.restarts == 3
    assert s.policy.exit_code == 2
    assert s.at(1000.0).spawns == [0.0, 0.7, 1.8, 3.9]  # FATAL stays


def test_a_node_that_cannot_start_as_configured_is_fatal_at_once() -> None:
    assert EXIT_CONFIG == NODE_EXIT_CONFIG == 78
    s = Script().start()
    s.at(0.3).die(EXIT_CONFIG)  # e.g. its port is taken: a retry would fail the same way
    assert (s.state(), s.policy.next_spawn_at, s.policy.exit_code) == (State.FATAL, None, 78)
    assert s.at(1000.0).spawns == [0.0]
    assert s.policy.restarts == 0
    s.start()
    assert (s.state(), s.spawns) == (State.STARTING, [0.0, 1000.0])


def test_a_slow_start_that_fails_as_configured_is_fatal_too() -> None:
    s = Script().start()
    s.at(1.5)  # past startsecs on a loaded machine: counted RUNNING before it failed
    assert s.state() is State.RUNNING
    s.die(EXIT_CONFIG)
    assert (s.state(), s.at(100.0).spawns) == (State.FATAL, [0.0])


def test_fatal_exits_are_configurable() -> None:
    s = Script(startretries=5)
    s.policy = NodePolicy(PolicyConfig(fatal_exits=frozenset()))
    s.start().at(0.1).die(EXIT_CONFIG)
    assert s.state() is State.BACKOFF


def test_start_by_hand_leaves_fatal_with_fresh_counters() -> None:
    s = Script(startretries=0).start()
    s.at(0.1).die()
    assert s.state() is State.FATAL
    s.at(5.0).start()
    assert (s.state(), s.spawns) == (State.STARTING, [0.0, 5.0])
    assert s.policy.failed_starts == 0
    assert s.policy.restarts == 0  # a start by hand is not a restart


def test_a_crash_while_running_respawns_with_capped_backoff() -> None:
    s = Script(backoff_max=2.0).start()
    delays: list[float] = []
    for _ in range(5):
        s.at(s.now + 1.5)  # RUNNING: alive past startsecs, short of stable_after
        assert s.state() is State.RUNNING
        s.die(-9)
        assert s.state() is State.EXITED
        assert s.policy.next_spawn_at is not None
        delays.append(round(s.policy.next_spawn_at - s.now, 3))
        s.at(s.policy.next_spawn_at)
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert s.policy.restarts == 5


def test_the_crash_streak_resets_after_a_stable_run() -> None:
    s = Script().start()
    s.at(1.5).die().at(2.0)  # respawn after 0.5
    s.at(3.5).die()
    assert s.policy.next_spawn_at == pytest.approx(4.5)  # second crash in a row: 1.0
    s.at(4.5).at(20.0).die()  # ran 15.5 s: stable
    assert s.policy.next_spawn_at == pytest.approx(20.5)


def test_a_node_that_keeps_dying_right_after_restart_goes_fatal() -> None:
    s = Script(startretries=2).start()
    s.at(2.0).die(-9).at(2.5)  # crash while RUNNING, respawned
    s.at(2.6).die(1).at(3.1)
    s.at(3.2).die(1).at(4.2)
    s.at(4.3).die(1)
    assert s.state() is State.FATAL


def test_stop_is_stopping_then_stopped_and_never_respawned() -> None:
    s = Script().start().at(2.0)
    assert s.policy.request_stop(2.0) is True
    assert s.state() is State.STOPPING
    s.at(2.1).die(0)
    assert s.state() is State.STOPPED
    assert s.at(500.0).spawns == [0.0]
    assert s.policy.exit_code == 0


def test_stop_while_waiting_to_respawn_cancels_the_respawn() -> None:
    s = Script().start().at(2.0).die(-9)
    assert s.state() is State.EXITED
    assert s.policy.request_stop(2.1) is False  # nothing to signal
    assert s.state() is State.STOPPED
    assert s.at(10.0).spawns == [0.0]


def test_start_while_stopping_starts_again_once_stopped() -> None:
    s = Script().start().at(2.0)
    s.policy.request_stop(2.0)
    assert s.policy.request_start(2.0) is True
    s.at(2.5).die(0)
    assert s.state() is State.STOPPED
    s.at(2.5)
    assert (s.state(), s.spawns) == (State.STARTING, [0.0, 2.5])
    assert s.policy.restarts == 0


def test_start_is_a_no_op_while_alive_and_stop_is_a_no_op_when_stopped() -> None:
    s = Script().start()
    assert s.policy.request_start(0.5) is False
    assert s.policy.request_stop(0.6) is True
    s.die(0)
    assert s.policy.request_stop(0.7) is False
    assert s.state() is State.STOPPED


def test_start_by_hand_during_backoff_spawns_now() -> None:
    s = Script().start()
    s.at(0.1).die()
    s.at(0.2).start()
    assert s.spawns == [0.0, 0.2]
    assert s.policy.restarts == 0


def test_adopted_process_is_running_if_old_enough() -> None:
    old = Script()
    old.policy.on_adopted(100.0, alive_for=60.0)
    assert old.state() is State.RUNNING
    young = Script()
    young.policy.on_adopted(100.0, alive_for=0.2)
    assert young.state() is State.STARTING
    assert young.at(100.8).state() is State.RUNNING
    young.die(None)
    assert young.state() is State.EXITED
    assert young.spawns == []


@pytest.mark.parametrize("was", [State.RUNNING, State.STARTING, State.EXITED, State.BACKOFF])
def test_a_node_found_dead_by_a_new_supervisor_is_respawned_at_once(was: State) -> None:
    s = Script()
    s.policy.restarts = 4  # as the supervisor before noted
    s.policy.on_found_dead(50.0, was)
    assert s.state() is State.EXITED
    assert s.at(50.0).spawns == [50.0]
    assert (s.state(), s.policy.restarts) == (State.STARTING, 5)  # a restart, counted


def test_a_new_supervisor_keeps_fatal_and_finishes_a_stop() -> None:
    fatal = Script()
    fatal.policy.on_found_dead(50.0, State.FATAL)
    assert (fatal.state(), fatal.at(500.0).spawns) == (State.FATAL, [])
    stopping = Script()
    stopping.policy.on_found_dead(50.0, State.STOPPING)
    assert (stopping.state(), stopping.at(500.0).spawns) == (State.STOPPED, [])


def test_stop_of_a_fatal_node_makes_it_stopped() -> None:
    s = Script(startretries=0).start()
    s.at(0.1).die()
    assert s.state() is State.FATAL
    assert s.policy.request_stop(0.2) is False
    assert s.state() is State.STOPPED
