"""`herdctl reload` in the supervisor: take a new topology, touching only what changed.

`Reloader` stands in front of the manager on the control channel: it answers `reload`,
adds the owned topology's text to `ping` (herdctl.topology) and passes the rest on.

A reload validates the text first (an invalid one changes nothing), refuses what a running
herd cannot take (a new run_dir), then follows herdctl.topodiff's plan: stop the removed
nodes, take the new topology (the supervisor's copy and the file nodes start from) and the
supervisor's own settings (its dashboard: started, moved or stopped), start the added
nodes, restart the changed ones one at a time, each caught up with its neighbours before
the next (neighbours still to be restarted do not know it yet, so they are not waited
for), and last see the added nodes caught up. A node that fails is reported and the
rest goes on. A node stopped by hand stays stopped and takes its new spec when started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping

from herdctl.control import Progress
from herdctl.manager import Manager
from herdctl.messages import RELOAD, Answer, RequestError, checked_reload
from herdctl.policy import State
from herdctl.topodiff import compare, fixed_changes, plan
from herdctl.topology import Owned
from node.config import ConfigError, HerdConfig, parse_config


class Reloader:
    """Owns the running topology; answers `reload` and `ping`, passes the rest on."""

    def __init__(
        self,
        manager: Manager,
        owned: Owned,
        *,
        save: Callable[[Owned], None],
        log: Callable[[str], None] = lambda text: None,
        clock: Callable[[], float] = time.monotonic,
        retune: Callable[[HerdConfig], Awaitable[str | None]] | None = None,
    ) -> None:
        self.manager = manager
        self.owned = owned
        self._save = save  # writes the copy nodes start from, and points the launcher at it
        # The supervisor's own settings (its dashboard): a line for the progress, or None.
        self._retune = retune
        self._log = log
        self._clock = clock
        self._lock = asyncio.Lock()

    async def handle(self, raw: Mapping[str, object], progress: Progress) -> Answer:
        """The control handler: `reload` here, the rest by the manager."""
        if raw.get("cmd") == RELOAD:
            async with self._lock:
                return await self.reload(checked_reload(raw), progress)
        answer = await self.manager.handle(raw, progress)
        if raw.get("cmd") == "ping":
            answer["topology"] = self.owned.text
        return answer

    async def reload(self, text: str, progress: Progress) -> Answer:
        """Take topology `text` (the same file, edited); see the module's docstring."""
        old = self.owned.config
        try:
            new = parse_config(text, old.path)
        except ConfigError as e:
            raise RequestError(f"{e}; nothing changed") from None
        diff = compare(old, new)
        fixed = fixed_changes(diff)
        if fixed:
            raise RequestError(
                f"{old.path.name}: {', '.join(fixed)} cannot change while the herd runs "
                "(the supervisor lives there): herdctl down, then up; nothing changed"
            )
        work = plan(old, new)
        self._log(
            f"RELOAD changes={len(diff.lines())} stop={','.join(work.stop)} "
            f"start={','.join(work.start)} restart={','.join(n for n, _ in work.restart)}"
        )
        for line in diff.lines():
            await progress(f"change: {line}")
        manager = self.manager
        for name in work.stop:
            if manager.slots[name].local:
                await manager.stop([name])
                await progress(f"{name}: stopped (removed from the topology)")
        owned = Owned(text, new)
        self._save(owned)  # first: nodes started from here on read the new topology
        self.owned = owned
        manager.use_config(new)
        if self._retune is not None:
            note = await self._retune(new)
            if note is not None:
                await progress(note)
        started = [name for name in work.start if manager.slots[name].local]
        spawned_at = self._clock()
        manager.start(started)
        for name in work.start:
            note = "starting" if name in started else "on another host: start it there"
            await progress(f"{name}: added, {note}")
        failed: list[str] = []
        touched = list(started)
        pending = [name for name, _ in work.restart]
        for name, why in work.restart:
            pending.remove(name)
            came_back = await self._restart(name, why, pending, progress)
            if came_back is None:
                continue
            touched.append(name)
            if not came_back:
                failed.append(name)
        for name in started:
            if not await self._caught_up(name, "started", spawned_at, (), progress):
                failed.append(name)
        return {"ok": True, "changes": diff.lines(), "failed": failed, "touched": touched}

    async def _restart(
        self, name: str, why: str, pending: list[str], progress: Progress
    ) -> bool | None:
        """Restart one node on its new spec: whether it came back; None if not started here."""
        manager = self.manager
        slot = manager.slots[name]
        was_local, stopped = slot.local, slot.policy.state is State.STOPPED
        began = self._clock()
        if was_local:
            await manager.stop([name])
        manager.respec(name)
        if not slot.local:
            where = "moved to another host" if was_local else "on another host"
            await progress(f"{name}: {where} ({why}): restart it there")
            return None
        if stopped:
            await progress(f"{name}: stopped by hand, left stopped ({why})")
            return None
        await progress(f"{name}: restarting ({why})")
        manager.start([name])
        return await self._caught_up(name, "restarted", began, pending, progress)

    async def _caught_up(
        self, name: str, verb: str, began: float, pending: Collection[str], progress: Progress
    ) -> bool:
        try:
            await self.manager.wait_caught_up(name, ignore=pending)
        except RequestError as e:
            await progress(f"{name}: FAILED: {e}")
            return False
        await progress(f"{name}: {verb}, caught up in {self._clock() - began:.1f}s")
        return True
