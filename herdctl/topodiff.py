"""What changed between two topologies, and what `herdctl reload` must do about it. Pure.

`compare(old, new)` lists the nodes added and removed, the nodes whose own spec changed
(host, port, bind, bind_port), the links added and removed and the settings that changed
(the supervisor's own, its dashboard, restart no node). `plan(old, new)` turns that into
work: stop the removed nodes, start the added ones and restart, one at a time, every other
node that would read something different at start. A node reads its whole topology only
when it starts, so it is restarted when its own spec changed, when its set of neighbours
changed, when a neighbour moved (new host or port: where it dials) or when a herd-wide
setting changed (every node reads those).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from node.config import HerdConfig, NodeSpec

Link = tuple[str, str]
# Settings every node reads at start; a change restarts the whole herd.
HERD_SETTINGS = (
    "places",
    "limits",
    "log_dir",
    "data_dir",
    "secret_file",
    "log_rotation",
    "journal",
    "scheduling",
)
# Settings the supervisor itself lives in: a running herd cannot move them.
FIXED_SETTINGS = ("run_dir",)
# Settings of the supervisor alone (its dashboard): a change restarts no node.
SUPERVISOR_SETTINGS = ("dashboard",)
_SPEC_FIELDS = tuple(f.name for f in fields(NodeSpec) if f.name != "name")
_DEFAULTS_TO = {"bind": "host", "bind_port": "port"}  # node.config fills them so


@dataclass(frozen=True, slots=True)
class NodeChange:
    """One node whose own spec changed; `what` says how, e.g. ("port 12003 -> 12013",)."""

    name: str
    what: tuple[str, ...]

    @property
    def moved(self) -> bool:
        """Whether its neighbours dial it somewhere else now (host or port changed)."""
        return any(item.split(" ", 1)[0] in ("host", "port") for item in self.what)


@dataclass(frozen=True, slots=True)
class TopologyDiff:
    """The difference between the topology a herd runs and a new one."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[NodeChange, ...] = ()
    links_added: tuple[Link, ...] = ()
    links_removed: tuple[Link, ...] = ()
    settings: tuple[str, ...] = ()  # top-level settings that changed, e.g. ("limits",)

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.changed
            or self.links_added
            or self.links_removed
            or self.settings
        )

    def lines(self) -> list[str]:
        """One human line per change, in a stable order."""
        out = [f"node {name} added" for name in self.added]
        out += [f"node {name} removed" for name in self.removed]
        out += [f"node {c.name}: {', '.join(c.what)}" for c in self.changed]
        out += [f"link [{a}, {b}] added" for a, b in self.links_added]
        out += [f"link [{a}, {b}] removed" for a, b in self.links_removed]
        out += [f"{name} changed" for name in self.settings]
        return out


@dataclass(frozen=True, slots=True)
class Plan:
    """The work of a reload: stop, then start, then restart (rolling) with a reason each."""

    stop: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    restart: tuple[tuple[str, str], ...] = ()  # (name, why), in the new topology's order

    @property
    def empty(self) -> bool:
        return not (self.stop or self.start or self.restart)


def compare(old: HerdConfig, new: HerdConfig) -> TopologyDiff:
    """The difference from `old` (what runs) to `new` (the file as it is now)."""
    changed = tuple(
        NodeChange(name, _spec_changes(old.nodes[name], spec))
        for name, spec in new.nodes.items()
        if name in old.nodes and old.nodes[name] != spec
    )
    old_links, new_links = _link_set(old.links), _link_set(new.links)
    settings = tuple(
        name
        for name in (*HERD_SETTINGS, *FIXED_SETTINGS, *SUPERVISOR_SETTINGS)
        if getattr(old, name) != getattr(new, name)
    )
    return TopologyDiff(
        added=tuple(name for name in new.nodes if name not in old.nodes),
        removed=tuple(name for name in old.nodes if name not in new.nodes),
        changed=changed,
        links_added=tuple(link for link in new.links if frozenset(link) not in old_links),
        links_removed=tuple(link for link in old.links if frozenset(link) not in new_links),
        settings=settings,
    )


def plan(old: HerdConfig, new: HerdConfig) -> Plan:
    """What to stop, start and restart to take a herd running `old` to `new`."""
    diff = compare(old, new)
    own = {change.name: change for change in diff.changed}
    moved = {change.name for change in diff.changed if change.moved}
    herd_wide = [name for name in diff.settings if name in HERD_SETTINGS]
    restart: list[tuple[str, str]] = []
    for name in new.nodes:
        if name in diff.added:
            continue
        reasons: list[str] = []
        if name in own:
            reasons.append(", ".join(own[name].what))
        before, after = set(old.neighbours(name)), set(new.neighbours(name))
        links = [f"+{n}" for n in sorted(after - before)]
        links += [f"-{n}" for n in sorted(before - after)]
        if links:
            reasons.append(f"links {' '.join(links)}")
        dialled = sorted(after & before & moved)
        if dialled:
            reasons.append(f"neighbour {', '.join(dialled)} moved")
        if herd_wide:
            reasons.append(f"{', '.join(herd_wide)} changed")
        if reasons:
            restart.append((name, "; ".join(reasons)))
    return Plan(stop=diff.removed, start=diff.added, restart=tuple(restart))


def fixed_changes(diff: TopologyDiff) -> tuple[str, ...]:
    """The settings in `diff` a running herd cannot take (reload refuses them)."""
    return tuple(name for name in diff.settings if name in FIXED_SETTINGS)


def _spec_changes(old: NodeSpec, new: NodeSpec) -> tuple[str, ...]:
    """Each field that changed; `bind` and `bind_port` only when set apart from what they
    default to (host and port), so a new port reads "port 12003 -> 12013" alone."""
    return tuple(
        f"{name} {getattr(old, name)} -> {getattr(new, name)}"
        for name in _SPEC_FIELDS
        if getattr(old, name) != getattr(new, name) and not _follows(old, new, name)
    )


def _follows(old: NodeSpec, new: NodeSpec, name: str) -> bool:
    """Whether field `name` only followed the field it defaults to, in both specs."""
    source = _DEFAULTS_TO.get(name)
    return source is not None and all(
        getattr(spec, name) == getattr(spec, source) for spec in (old, new)
    )


def _link_set(links: tuple[Link, ...]) -> set[frozenset[str]]:
    return {frozenset(link) for link in links}
