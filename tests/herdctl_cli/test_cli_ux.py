"""The real `herdctl` as a user meets it: --version, completion, colour on a terminal only,
what `start` and a new supervisor say, and `status`'s exit status under a supervisor."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.herdctl_cli import BIN, herd_folder, herdctl
from tests.support import wait_until, write_topology


def on_terminal(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """Run `herdctl ARGS` with its stdout on a pseudo-terminal; its status and output."""
    main, sub = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k not in ("HERD_CONFIG", "NO_COLOR")}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [str(BIN), *args], cwd=cwd, stdout=sub, stderr=subprocess.DEVNULL, env=full_env
    )
    os.close(sub)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([main], [], [], deadline - time.monotonic())[0]:
                break
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(60), b"".join(chunks)
    finally:
        proc.kill()
        os.close(main)


def test_version(tmp_path: Path) -> None:
    result = herdctl("--version", cwd=tmp_path)  # needs no topology
    assert (result.returncode, result.stdout) == (0, "herdctl 0.1.0\n")


def test_shell_completion_offers_commands_and_the_topologys_nodes(tmp_path: Path) -> None:
    write_topology(tmp_path)

    def complete(words: str) -> list[str]:
        cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
        env = {"_HERDCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
        result = herdctl(cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("herdctl st") == ["start", "stop", "status"]
    assert complete("herdctl restart W") == ["Welsh", "Wilkes"]
    assert complete("herdctl tail ") == ["Goloman", "Hands", "Holiday", "Welsh", "Wilkes", "all"]
    script = herdctl("--show-completion", "bash", cwd=tmp_path)
    assert script.returncode == 0
    assert "_HERDCTL_COMPLETE=complete_bash" in script.stdout


def test_colour_on_a_terminal_only_and_never_with_no_color(tmp_path: Path) -> None:
    write_topology(tmp_path, ["Hands"], [])
    code, shown = on_terminal("status", cwd=tmp_path)
    assert code == 3
    assert b"\x1b[33mSTOPPED\x1b[0m" in shown
    code, plain = on_terminal("status", cwd=tmp_path, env={"NO_COLOR": "1"})
    assert code == 3
    assert b"\x1b[" not in plain
    assert b"STOPPED" in plain
    piped = herdctl("status", cwd=tmp_path)
    assert "\x1b[" not in piped.stdout
    assert "STOPPED" in piped.stdout


@pytest.fixture
def pair() -> Iterator[Path]:
    """A folder with Hands and Welsh, linked; whatever herd ran there is taken down."""
    with herd_folder() as path:
        yield write_topology(path, ["Hands", "Welsh"], [("Hands", "Welsh")])


def test_what_start_status_and_a_new_supervisor_say(pair: Path) -> None:
    up = herdctl("up", config=pair)
    assert up.returncode == 0, up.stderr
    pid = json.loads((pair.parent / "run" / "herdctl.pid").read_text())["pid"]
    log = pair.parent / "logs" / "herdctl.log"
    assert up.stderr == f"herdctl: started a supervisor (pid {pid}, log {log})\n"

    again = herdctl("start", "Hands", config=pair)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("Hands: already running (pid ")
    assert again.stdout.endswith("; left as it is\n")
    assert again.stderr == ""  # this one answered; no new supervisor

    assert herdctl("stop", "Welsh", config=pair).returncode == 0
    stopped = herdctl("status", "-c", str(pair), cwd=Path("/"))
    assert stopped.returncode == 3, stopped.stderr
    assert "Welsh  STOPPED" in stopped.stdout
    mixed = herdctl("start", "all", config=pair)
    assert mixed.returncode == 0, mixed.stderr
    assert mixed.stdout.splitlines()[0].startswith("Hands: already running")
    assert mixed.stdout.splitlines()[-1] == "started: Welsh"
    assert herdctl("status", config=pair).returncode == 0

    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}/status") or _zombie(pid), "it to die")
    adopted = herdctl("status", config=pair)
    assert adopted.returncode == 0, adopted.stderr
    (line,) = adopted.stderr.splitlines()
    assert line.startswith("herdctl: started a supervisor (pid ")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" in f.read()
    except FileNotFoundError:
        return True
