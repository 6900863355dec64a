"""The restart policy of one node: supervisord's states, as a pure state machine.

No I/O and no clock: every method takes `now` (seconds on any monotonic clock) and the caller
acts on what comes back. The rules:

- A spawned node is STARTING until it has stayed alive `startsecs`, then RUNNING.
- Death while STARTING is a failed start: BACKOFF, respawned after `backoff_initial` doubling
  per consecutive failed start; after `startretries` retries have also failed, FATAL, which
  stays until started by hand.
- Death with a status in `fatal_exits` (the node's EXIT_CONFIG, 78: it cannot start as
  configured, e.g. its port is taken): FATAL at once, whatever the state, since a retry
  cannot help until something is changed.
- Death while RUNNING: EXITED, respawned after `backoff_initial` doubling per consecutive crash
  up to `backoff_max`; the crash streak resets once a run has lasted `stable_after`.
- `request_stop`: STOPPING until the process is gone, then STOPPED (at once when there is no
  process, FATAL included), never respawned.
- Taking over from an earlier supervisor (`on_found_dead`): a node it meant to run whose
  process is gone died unwatched: EXITED, respawned at once. FATAL stays FATAL.
- `request_start` by hand (from STOPPED, EXITED, BACKOFF or FATAL) resets both streaks.
- `restarts` counts every respawn the policy made on its own, never a start by hand.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# node.__main__.EXIT_CONFIG (sysexits' EX_CONFIG): "cannot start as configured here".
EXIT_CONFIG = 78


class State(enum.StrEnum):
    """supervisord's process states."""

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    EXITED = "EXITED"
    FATAL = "FATAL"


ALIVE = frozenset({State.STARTING, State.RUNNING, State.STOPPING})  # a process exists
_SPAWNABLE = frozenset({State.STOPPED, State.EXITED, State.BACKOFF, State.FATAL})


class Action(enum.Enum):
    """What `tick` asks the caller to do."""

    NONE = "none"
    SPAWN = "spawn"


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The policy's parameters, in seconds except `startretries`."""

    startsecs: float = 1.0
    startretries: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    stable_after: float = 10.0
    fatal_exits: frozenset[int] = frozenset({EXIT_CONFIG})

    def delay(self, streak: int) -> float:
        """The wait before respawn number `streak` (1-based) of a streak."""
        return float(min(self.backoff_initial * 2 ** max(streak - 1, 0), self.backoff_max))


class NodePolicy:
    """One node's state and counters; the supervisor feeds it events and obeys `tick`."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.state = State.STOPPED
        self.restarts = 0
        self.next_spawn_at: float | None = None
        self.spawned_at: float | None = None
        self.exit_code: int | None = None
        self.failed_starts = 0  # consecutive deaths during STARTING
        self.crashes = 0  # consecutive deaths during RUNNING, reset by a stable run
        self._by_hand = False  # the pending spawn was asked for by a person
        self._start_after_stop = False

    def request_start(self, now: float) -> bool:
        """A start by hand; False when the node is already starting or running."""
        if self.state in (State.STARTING, State.RUNNING):
            return False
        if self.state is State.STOPPING:
            self._start_after_stop = True
        else:
            self._schedule_by_hand(now)
        return True

    def request_stop(self, now: float) -> bool:
        """A stop by hand; True when a live process must now be signalled."""
        self._start_after_stop = False
        if self.state in ALIVE:
            self.state = State.STOPPING
            return True
        if self.state in (State.BACKOFF, State.EXITED, State.FATAL):
            self.state = State.STOPPED
        self.next_spawn_at = None
        return False

    def tick(self, now: float) -> Action:
        """Advance timers; SPAWN means spawn now and then call `on_spawned` or `on_exit`."""
        if (
            self.state is State.STARTING
            and self.spawned_at is not None
            and now - self.spawned_at >= self.config.startsecs
        ):
            self.state = State.RUNNING
            self.failed_starts = 0
        due = self.next_spawn_at is not None and now >= self.next_spawn_at
        if due and self.state in _SPAWNABLE:
            self.next_spawn_at = None
            return Action.SPAWN
        return Action.NONE

    def on_spawned(self, now: float) -> None:
        """A process was started for the SPAWN that `tick` asked for."""
        if not self._by_hand:
            self.restarts += 1
        self._by_hand = False
        self.state = State.STARTING
        self.spawned_at = now
        self.next_spawn_at = None

    def on_adopted(self, now: float, alive_for: float) -> None:
        """A process left by an earlier supervisor, alive for `alive_for` seconds, is ours."""
        self.spawned_at = now - alive_for
        self.state = State.STARTING
        self.tick(now)

    def on_found_dead(self, now: float, was: State) -> None:
        """Taking over from an earlier supervisor, which noted the node as `was`, we find no
        process: a stop in progress is done, FATAL stays FATAL, and anything else died while
        no supervisor watched it, so it is EXITED and respawned at once."""
        self.spawned_at = None
        if was is State.STOPPING:
            self.state = State.STOPPED
        elif was is State.FATAL:
            self.state = State.FATAL
        else:
            self.state = State.EXITED
            self.crashes += 1
            self.next_spawn_at = now

    def on_exit(self, now: float, code: int | None) -> None:
        """The process is gone; `code` is its exit status (negative: signal) if known."""
        self.exit_code = code
        if self.state is State.STOPPING:
            self.state = State.STOPPED
            if self._start_after_stop:
                self._start_after_stop = False
                self._schedule_by_hand(now)
        elif code in self.config.fatal_exits:
            self.state = State.FATAL
            self.next_spawn_at = None
        elif self.state is State.STARTING:
            self.failed_starts += 1
            if self.failed_starts > self.config.startretries:
                self.state = State.FATAL
                self.next_spawn_at = None
            else:
                self.state = State.BACKOFF
                self.next_spawn_at = now + self.config.delay(self.failed_starts)
        elif self.state is State.RUNNING:
            ran = now - (self.spawned_at if self.spawned_at is not None else now)
            if ran >= self.config.stable_after:
                self.crashes = 0
            self.crashes += 1
            self.state = State.EXITED
            self.next_spawn_at = now + self.config.delay(self.crashes)

    def _schedule_by_hand(self, now: float) -> None:
        self.failed_starts = 0
        self.crashes = 0
        self._by_hand = True
        self.next_spawn_at = now
