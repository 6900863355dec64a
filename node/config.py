"""topology.yaml -> typed, validated, frozen configuration objects.

Pure: no asyncio, no sockets. Every user mistake becomes one ConfigError line naming the file,
the field path and the offending value.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import yaml

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
    "data_dir",
    "run_dir",
    "secret_file",
)
_NODE_KEYS = ("host", "port", "bind", "bind_port")
_PLACES_KEYS = ("provider", "api_key_env", "endpoint", "timeout")
_MERGE_TAG = "tag:yaml.org,2002:merge"


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


@dataclass(frozen=True, slots=True)
class LogRotation:
    """When a node's log file is rotated, and how many old files are kept."""

    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5


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

    def node(self, name: str) -> NodeSpec:
        """The node called `name`, or ConfigError listing the known names."""
        try:
            return self.nodes[name]
        except KeyError:
            raise ConfigError(
                f"{self.path.name}: unknown node {_show(name)} (known: {_known(self.nodes)})"
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
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read topology file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read topology file {file}: not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    return parse_config(text, file)


def parse_config(text: str, path: Path) -> HerdConfig:
    """Validate YAML `text` as if read from `path` (relative paths resolve next to it)."""
    path = Path(os.path.abspath(path))
    try:
        return _build(_load_yaml(text), path)
    except _Invalid as exc:
        where = f"{exc.where}: " if exc.where else ""
        raise ConfigError(f"{path.name}: {where}{exc.message}") from None


# --- internals -----------------------------------------------------------------------------


class _Invalid(Exception):
    """A validation failure at a field path; parse_config adds the file name."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(where, message)
        self.where = where
        self.message = message


def _fail(where: str, message: str) -> NoReturn:
    raise _Invalid(where, message)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_show(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _load_yaml(text: str) -> object:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(exc.problem or exc.context or exc).split())
        _fail(where, f"invalid YAML: {problem}")
    except yaml.YAMLError as exc:
        _fail("", f"invalid YAML: {' '.join(str(exc).split())}")


def _show(value: object) -> str:
    """A value as the user would recognise it, kept short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _known(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def _mapping(value: object, where: str, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    """`value` as a mapping with only `allowed` keys; null counts as empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(where, f"must be {what}, got {_show(value)}")
    for key in value:
        if key not in allowed:
            hint = ""
            if isinstance(key, str) and (close := difflib.get_close_matches(key, allowed, 1)):
                hint = f"; did you mean {close[0]!r}?"
            _fail(where, f"unknown key {_show(key)} (allowed: {', '.join(allowed)}){hint}")
    return value


def _text(value: object, where: str, *, spaces_ok: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(where, f"must be a non-empty string, got {_show(value)}")
    if not spaces_ok and any(ch.isspace() for ch in value):
        _fail(where, f"{_show(value)} must not contain whitespace")
    return value


def _int(value: object, where: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, f"must be an integer, got {_show(value)}")
    if high is not None and not low <= value <= high:
        _fail(where, f"{value} is out of range {low}..{high}")
    if value < low:
        _fail(where, f"{value} must be {low} or more")
    return value


def _seconds(value: object, where: str, *, zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(where, f"must be a number of seconds, got {_show(value)}")
    if not math.isfinite(value):
        _fail(where, f"{_show(value)} is not a finite number")
    if value < 0 or (value == 0 and not zero_ok):
        _fail(where, f"{value} must be {'0 or more' if zero_ok else 'greater than 0'}")
    return float(value)


def _path(value: object, where: str, base: Path) -> Path:
    return Path(os.path.normpath(base / Path(_text(value, where, spaces_ok=True)).expanduser()))


def _build(data: object, path: Path) -> HerdConfig:
    if data is None:
        _fail("", "file is empty; expected a mapping with a 'nodes' key")
    top = _mapping(data, "", _TOP_KEYS, "a mapping with a 'nodes' key at the top level")
    if "nodes" not in top:
        _fail("", "missing required key 'nodes'")
    nodes = _parse_nodes(top["nodes"])
    base = path.parent
    run_dir = _path(top.get("run_dir", "run"), "run_dir", base)
    secret = top.get("secret_file")
    secret_file = run_dir / "herd.secret" if secret is None else _path(secret, "secret_file", base)
    return HerdConfig(
        path=path,
        nodes=nodes,
        links=_parse_links(top.get("links"), nodes),
        places=_parse_places(top.get("places")),
        limits=_parse_limits(top.get("limits")),
        log_dir=_path(top.get("log_dir", "logs"), "log_dir", base),
        data_dir=_path(top.get("data_dir", "data"), "data_dir", base),
        run_dir=run_dir,
        secret_file=secret_file,
        log_rotation=_parse_log_rotation(top.get("log_rotation")),
        journal=_parse_journal(top.get("journal")),
    )


def _parse_nodes(raw: object) -> dict[str, NodeSpec]:
    if not isinstance(raw, dict):
        _fail("nodes", f"must be a mapping of name -> {{port: ...}}, got {_show(raw)}")
    if not raw:
        _fail("nodes", "must list at least one node")
    nodes: dict[str, NodeSpec] = {}
    owners: dict[tuple[str, int], str] = {}
    for name, value in raw.items():
        if not isinstance(name, str):
            _fail("nodes", f"node name {_show(name)} is not a string (quote it in the file)")
        if not name or any(ch.isspace() for ch in name):
            _fail("nodes", f"node name {name!r} must be non-empty with no whitespace")
        where = f"nodes.{name}"
        spec = _mapping(value, where, _NODE_KEYS, "a mapping like {port: 12000}")
        if "port" not in spec:
            _fail(where, "missing required key 'port'")
        port = _int(spec["port"], f"{where}.port", 1, 65535)
        host = _text(spec.get("host", DEFAULT_HOST), f"{where}.host")
        bind = _text(spec.get("bind", host), f"{where}.bind")
        bind_port = _int(spec.get("bind_port", port), f"{where}.bind_port", 1, 65535)
        if (other := owners.get((host, port))) is not None:
            _fail(where, f"address {host}:{port} is already used by node {other!r}")
        owners[(host, port)] = name
        nodes[name] = NodeSpec(name=name, host=host, port=port, bind=bind, bind_port=bind_port)
    return nodes


def _parse_links(raw: object, nodes: dict[str, NodeSpec]) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        _fail("links", f"must be a list of [A, B] pairs, got {_show(raw)}")
    links: list[tuple[str, str]] = []
    seen: dict[frozenset[str], int] = {}
    for i, item in enumerate(raw):
        where = f"links[{i}]"
        pair = isinstance(item, list) and len(item) == 2
        if not (pair and all(isinstance(end, str) for end in item)):
            _fail(where, f"must be a list of two node names like [A, B], got {_show(item)}")
        a, b = item
        for end in (a, b):
            if end not in nodes:
                _fail(where, f"unknown node {end!r} (known: {_known(nodes)})")
        if a == b:
            _fail(where, f"node {a!r} is linked to itself")
        key = frozenset((a, b))
        if key in seen:
            _fail(where, f"duplicate link [{a}, {b}] (already in links[{seen[key]}])")
        seen[key] = i
        links.append((a, b))
    return tuple(links)


def _parse_places(raw: object) -> PlacesConfig:
    spec = _mapping(raw, "places", _PLACES_KEYS, "a mapping")
    default = PlacesConfig()
    provider = spec.get("provider", default.provider)
    if provider not in PROVIDERS:
        _fail(
            "places.provider",
            f"unknown provider {_show(provider)} (allowed: {', '.join(PROVIDERS)})",
        )
    endpoint = spec.get("endpoint")
    if endpoint is not None:
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            _fail("places.endpoint", f"{_show(endpoint)} must be an http:// or https:// URL")
    return PlacesConfig(
        provider=provider,
        api_key_env=_text(spec.get("api_key_env", default.api_key_env), "places.api_key_env"),
        endpoint=endpoint,
        timeout=_seconds(spec.get("timeout", default.timeout), "places.timeout"),
    )


def _parse_journal(raw: object) -> JournalConfig:
    keys = ("fsync", "compact_factor", "compact_min_records")
    spec = _mapping(raw, "journal", keys, "a mapping")
    default = JournalConfig()
    fsync = spec.get("fsync", default.fsync)
    if fsync not in FSYNC_POLICIES:
        _fail("journal.fsync", f"{_show(fsync)} is not one of {', '.join(FSYNC_POLICIES)}")
    return JournalConfig(
        fsync=fsync,
        compact_factor=_int(
            spec.get("compact_factor", default.compact_factor), "journal.compact_factor", 2
        ),
        compact_min_records=_int(
            spec.get("compact_min_records", default.compact_min_records),
            "journal.compact_min_records",
            1,
        ),
    )


def _parse_log_rotation(raw: object) -> LogRotation:
    spec = _mapping(raw, "log_rotation", ("max_bytes", "backups"), "a mapping")
    default = LogRotation()
    return LogRotation(
        max_bytes=_int(spec.get("max_bytes", default.max_bytes), "log_rotation.max_bytes", 1024),
        backups=_int(spec.get("backups", default.backups), "log_rotation.backups", 1),
    )


def _parse_limits(raw: object) -> Limits:
    names = tuple(f.name for f in dataclasses.fields(Limits))
    spec = _mapping(raw, "limits", names, "a mapping")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Limits):
        if f.name not in spec:
            continue
        where = f"limits.{f.name}"
        if isinstance(f.default, int):
            values[f.name] = _int(spec[f.name], where, 1)
        else:
            values[f.name] = _seconds(spec[f.name], where, zero_ok=f.name in _LIMIT_ZERO_OK)
    limits = Limits(**values)
    if limits.peer_timeout <= 2 * limits.peer_heartbeat:
        _fail(
            "limits.peer_timeout",
            f"{limits.peer_timeout} must be more than twice peer_heartbeat"
            f" ({limits.peer_heartbeat})",
        )
    if limits.peer_backoff_max < limits.peer_backoff_initial:
        _fail(
            "limits.peer_backoff_max",
            f"{limits.peer_backoff_max} must be at least peer_backoff_initial "
            f"({limits.peer_backoff_initial})",
        )
    return limits
