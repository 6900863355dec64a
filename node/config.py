"""topology.yaml -> typed, validated, frozen configuration objects.

Pure: no asyncio, no sockets. Every user mistake becomes one ConfigError line naming the file,
the field path and the offending value; the checks of single values are in `node.fields`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from node import fields

PROVIDERS = ("auto", "offline", "google", "google-legacy")
DEFAULT_HOST = "127.0.0.1"
CONFIG_ENV = "HERD_CONFIG"
_TOP_KEYS = (
    "nodes",
    "links",
    "places",
    "limits",
    "log_dir",
    "log_rotation",
    "journal",
    "scheduling",
    "data_dir",
    "run_dir",
    "secret_file",
    "dashboard",
)
_NODE_KEYS = ("host", "port", "bind", "bind_port", "metrics_port")
_DASHBOARD_KEYS = ("host", "port")
_PLACES_KEYS = ("provider", "api_key_env", "endpoint", "timeout")


class ConfigError(Exception):
    """A user mistake in the topology file.

    str() is one clear line naming the file, field and value."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One server of the herd: where peers and clients reach it, and where it listens."""

    name: str
    host: str
    port: int
    bind: str
    bind_port: int = 0  # where to listen when it differs from `port` (behind a proxy); 0: port
    metrics_port: int = 0  # Prometheus /metrics on `bind`; 0: none

    @property
    def listen_port(self) -> int:
        return self.bind_port or self.port


@dataclass(frozen=True, slots=True)
class PlacesConfig:
    """Where WHATSAT answers come from."""

    provider: str = "auto"
    api_key_env: str = "GOOGLE_PLACES_API_KEY"
    endpoint: str | None = None
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-node resource limits; seconds for the float fields."""

    max_line_bytes: int = 65536
    line_deadline: float = 30.0
    idle_timeout: float = 600.0  # 0 disables
    max_connections: int = 10000  # per client address
    max_connections_total: int = 16000  # clients in all; kept below the fd limit at start
    peer_backoff_initial: float = 0.1
    peer_backoff_max: float = 5.0
    peer_heartbeat: float = 1.0  # seconds between PINGs each way on a peer link
    peer_timeout: float = 10.0  # a peer link silent this long is dropped (and retried)


_LIMIT_ZERO_OK = frozenset({"idle_timeout"})


FSYNC_POLICIES = ("always", "everysec", "no")  # journal.fsync, like Redis's appendfsync


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """How the journal under data_dir is made durable and kept small."""

    fsync: str = "everysec"  # always | everysec | no, like Redis's appendfsync
    compact_factor: int = 4  # compact when appended entries exceed this many times the state
    compact_min_records: int = 10_000  # ... and at least this many


# The slice a node may ask for (node.scheduling): the kernel clamps one to 0.1-100 ms.
SLICE_MIN_US = 100
SLICE_MAX_US = 100_000


@dataclass(frozen=True, slots=True)
class SchedulingConfig:
    """What each node asks of the kernel's scheduler (node.scheduling)."""

    quiet_slice_us: int = 300  # the CPU slice a quiet node asks for; 0: the kernel's own
    busy_above: int = 10_000  # lines a second (requests and records): a busy node's is the kernel's


@dataclass(frozen=True, slots=True)
class LogRotation:
    """When a node's log file is rotated, and how many old files are kept."""

    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """Where the supervisor serves its dashboard (port 0: any free port, said by `up`)."""

    host: str = DEFAULT_HOST
    port: int = 0


@dataclass(frozen=True, slots=True)
class HerdConfig:
    """The whole validated topology file; paths are absolute."""

    path: Path
    nodes: dict[str, NodeSpec] = field(hash=False)  # in file order
    links: tuple[tuple[str, str], ...]
    places: PlacesConfig
    limits: Limits
    log_dir: Path
    data_dir: Path
    run_dir: Path
    secret_file: Path
    log_rotation: LogRotation = LogRotation()
    journal: JournalConfig = JournalConfig()
    scheduling: SchedulingConfig = SchedulingConfig()
    dashboard: DashboardConfig | None = None  # None: the supervisor serves none

    def node(self, name: str) -> NodeSpec:
        """The node called `name`, or ConfigError listing the known names."""
        try:
            return self.nodes[name]
        except KeyError:
            known = fields.known(self.nodes)
            raise ConfigError(
                f"{self.path.name}: unknown node {fields.shown(name)} (known: {known})"
            ) from None

    def neighbours(self, name: str) -> tuple[str, ...]:
        """Sorted names of the nodes linked to `name`."""
        self.node(name)
        return tuple(sorted({b if a == name else a for a, b in self.links if name in (a, b)}))


def default_config_path() -> Path:
    """$HERD_CONFIG if set, else ./topology.yaml."""
    return Path(os.environ.get(CONFIG_ENV) or "topology.yaml")


def load_config(path: str | os.PathLike[str]) -> HerdConfig:
    """Read and validate the topology file at `path`."""
    return parse_config(read_config_text(path), Path(path))


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The text of the topology file at `path`, or ConfigError saying why it cannot be read."""
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read topology file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read topology file {file}: not UTF-8 text (bad byte at offset {exc.start})"
        ) from None


def parse_config(text: str, path: Path) -> HerdConfig:
    """Validate YAML `text` as if read from `path` (relative paths resolve next to it)."""
    path = Path(os.path.abspath(path))
    try:
        return _build(fields.load_yaml(text), path)
    except fields.Invalid as exc:
        where = f"{exc.where}: " if exc.where else ""
        raise ConfigError(f"{path.name}: {where}{exc.message}") from None


# --- building the objects, field by field -------------------------------------------------


def _build(data: object, path: Path) -> HerdConfig:
    if data is None:
        fields.fail("", "file is empty; expected a mapping with a 'nodes' key")
    top = fields.mapping(data, "", _TOP_KEYS, "a mapping with a 'nodes' key at the top level")
    if "nodes" not in top:
        fields.fail("", "missing required key 'nodes'")
    nodes = _parse_nodes(top["nodes"])
    base = path.parent
    run_dir = fields.path(top.get("run_dir", "run"), "run_dir", base)
    secret = top.get("secret_file")
    secret_file = (
        run_dir / "herd.secret" if secret is None else fields.path(secret, "secret_file", base)
    )
    return HerdConfig(
        path=path,
        nodes=nodes,
        links=_parse_links(top.get("links"), nodes),
        places=_parse_places(top.get("places")),
        limits=_parse_limits(top.get("limits")),
        log_dir=fields.path(top.get("log_dir", "logs"), "log_dir", base),
        data_dir=fields.path(top.get("data_dir", "data"), "data_dir", base),
        run_dir=run_dir,
        secret_file=secret_file,
        log_rotation=_parse_log_rotation(top.get("log_rotation")),
        journal=_parse_journal(top.get("journal")),
        scheduling=_parse_scheduling(top.get("scheduling")),
        dashboard=_parse_dashboard(top.get("dashboard"), nodes),
    )


def _parse_nodes(raw: object) -> dict[str, NodeSpec]:
    if not isinstance(raw, dict):
        fields.fail("nodes", f"must be a mapping of name -> {{port: ...}}, got {fields.shown(raw)}")
    if not raw:
        fields.fail("nodes", "must list at least one node")
    nodes: dict[str, NodeSpec] = {}
    owners: dict[tuple[str, int], str] = {}
    for name, value in raw.items():
        if not isinstance(name, str):
            fields.fail(
                "nodes", f"node name {fields.shown(name)} is not a string (quote it in the file)"
            )
        if not name or any(ch.isspace() for ch in name):
            fields.fail("nodes", f"node name {name!r} must be non-empty with no whitespace")
        where = f"nodes.{name}"
        spec = fields.mapping(value, where, _NODE_KEYS, "a mapping like {port: 12000}")
        if "port" not in spec:
            fields.fail(where, "missing required key 'port'")
        port = fields.integer(spec["port"], f"{where}.port", 1, 65535)
        host = fields.text(spec.get("host", DEFAULT_HOST), f"{where}.host")
        bind = fields.text(spec.get("bind", host), f"{where}.bind")
        bind_port = fields.integer(spec.get("bind_port", port), f"{where}.bind_port", 1, 65535)
        if (other := owners.get((host, port))) is not None:
            fields.fail(where, f"address {host}:{port} is already used by {other}")
        owners[(host, port)] = f"node {name!r}"
        metrics_port = 0
        if "metrics_port" in spec:
            metrics_port = fields.integer(spec["metrics_port"], f"{where}.metrics_port", 1, 65535)
            if (other := owners.get((host, metrics_port))) is not None:
                fields.fail(
                    f"{where}.metrics_port",
                    f"address {host}:{metrics_port} is already used by {other}",
                )
            owners[(host, metrics_port)] = f"the metrics of node {name!r}"
        nodes[name] = NodeSpec(
            name=name,
            host=host,
            port=port,
            bind=bind,
            bind_port=bind_port,
            metrics_port=metrics_port,
        )
    return nodes


def _parse_dashboard(raw: object, nodes: dict[str, NodeSpec]) -> DashboardConfig | None:
    if raw is None:
        return None
    spec = fields.mapping(raw, "dashboard", _DASHBOARD_KEYS, "a mapping like {port: 12110}")
    host = fields.text(spec.get("host", DEFAULT_HOST), "dashboard.host")
    port = fields.integer(spec.get("port", 0), "dashboard.port", 0, 65535)
    for node in nodes.values():
        if port and node.host == host and port in (node.port, node.metrics_port):
            what = "port" if port == node.port else "metrics_port"
            fields.fail("dashboard.port", f"{port} is node {node.name!r}'s {what} on {host}")
    return DashboardConfig(host=host, port=port)


def _parse_links(raw: object, nodes: dict[str, NodeSpec]) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        fields.fail("links", f"must be a list of [A, B] pairs, got {fields.shown(raw)}")
    links: list[tuple[str, str]] = []
    seen: dict[frozenset[str], int] = {}
    for i, item in enumerate(raw):
        where = f"links[{i}]"
        pair = isinstance(item, list) and len(item) == 2
        if not (pair and all(isinstance(end, str) for end in item)):
            fields.fail(
                where, f"must be a list of two node names like [A, B], got {fields.shown(item)}"
            )
        a, b = item
        for end in (a, b):
            if end not in nodes:
                fields.fail(where, f"unknown node {end!r} (known: {fields.known(nodes)})")
        if a == b:
            fields.fail(where, f"node {a!r} is linked to itself")
        key = frozenset((a, b))
        if key in seen:
            fields.fail(where, f"duplicate link [{a}, {b}] (already in links[{seen[key]}])")
        seen[key] = i
        links.append((a, b))
    return tuple(links)


def _parse_places(raw: object) -> PlacesConfig:
    spec = fields.mapping(raw, "places", _PLACES_KEYS, "a mapping")
    default = PlacesConfig()
    provider = spec.get("provider", default.provider)
    if provider not in PROVIDERS:
        fields.fail(
            "places.provider",
            f"unknown provider {fields.shown(provider)} (allowed: {', '.join(PROVIDERS)})",
        )
    endpoint = spec.get("endpoint")
    if endpoint is not None:
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            fields.fail(
                "places.endpoint", f"{fields.shown(endpoint)} must be an http:// or https:// URL"
            )
    return PlacesConfig(
        provider=provider,
        api_key_env=fields.text(spec.get("api_key_env", default.api_key_env), "places.api_key_env"),
        endpoint=endpoint,
        timeout=fields.seconds(spec.get("timeout", default.timeout), "places.timeout"),
    )


def _parse_journal(raw: object) -> JournalConfig:
    keys = ("fsync", "compact_factor", "compact_min_records")
    spec = fields.mapping(raw, "journal", keys, "a mapping")
    default = JournalConfig()
    fsync = spec.get("fsync", default.fsync)
    if fsync not in FSYNC_POLICIES:
        fields.fail(
            "journal.fsync", f"{fields.shown(fsync)} is not one of {', '.join(FSYNC_POLICIES)}"
        )
    return JournalConfig(
        fsync=fsync,
        compact_factor=fields.integer(
            spec.get("compact_factor", default.compact_factor), "journal.compact_factor", 2
        ),
        compact_min_records=fields.integer(
            spec.get("compact_min_records", default.compact_min_records),
            "journal.compact_min_records",
            1,
        ),
    )


def _parse_scheduling(raw: object) -> SchedulingConfig:
    spec = fields.mapping(raw, "scheduling", ("quiet_slice_us", "busy_above"), "a mapping")
    default = SchedulingConfig()
    where = "scheduling.quiet_slice_us"
    slice_us = fields.integer(spec.get("quiet_slice_us", default.quiet_slice_us), where, 0)
    if slice_us and not SLICE_MIN_US <= slice_us <= SLICE_MAX_US:
        fields.fail(
            where, f"{slice_us} must be 0 (the kernel's own) or {SLICE_MIN_US}..{SLICE_MAX_US}"
        )
    busy_above = fields.integer(
        spec.get("busy_above", default.busy_above), "scheduling.busy_above", 1
    )
    return SchedulingConfig(quiet_slice_us=slice_us, busy_above=busy_above)


def _parse_log_rotation(raw: object) -> LogRotation:
    spec = fields.mapping(raw, "log_rotation", ("max_bytes", "backups"), "a mapping")
    default = LogRotation()
    return LogRotation(
        max_bytes=fields.integer(
            spec.get("max_bytes", default.max_bytes), "log_rotation.max_bytes", 1024
        ),
        backups=fields.integer(spec.get("backups", default.backups), "log_rotation.backups", 1),
    )


def _parse_limits(raw: object) -> Limits:
    names = tuple(f.name for f in dataclasses.fields(Limits))
    spec = fields.mapping(raw, "limits", names, "a mapping")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Limits):
        if f.name not in spec:
            continue
        where = f"limits.{f.name}"
        if isinstance(f.default, int):
            values[f.name] = fields.integer(spec[f.name], where, 1)
        else:
            values[f.name] = fields.seconds(spec[f.name], where, zero_ok=f.name in _LIMIT_ZERO_OK)
    limits = Limits(**values)
    if limits.peer_timeout <= 2 * limits.peer_heartbeat:
        fields.fail(
            "limits.peer_timeout",
            f"{limits.peer_timeout} must be more than twice peer_heartbeat"
            f" ({limits.peer_heartbeat})",
        )
    if limits.peer_backoff_max < limits.peer_backoff_initial:
        fields.fail(
            "limits.peer_backoff_max",
            f"{limits.peer_backoff_max} must be at least peer_backoff_initial "
            f"({limits.peer_backoff_initial})",
        )
    return limits
