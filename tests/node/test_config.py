"""Tests for node.config: the shipped topology loads, and every user mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from node.config import (
    ConfigError,
    DashboardConfig,
    HerdConfig,
    Limits,
    default_config_path,
    load_config,
    parse_config,
)

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"

NODES = """\
nodes:
  A: {port: 12000}
  B: {port: 12001}
  C: {port: 12002}
"""


def write(tmp_path: Path, text: str, name: str = "topology.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> HerdConfig:
    return load_config(write(tmp_path, text))


# --- the shipped topology -------------------------------------------------------------------


def test_repo_topology_loads() -> None:
    cfg = load_config(REPO_TOPOLOGY)
    assert list(cfg.nodes) == ["Goloman", "Hands", "Holiday", "Welsh", "Wilkes"]
    assert len(cfg.links) == 6
    assert cfg.neighbours("Welsh") == ("Holiday",)
    assert cfg.neighbours("Goloman") == ("Hands", "Holiday", "Wilkes")
    assert cfg.node("Hands").port == 12001
    assert cfg.node("Hands").host == "127.0.0.1"
    assert cfg.node("Hands").bind == "127.0.0.1"
    assert cfg.places.provider == "auto"
    assert cfg.places.api_key_env == "GOOGLE_PLACES_API_KEY"
    assert cfg.places.endpoint is None
    assert cfg.limits == Limits()
    assert [spec.metrics_port for spec in cfg.nodes.values()] == list(range(12100, 12105))
    assert cfg.dashboard == DashboardConfig(host="127.0.0.1", port=12110)


def test_repo_topology_paths_are_absolute_under_its_folder() -> None:
    cfg = load_config(REPO_TOPOLOGY)
    folder = REPO_TOPOLOGY.parent
    assert cfg.path == REPO_TOPOLOGY
    for path, name in ((cfg.log_dir, "logs"), (cfg.data_dir, "data"), (cfg.run_dir, "run")):
        assert path.is_absolute()
        assert path == folder / name
    assert cfg.secret_file == folder / "run" / "herd.secret"


# --- good files -----------------------------------------------------------------------------


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "nodes: {Solo: {port: 9000}}\n")
    assert cfg.links == ()
    assert cfg.neighbours("Solo") == ()
    assert cfg.places.timeout == 5.0
    assert cfg.log_dir == tmp_path / "logs"
    assert cfg.secret_file == tmp_path / "run" / "herd.secret"


def test_all_fields_are_read(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        NODES.replace("A: {port: 12000}", "A: {host: a.example, port: 12000, bind: 0.0.0.0}")
        + "links: [[A, B], [C, B]]\n"
        "places: {provider: google, api_key_env: MY_KEY, endpoint: 'http://127.0.0.1:8080',"
        " timeout: 2}\n"
        "limits: {max_line_bytes: 100, line_deadline: 1, idle_timeout: 0, max_connections: 5,"
        " peer_backoff_initial: 0.5, peer_backoff_max: 0.5}\n"
        "log_dir: /var/log/herd\n"
        "run_dir: ../run\n"
        "secret_file: keys/s\n",
    )
    assert cfg.node("A") == cfg.nodes["A"]
    assert (cfg.node("A").host, cfg.node("A").bind) == ("a.example", "0.0.0.0")
    assert cfg.links == (("A", "B"), ("C", "B"))
    assert cfg.neighbours("B") == ("A", "C")
    assert cfg.places.provider == "google"
    assert cfg.places.endpoint == "http://127.0.0.1:8080"
    assert cfg.places.timeout == 2.0 and isinstance(cfg.places.timeout, float)
    assert cfg.limits == Limits(
        max_line_bytes=100,
        line_deadline=1.0,
        idle_timeout=0.0,
        max_connections=5,
        peer_backoff_initial=0.5,
        peer_backoff_max=0.5,
    )
    assert cfg.log_dir == Path("/var/log/herd")
    assert cfg.run_dir == tmp_path.parent / "run"
    assert cfg.secret_file == tmp_path / "keys" / "s"


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, NODES)
    with pytest.raises(AttributeError):
        cfg.log_dir = Path("/x")  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.node("A").port = 1  # type: ignore[misc]
    assert hash(cfg) == hash(load_text(tmp_path, NODES))


def test_parse_config_resolves_relative_to_given_path(tmp_path: Path) -> None:
    cfg = parse_config(NODES + "data_dir: d\n", tmp_path / "sub" / "herd.yaml")
    assert cfg.path == tmp_path / "sub" / "herd.yaml"
    assert cfg.data_dir == tmp_path / "sub" / "d"


def test_unknown_node_lookup(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, NODES)
    for call in (cfg.node, cfg.neighbours):
        with pytest.raises(ConfigError, match=r"unknown node 'Z' \(known: A, B, C\)"):
            call("Z")


# --- every mistake: one line naming the field and the value ---------------------------------

BAD = [
    ("top level list", "- a\n- b\n", ["top level", "['a', 'b']"]),
    ("empty file", "", ["file is empty"]),
    ("unknown top key", NODES + "nodez: 1\n", ["unknown key 'nodez'", "allowed: nodes,"]),
    ("bool top key", NODES + "on: 1\n", ["unknown key true"]),
    ("missing nodes", "links: []\n", ["missing required key 'nodes'"]),
    ("empty nodes", "nodes: {}\n", ["nodes:", "at least one node"]),
    ("null nodes", "nodes:\n", ["nodes:", "got null"]),
    ("nodes list", "nodes: [A, B]\n", ["nodes:", "['A', 'B']"]),
    ("int node name", "nodes: {12: {port: 1}}\n", ["nodes:", "node name 12"]),
    ("bool node name", "nodes: {yes: {port: 1}}\n", ["nodes:", "node name true"]),
    ("spaced node name", "nodes: {'A B': {port: 1}}\n", ["nodes:", "'A B'"]),
    ("empty node name", "nodes: {'': {port: 1}}\n", ["nodes:", "''"]),
    ("node not mapping", "nodes: {A: 12000}\n", ["nodes.A:", "got 12000"]),
    ("unknown node key", "nodes: {A: {port: 1, hots: x}}\n", ["nodes.A:", "'hots'", "'host'"]),
    ("missing port", "nodes: {A: {host: h}}\n", ["nodes.A:", "'port'"]),
    ("port string", "nodes: {A: {port: '80'}}\n", ["nodes.A.port:", "'80'"]),
    ("port bool", "nodes: {A: {port: true}}\n", ["nodes.A.port:", "got true"]),
    ("port float", "nodes: {A: {port: 80.5}}\n", ["nodes.A.port:", "80.5"]),
    ("port zero", "nodes: {A: {port: 0}}\n", ["nodes.A.port: 0 is out of range 1..65535"]),
    ("port high", "nodes: {A: {port: 70000}}\n", ["nodes.A.port: 70000 is out of range 1..65535"]),
    ("host empty", "nodes: {A: {port: 1, host: ''}}\n", ["nodes.A.host:", "''"]),
    ("host int", "nodes: {A: {port: 1, host: 5}}\n", ["nodes.A.host:", "got 5"]),
    ("bind null", "nodes: {A: {port: 1, bind: null}}\n", ["nodes.A.bind:", "got null"]),
    (
        "duplicate address",
        "nodes: {A: {port: 1}, B: {host: 127.0.0.1, port: 1}}\n",
        ["nodes.B:", "127.0.0.1:1", "'A'"],
    ),
    ("duplicate node name", "nodes:\n  A: {port: 1}\n  A: {port: 2}\n", ["line 3", "'A'"]),
    ("links not list", NODES + "links: {A: B}\n", ["links:", "{'A': 'B'}"]),
    ("link of three", NODES + "links: [[A, B, C]]\n", ["links[0]:", "['A', 'B', 'C']"]),
    ("link of one", NODES + "links: [[A]]\n", ["links[0]:", "['A']"]),
    ("link string", NODES + "links: [A-B]\n", ["links[0]:", "'A-B'"]),
    ("link int", NODES + "links: [[A, 5]]\n", ["links[0]:", "['A', 5]"]),
    (
        "link unknown node",
        NODES + "links: [[A, B], [B, C], [Foo, A]]\n",
        ["links[2]: unknown node 'Foo' (known: A, B, C)"],
    ),
    ("self link", NODES + "links: [[A, A]]\n", ["links[0]:", "'A'", "itself"]),
    ("duplicate link", NODES + "links: [[A, B], [A, B]]\n", ["links[1]:", "duplicate", "[A, B]"]),
    ("reversed link", NODES + "links: [[A, B], [B, A]]\n", ["links[1]:", "[B, A]", "links[0]"]),
    ("places not mapping", NODES + "places: google\n", ["places:", "'google'"]),
    ("places unknown key", NODES + "places: {providr: x}\n", ["places:", "'providr'"]),
    (
        "unknown provider",
        NODES + "places: {provider: bing}\n",
        ["places.provider:", "'bing'", "auto, offline, google, google-legacy"],
    ),
    ("endpoint scheme", NODES + "places: {endpoint: 'ftp://x'}\n", ["places.endpoint:", "ftp"]),
    (
        "endpoint no host",
        NODES + "places: {endpoint: 'http://'}\n",
        ["places.endpoint:", "'http://'"],
    ),
    ("endpoint int", NODES + "places: {endpoint: 8080}\n", ["places.endpoint:", "8080"]),
    ("api_key_env empty", NODES + "places: {api_key_env: ''}\n", ["places.api_key_env:", "''"]),
    ("timeout string", NODES + "places: {timeout: 5s}\n", ["places.timeout:", "'5s'"]),
    ("timeout zero", NODES + "places: {timeout: 0}\n", ["places.timeout:", "0"]),
    ("timeout inf", NODES + "places: {timeout: .inf}\n", ["places.timeout:", "inf"]),
    ("limits not mapping", NODES + "limits: [1]\n", ["limits:", "[1]"]),
    ("limits unknown key", NODES + "limits: {max_lines: 1}\n", ["limits:", "'max_lines'"]),
    ("limit float", NODES + "limits: {max_line_bytes: 1.5}\n", ["limits.max_line_bytes:", "1.5"]),
    ("limit bool", NODES + "limits: {max_connections: on}\n", ["limits.max_connections:", "true"]),
    ("limit zero", NODES + "limits: {max_connections: 0}\n", ["limits.max_connections:", "0"]),
    ("limit negative", NODES + "limits: {line_deadline: -1}\n", ["limits.line_deadline:", "-1"]),
    ("idle negative", NODES + "limits: {idle_timeout: -0.5}\n", ["limits.idle_timeout:", "-0.5"]),
    ("limit string", NODES + "limits: {idle_timeout: nev}\n", ["limits.idle_timeout:", "'nev'"]),
    (
        "backoff order",
        NODES + "limits: {peer_backoff_initial: 2, peer_backoff_max: 1}\n",
        ["limits.peer_backoff_max:", "1.0", "2.0"],
    ),
    ("log_dir int", NODES + "log_dir: 5\n", ["log_dir:", "got 5"]),
    ("data_dir list", NODES + "data_dir: [a]\n", ["data_dir:", "['a']"]),
    ("run_dir empty", NODES + "run_dir: ''\n", ["run_dir:", "''"]),
    ("secret_file bool", NODES + "secret_file: no\n", ["secret_file:", "false"]),
    (
        "metrics port string",
        "nodes: {A: {port: 1, metrics_port: on}}\n",
        ["nodes.A.metrics_port:", "got true"],
    ),
    (
        "metrics port zero",
        "nodes: {A: {port: 1, metrics_port: 0}}\n",
        ["nodes.A.metrics_port: 0 is out of range 1..65535"],
    ),
    (
        "metrics port is a node's port",
        "nodes: {A: {port: 1}, B: {port: 2, metrics_port: 1}}\n",
        ["nodes.B.metrics_port:", "127.0.0.1:1", "node 'A'"],
    ),
    (
        "port is a node's metrics port",
        "nodes: {A: {port: 1, metrics_port: 2}, B: {port: 2}}\n",
        ["nodes.B:", "127.0.0.1:2", "the metrics of node 'A'"],
    ),
    ("dashboard not mapping", NODES + "dashboard: 8080\n", ["dashboard:", "8080"]),
    ("dashboard unknown key", NODES + "dashboard: {bind: x}\n", ["dashboard:", "'bind'"]),
    ("dashboard port high", NODES + "dashboard: {port: 70000}\n", ["dashboard.port:", "70000"]),
    (
        "dashboard on a node's port",
        NODES + "dashboard: {port: 12001}\n",
        ["dashboard.port:", "12001 is node 'B'"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_file_is_one_clear_line(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text, name="herd-topology.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith("herd-topology.yaml: ")
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"cannot read topology file {path}: No such file or directory"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read topology file"):
        load_config(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_bytes(b"nodes: {\xff: {port: 1}}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("nodes:\n  A: {port: 1\n  B: {port: 2}\n", "line 3"),
        ("nodes:\n  A: {port: 1}\n bad: x\n", "line 3, column 2"),
        ("nodes:\n\tA: {port: 1}\n", "line 2, column 1"),
    ],
)
def test_bad_yaml_names_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert message.startswith(f"topology.yaml: {where}")
    assert "invalid YAML" in message
    assert "\n" not in message


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "nodes:\n  A: &b {host: 10.0.0.1, port: 1}\n  B: {<<: *b, port: 2}\n",
    )
    assert cfg.node("B").host == "10.0.0.1"
    assert cfg.node("B").port == 2


# --- default_config_path --------------------------------------------------------------------


def test_default_config_path_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HERD_CONFIG", str(tmp_path / "elsewhere.yaml"))
    assert default_config_path() == tmp_path / "elsewhere.yaml"


def test_default_config_path_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERD_CONFIG", raising=False)
    assert default_config_path() == Path("topology.yaml")


def test_log_rotation_defaults_and_overrides(tmp_path):
    text = "nodes: {A: {port: 1}}\nlog_rotation: {max_bytes: 4096, backups: 2}\n"
    config = parse_config(text, tmp_path / "topology.yaml")
    assert (config.log_rotation.max_bytes, config.log_rotation.backups) == (4096, 2)
    assert parse_config("nodes: {A: {port: 1}}\n", tmp_path / "t.yaml").log_rotation.backups == 5
    with pytest.raises(ConfigError, match=r"log_rotation\.backups: 0 must be 1 or more"):
        parse_config("nodes: {A: {port: 1}}\nlog_rotation: {backups: 0}\n", tmp_path / "t.yaml")


def test_bind_port_defaults_to_port_and_can_differ(tmp_path):
    config = parse_config(
        "nodes: {A: {port: 1000}, B: {port: 1001, bind_port: 2001}}\n", tmp_path / "t.yaml"
    )
    assert config.nodes["A"].listen_port == 1000
    assert (config.nodes["B"].port, config.nodes["B"].listen_port) == (1001, 2001)


def test_journal_settings(tmp_path):
    config = parse_config("nodes: {A: {port: 1}}\n", tmp_path / "t.yaml")
    assert config.journal.fsync == "everysec"
    text = "nodes: {A: {port: 1}}\njournal: {fsync: always, compact_factor: 3}\n"
    assert parse_config(text, tmp_path / "t.yaml").journal.fsync == "always"
    with pytest.raises(ConfigError, match=r"journal\.fsync: 'sometimes' is not one of"):
        parse_config("nodes: {A: {port: 1}}\njournal: {fsync: sometimes}\n", tmp_path / "t.yaml")


def test_metrics_and_dashboard_are_off_unless_asked(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, NODES)
    assert all(spec.metrics_port == 0 for spec in cfg.nodes.values())
    assert cfg.dashboard is None
    cfg = load_text(tmp_path, NODES + "dashboard: {}\n")
    assert cfg.dashboard == DashboardConfig(host="127.0.0.1", port=0)


def test_the_prometheus_example_scrapes_every_node_of_the_default_topology() -> None:
    example = yaml.safe_load((REPO_TOPOLOGY.parent / "docs" / "prometheus.yml").read_text())
    (job,) = example["scrape_configs"]
    (static,) = job["static_configs"]
    cfg = load_config(REPO_TOPOLOGY)
    assert static["targets"] == [f"{n.host}:{n.metrics_port}" for n in cfg.nodes.values()]


def test_scheduling_defaults_and_overrides(tmp_path: Path) -> None:
    default = parse_config("nodes: {A: {port: 1}}\n", tmp_path / "t.yaml").scheduling
    assert (default.quiet_slice_us, default.busy_above) == (300, 10_000)
    text = "nodes: {A: {port: 1}}\nscheduling: {quiet_slice_us: 0, busy_above: 500}\n"
    chosen = parse_config(text, tmp_path / "t.yaml").scheduling
    assert (chosen.quiet_slice_us, chosen.busy_above) == (0, 500)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "{quiet_slice_us: 50}",
            r"scheduling\.quiet_slice_us: 50 must be 0 \(the kernel's own\) or 100\.\.100000",
        ),
        ("{quiet_slice_us: 200000}", r"scheduling\.quiet_slice_us: 200000 must be 0"),
        ("{quiet_slice_us: true}", r"scheduling\.quiet_slice_us: must be an integer, got true"),
        ("{quiet_slice_us: -1}", r"scheduling\.quiet_slice_us: -1 must be 0 or more"),
        ("{busy_above: 0}", r"scheduling\.busy_above: 0 must be 1 or more"),
        ("{slice_us: 300}", r"scheduling: unknown key 'slice_us' .*did you mean 'quiet_slice_us'"),
        ("300", r"scheduling: must be a mapping, got 300"),
    ],
)
def test_scheduling_mistakes_name_the_field(tmp_path: Path, setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f"nodes: {{A: {{port: 1}}}}\nscheduling: {setting}\n", tmp_path / "t.yaml")
