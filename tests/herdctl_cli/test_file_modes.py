"""The supervisor and the nodes it starts create files 0600 and folders 0700.

`herdctl up` in a fresh folder under umask 022: its own log, pid files and socket, each
node's stderr log, log, status file, journal and the secret are its user's alone; logs it
appends to that were left wider are tightened on the next start.
"""

from __future__ import annotations

from pathlib import Path

from tests.herdctl_cli import herdctl
from tests.support import mode, umask, write_topology


def modes_under(folder: Path) -> dict[str, str]:
    """The mode of everything the herd made under `folder`, in octal, by relative path."""
    return {
        str(path.relative_to(folder)): f"{mode(path):o}"
        for path in sorted(folder.rglob("*"))
        if path.name != "topology.yaml"
    }


def test_a_supervised_herd_makes_its_files_0600_and_its_folders_0700(folder: Path) -> None:
    config = write_topology(folder, ["Hands", "Welsh"], [("Hands", "Welsh")])
    with umask(0o022):
        up = herdctl("up", config=config)
    assert up.returncode == 0, up.stdout + up.stderr
    found = modes_under(folder)
    expected = {
        "logs", "run", "data", "data/Hands", "data/Welsh",
        "logs/herdctl.log", "run/herdctl.pid", "run/herdctl.sock", "run/herd.secret",
        *(f"{where}/{name}{what}" for name in ("Hands", "Welsh") for where, what in (
            ("logs", ".log"), ("logs", ".stderr.log"), ("run", ".pid"), ("run", ".status.json")
        )),
    }  # fmt: skip
    assert expected <= set(found), sorted(expected - set(found))
    assert found == {path: "700" if (folder / path).is_dir() else "600" for path in found}

    # Logs left wider than 0600 are tightened when the herd opens them again.
    down = herdctl("down", config=config, timeout=60)
    assert down.returncode == 0, down.stderr
    logs = [folder / "logs" / name for name in ("herdctl.log", "Welsh.stderr.log", "Welsh.log")]
    for log in logs:
        log.chmod(0o644)
    with umask(0o022):
        up = herdctl("up", config=config)
    assert up.returncode == 0, up.stdout + up.stderr
    assert {log.name: mode(log) for log in logs} == {log.name: 0o600 for log in logs}
