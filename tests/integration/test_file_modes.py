"""A real node keeps what it writes to its own user: files 0600, the folders it makes 0700.

Logs hold client names and locations, the run folder holds the secret: under the usual
umask 022 the node must still create nothing that others can read.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import (
    NodeProcess,
    exchange_sync,
    free_ports,
    mode,
    umask,
    wait_until,
    write_topology,
)

UCLA = b"+34.068930-118.445127"


def modes_under(folder: Path, skip: set[str]) -> dict[str, str]:
    """The mode of everything under `folder` (but the names in `skip`), in octal, by path."""
    return {
        str(path.relative_to(folder)): f"{mode(path):o}"
        for path in sorted(folder.rglob("*"))
        if path.name not in skip
    }


def test_a_node_makes_its_files_0600_and_its_folders_0700(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    extra = {"places": {"provider": "offline"}, "data_dir": "state/data"}
    config = write_topology(tmp_path, ["Welsh"], [], ports={"Welsh": port}, extra=extra)
    env = {k: v for k, v in os.environ.items() if k != "HERD_SECRET"}  # the secret file, then
    node = NodeProcess("Welsh", config, port, env)
    with umask(0o022):
        node.start()
    try:
        node.wait_ready()
        reply = exchange_sync(port, b"IAMAT kiwi " + UCLA + b" 1520023934.918963997\n")
        assert reply.startswith(b"AT Welsh ")
        wait_until(lambda: "client=kiwi" in node.log_text(), "the IAMAT in the log")
        status = tmp_path / "run" / "Welsh.status.json"
        wait_until(status.exists, "the status file")
        found = modes_under(tmp_path, skip={"topology.yaml"})
    finally:
        assert node.stop() == 0
    folders = ["logs", "run", "state", "state/data", "state/data/Welsh"]
    files = ["logs/Welsh.log", "run/Welsh.status.json", "run/herd.secret"]
    assert set(folders) | set(files) <= set(found), found
    assert found == {path: "700" if (tmp_path / path).is_dir() else "600" for path in found}, (
        "each folder 0700, each file 0600"
    )

    # A log left wider than 0600 (by an older herd, or by hand) is tightened when reopened.
    log = tmp_path / "logs" / "Welsh.log"
    log.chmod(0o644)
    with umask(0o022):
        node.start()
    try:
        node.wait_ready()
        wait_until(lambda: node.log_text().count(" START node=Welsh ") == 2, "the second START")
        assert mode(log) == 0o600
    finally:
        assert node.stop() == 0
