"""The real `herdctl` binary without a supervisor: check, send, tail, status, user errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from herdctl.locate import find_upward
from tests.herdctl_cli import (
    BIN,
    herdctl,
    no_traceback,
    read_lines_until,
    scratch_folder,
)
from tests.support import Herd, free_ports, write_topology

KNOWN = "known: Goloman, Hands, Holiday, Welsh, Wilkes"


@pytest.fixture
def folder() -> Iterator[Path]:
    with scratch_folder() as path:
        yield path


@pytest.fixture
def topology(folder: Path) -> Path:
    return write_topology(folder)


def test_the_binary_is_installed() -> None:
    assert BIN.exists(), f"{BIN} missing: pip install -e . first"


# --- check -----------------------------------------------------------------------------------


SHAPE = "  diameter 3 (Hands to Welsh); cut vertex Holiday: its loss would split the herd\n"


def test_check_summarises_a_good_topology_and_its_shape(topology: Path) -> None:
    result = herdctl("check", config=topology)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{topology}: ok: 5 nodes, 6 links, places provider offline\n{SHAPE}"
    assert result.stderr == ""


def test_check_finds_the_topology_through_env_and_cwd(topology: Path, folder: Path) -> None:
    by_env = herdctl("check", cwd=Path("/"), env={"HERD_CONFIG": str(topology)})
    by_cwd = herdctl("check", cwd=folder)
    assert by_env.returncode == by_cwd.returncode == 0, (by_env.stderr, by_cwd.stderr)
    assert by_env.stdout == by_cwd.stdout


def test_check_warns_about_a_split_herd(folder: Path) -> None:
    path = write_topology(folder, ["A", "B", "C"], [("A", "B")])
    result = herdctl("check", config=path)
    assert result.returncode == 0
    assert "warning: the herd is split into 2 parts (A, B | C)" in result.stdout


@pytest.mark.parametrize(
    ("secret", "size"), [("pw123", 5), ("x" * 15, 15), ("\u00e9" * 7, 14), ("\U0001f511" * 3, 12)]
)
def test_check_warns_when_herd_secret_is_short(topology: Path, secret: str, size: int) -> None:
    result = herdctl("check", config=topology, env={"HERD_SECRET": secret})
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{topology}: ok: 5 nodes, 6 links, places provider offline\n{SHAPE}"
    warning = result.stderr.splitlines()
    assert len(warning) == 1, warning
    assert warning[0].startswith(f"herdctl: warning: HERD_SECRET is {size} bytes long, "), warning
    assert "shorter than 16" in warning[0]
    assert secret not in result.stderr  # its length, never its value


@pytest.mark.parametrize("secret", ["x" * 16, "\u00e9" * 8, "a-long-random-secret-" * 4, ""])
def test_check_says_nothing_of_a_long_or_unset_herd_secret(topology: Path, secret: str) -> None:
    result = herdctl("check", config=topology, env={"HERD_SECRET": secret})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "nodes: {A: {port: 1}}\nlinks: [[A, Foo]]\n",
            "topology.yaml: links[0]: unknown node 'Foo' (known: A)",
        ),
        ("nodes: {A: {port: 99999}}\n", "topology.yaml: nodes.A.port: 99999 is out of range"),
        ("nodes: [\n", "topology.yaml: line 2, column 1: invalid YAML"),
    ],
)
def test_check_rejects_a_bad_topology_with_one_line(folder: Path, text: str, message: str) -> None:
    path = folder / "topology.yaml"
    path.write_text(text)
    result = herdctl("check", config=path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"herdctl: {message}")
    assert result.stderr.count("\n") == 1
    no_traceback(result)


def test_a_missing_topology_is_one_clear_line(folder: Path) -> None:
    if find_upward(folder) is not None:
        pytest.skip(f"a topology.yaml above {folder} would be found")
    for command in (["check"], ["status"], ["up"], ["down"], ["tail", "--all"]):
        result = herdctl(*command, cwd=folder)
        assert result.returncode == 2, command
        assert result.stderr == (
            f"herdctl: no topology.yaml in {folder} or any folder above it; "
            "name one with -c PATH or $HERD_CONFIG\n"
        )
    missing = herdctl("check", "-c", "nowhere.yaml", cwd=folder)
    assert missing.stderr == (
        "herdctl: cannot read topology file nowhere.yaml: No such file or directory\n"
    )


def test_the_topology_is_found_in_a_folder_above(topology: Path, folder: Path) -> None:
    deep = folder / "a" / "b"
    deep.mkdir(parents=True)
    other = write_topology(deep.parent, ["Solo"], [])  # the nearest one wins
    found = herdctl("check", cwd=deep)
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith(f"{other}: ok: 1 node,")
    by_env = herdctl("check", cwd=deep, env={"HERD_CONFIG": str(topology)})
    assert by_env.stdout.startswith(f"{topology}: ok: 5 nodes,")
    relative = herdctl("check", "-c", "../../topology.yaml", cwd=deep, env={"HERD_CONFIG": "x"})
    assert relative.stdout.startswith(f"{topology}: ok: 5 nodes,")  # -c first, resolved here
    status = herdctl("status", cwd=deep)  # no supervisor: Solo's port does not answer
    assert status.returncode == 3, status.stderr
    assert status.stdout.splitlines()[1].split()[:2] == ["Solo", "STOPPED"]


# --- send ------------------------------------------------------------------------------------


def test_send_prints_the_nodes_whole_reply(folder: Path) -> None:
    topology = write_topology(folder, ["Hands"], [])
    with Herd(topology) as herd:
        herd.start()
        result = herdctl(
            "send",
            "Hands",
            "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997",
            config=topology,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("AT Hands +")
        assert result.stdout.endswith(
            " kiwi.cs.ucla.edu +34.068930-118.445127 1520023934.918963997\n"
        )
        whatsat = subprocess.run(
            [
                str(BIN),
                "-c",
                str(topology),
                "send",
                "Hands",
                "WHATSAT",
                "kiwi.cs.ucla.edu",
                "5",
                "2",
            ],
            capture_output=True,
            check=False,
            timeout=60,
        )
        assert whatsat.returncode == 0, whatsat.stderr
        assert whatsat.stdout.startswith(result.stdout.encode())  # the stored AT line
        assert whatsat.stdout.endswith(b"}\n\n")  # the whole reply, exactly


def test_send_takes_options_anywhere_and_words_after_double_dash(folder: Path) -> None:
    topology = write_topology(folder, ["Hands"], [])
    with Herd(topology) as herd:
        herd.start()
        south = herdctl(
            "send",
            "Hands",
            "--timeout",
            "20",
            "--",
            "IAMAT",
            "syd",
            "-33.868820+151.209296",
            "1",
            config=topology,
        )
        quoted = herdctl(
            "send", "Hands", "IAMAT syd -33.868820+151.209296 2", "-c", str(topology), cwd=folder
        )
        help_word = herdctl("send", "Hands", "--", "BOGUS", "--help", config=topology)
        unquoted = herdctl("send", "Hands", "IAMAT", "syd", "-33.8+151.2", "3", config=topology)
        non_utf8 = subprocess.run(
            [os.fsencode(BIN), b"-c", os.fsencode(topology), b"send", b"Hands", b"BOGUS \xff\xfe"],
            capture_output=True,
            check=False,
            timeout=60,
        )
    assert south.returncode == 0, south.stderr
    assert south.stdout.startswith("AT Hands +")
    assert south.stdout.endswith(" syd -33.868820+151.209296 1\n")
    assert quoted.returncode == 0, quoted.stderr
    assert quoted.stdout.endswith(" syd -33.868820+151.209296 2\n")
    assert (help_word.returncode, help_word.stdout) == (3, "? BOGUS --help\n")
    assert unquoted.returncode == 2  # -33.8+151.2 reads as an option: `--` or quotes needed
    assert "-3" in unquoted.stderr
    assert (non_utf8.returncode, non_utf8.stdout) == (3, b"? BOGUS \xff\xfe\n")
    no_traceback(non_utf8)


def test_send_exits_3_and_says_why_a_line_is_invalid(folder: Path) -> None:
    topology = write_topology(folder, ["Hands"], [])
    with Herd(topology) as herd:
        herd.start()
        results = {
            line: herdctl("send", "Hands", line, config=topology)
            for line in (
                "IAMAT kiwi +34.068930-118.445127",
                "IAMAT kiwi +91-118 1520023934.9",
                "IAMAT kiwi +34-118 yesterday",
                "WHATSAT nobody 10 5",
                "WHATSAT nobody 51 5",
                "WHATSAT nobody 10 21",
                "HELLO",
            )
        }
    for line, result in results.items():
        assert result.returncode == 3, (line, result.stderr)
        assert result.stdout == f"? {line}\n"
        assert result.stderr.startswith("herdctl: Hands found the line invalid: "), line
        assert result.stderr.count("\n") == 1
    why = {line: result.stderr.split(": ", 2)[2] for line, result in results.items()}
    assert why["IAMAT kiwi +34.068930-118.445127"].startswith("wrong field count")
    assert why["IAMAT kiwi +91-118 1520023934.9"].startswith("location out of range")
    assert why["IAMAT kiwi +34-118 yesterday"].startswith("bad time")
    assert why["WHATSAT nobody 10 5"].startswith("unknown client 'nobody'")
    assert why["WHATSAT nobody 51 5"].startswith("radius > 50 km")
    assert why["WHATSAT nobody 10 21"].startswith("bound outside 1..20")
    assert why["HELLO"].startswith("unknown keyword 'HELLO'")


def test_send_to_a_dead_port_says_so(folder: Path) -> None:
    (port,) = free_ports(1)
    topology = write_topology(folder, ["Hands"], [], ports={"Hands": port})
    result = herdctl("send", "Hands", "IAMAT a +1+1 1", config=topology)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"herdctl: cannot reach Hands at 127.0.0.1:{port}: connection refused\n"
    )


def test_unknown_node_names_list_the_known_ones(topology: Path) -> None:
    for command in (
        ["send", "Foo", "x"],
        ["tail", "Foo"],
        ["start", "Foo"],
        ["stop", "Hands", "Foo"],
    ):
        result = herdctl(*command, config=topology)
        assert result.returncode == 2, command
        assert result.stderr == f"herdctl: topology.yaml: unknown node 'Foo' ({KNOWN})\n"


# --- tail ------------------------------------------------------------------------------------


def stamp(second: int) -> str:
    return f"2026-11-26T01:35:{second:02d}.000000Z"


def write_logs(folder: Path) -> Path:
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "Hands.log").write_text("".join(f"{stamp(s)} EVENT h{s}\n" for s in (1, 3, 5, 7)))
    (logs / "Welsh.log").write_text(f"{stamp(2)} EVENT w2\n{stamp(6)} EVENT w6\n  w6 continued\n")
    return logs


def test_tail_shows_the_last_lines(topology: Path, folder: Path) -> None:
    write_logs(folder)
    result = herdctl("tail", "Hands", "-n", "3", config=topology)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{stamp(3)} EVENT h3\n{stamp(5)} EVENT h5\n{stamp(7)} EVENT h7\n"


def test_tail_all_merges_every_log_by_timestamp(topology: Path, folder: Path) -> None:
    write_logs(folder)
    result = herdctl("tail", "--all", config=topology)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Hands   | {stamp(1)} EVENT h1",
        f"Welsh   | {stamp(2)} EVENT w2",
        f"Hands   | {stamp(3)} EVENT h3",
        f"Hands   | {stamp(5)} EVENT h5",
        f"Welsh   | {stamp(6)} EVENT w6",
        "Welsh   |   w6 continued",
        f"Hands   | {stamp(7)} EVENT h7",
    ]
    last = herdctl("tail", "all", "-n", "2", config=topology)  # two lines of each log
    assert last.stdout.splitlines() == [
        f"Hands   | {stamp(5)} EVENT h5",
        f"Welsh   | {stamp(6)} EVENT w6",
        "Welsh   |   w6 continued",
        f"Hands   | {stamp(7)} EVENT h7",
    ]


def test_tail_since_an_age_or_a_time(topology: Path, folder: Path) -> None:
    now = datetime.now(UTC)

    def at(minutes_ago: int) -> str:
        return (now - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    logs = folder / "logs"
    logs.mkdir()
    (logs / "Hands.log.1").write_text(f"{at(50)} EVENT h50\n{at(20)} EVENT h20\n")
    (logs / "Hands.log").write_text("".join(f"{at(m)} EVENT h{m}\n" for m in (8, 4, 1)))
    (logs / "Welsh.log").write_text(f"{at(30)} EVENT w30\n{at(3)} EVENT w3\n  w3 more\n")
    five = herdctl("tail", "--since", "5m", "--all", config=topology)
    assert five.returncode == 0, five.stderr
    assert [line.split()[-1] for line in five.stdout.splitlines()] == ["h4", "w3", "more", "h1"]
    rotated = herdctl("tail", "Hands", "--since", "25m", config=topology)
    assert [line.split()[-1] for line in rotated.stdout.splitlines()] == ["h20", "h8", "h4", "h1"]
    both = herdctl("tail", "Hands", "--since", at(9)[:19], "-n", "1", config=topology)
    assert [line.split()[-1] for line in both.stdout.splitlines()] == ["h1"]
    bad = herdctl("tail", "Hands", "--since", "yesterday", config=topology)
    assert bad.returncode == 2
    assert bad.stderr.startswith("herdctl: --since: expected an age such as 30s, 5m, 2h or 1d")


def test_tail_stderr_shows_the_nodes_own_output(topology: Path, folder: Path) -> None:
    logs = write_logs(folder)
    (logs / "Hands.stderr.log").write_text("node Hands: listening\nTraceback (most recent...)\n")
    result = herdctl("tail", "--stderr", "Hands", "-n", "1", config=topology)
    assert (result.returncode, result.stdout) == (0, "Traceback (most recent...)\n")
    every = herdctl("tail", "--stderr", "all", config=topology)
    assert every.stdout == (
        "Hands   | node Hands: listening\nHands   | Traceback (most recent...)\n"
    )
    since = herdctl("tail", "--stderr", "Hands", "--since", "1m", config=topology)
    assert (since.returncode, since.stderr) == (
        2,
        "herdctl: --since needs timestamps, and NAME.stderr.log has none\n",
    )


def test_tail_errors_are_one_line(topology: Path) -> None:
    missing = herdctl("tail", "Hands", config=topology)
    assert missing.returncode == 1
    assert missing.stderr.startswith("herdctl: no log yet at ")
    neither = herdctl("tail", config=topology)
    both = herdctl("tail", "Hands", "--all", config=topology)
    for result in (neither, both):
        assert result.returncode == 2
        assert result.stderr == "herdctl: name one node, or 'all'\n"


def test_tail_follow_on_a_missing_log_says_it_waits(topology: Path, folder: Path) -> None:
    proc = subprocess.Popen(
        [str(BIN), "-c", str(topology), "tail", "-f", "Hands"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        (note,) = read_lines_until(proc.stderr, 1, 30)
        log = folder / "logs" / "Hands.log"
        assert note == f"herdctl: no log yet at {log}; waiting for it (Ctrl-C to stop)"
        write_logs(folder)
        seen = read_lines_until(proc.stdout, 4, 30)
        assert seen[-1] == f"{stamp(7)} EVENT h7"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        assert b"Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(10)


def test_tail_follow_continues_across_rotation(topology: Path, folder: Path) -> None:
    logs = write_logs(folder)
    log = logs / "Hands.log"
    proc = subprocess.Popen(
        [str(BIN), "-c", str(topology), "tail", "Hands", "-n", "1", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        seen = read_lines_until(proc.stdout, 1, 30)
        with open(log, "a") as f:
            f.write(f"{stamp(8)} EVENT h8\n")
        read_lines_until(proc.stdout, 2, 30, seen)
        os.replace(log, logs / "Hands.log.1")
        log.write_text(f"{stamp(9)} EVENT h9 in the new file\n")
        read_lines_until(proc.stdout, 3, 30, seen)
        log.write_text(f"{stamp(10)} h10\n")  # shorter than before: truncated
        read_lines_until(proc.stdout, 4, 30, seen)
        assert seen == [
            f"{stamp(7)} EVENT h7",
            f"{stamp(8)} EVENT h8",
            f"{stamp(9)} EVENT h9 in the new file",
            f"{stamp(10)} h10",
        ]
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        assert b"Traceback" not in proc.stderr.read()


# --- status and down with no supervisor ------------------------------------------------------


def test_status_without_a_supervisor_shows_which_ports_answer(folder: Path) -> None:
    topology = write_topology(folder, ["Hands", "Welsh"], [])
    with Herd(topology) as herd:
        herd.start("Hands")
        table = herdctl("status", config=topology)
        as_json = herdctl("status", "--json", config=topology)
        herd.start("Welsh")
        every_port = herdctl("status", "-c", str(topology), cwd=Path("/"))
    assert table.returncode == as_json.returncode == 3, table.stderr  # Welsh is not running
    assert every_port.returncode == 0, every_port.stderr
    assert "no supervisor running" in table.stderr
    rows = {line.split()[0]: line.split()[1] for line in table.stdout.splitlines()[1:]}
    assert rows == {"Hands": "UNMANAGED", "Welsh": "STOPPED"}
    nodes = json.loads(as_json.stdout)
    assert [(n["name"], n["state"], n["pid"], n["restarts"]) for n in nodes] == [
        ("Hands", "UNMANAGED", None, None),
        ("Welsh", "STOPPED", None, None),
    ]
    assert not (folder / "run" / "herdctl.sock").exists()  # status did not start a daemon


def test_down_without_a_supervisor_is_a_no_op(topology: Path) -> None:
    result = herdctl("down", config=topology)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no supervisor running; nothing to stop\n"
