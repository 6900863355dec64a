"""`herdctl tail`: which logs, from how far back, and following them as they grow."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime

import typer

from herdctl import logs
from herdctl.console import EXIT_INTERRUPTED, EXIT_USAGE, UserError, err
from node.config import HerdConfig


def show(
    config: HerdConfig,
    name: str | None,
    every: bool,
    *,
    stderr: bool,
    since: str | None,
    lines: int | None,
    follow: bool,
) -> None:
    """Print the last `lines` (or those since `since`) of one node's log, or of every node's
    merged by time and prefixed with the node's name; then follow them if asked."""
    names = list(config.nodes) if every else [config.node(str(name)).name]
    suffix = ".stderr.log" if stderr else ".log"
    paths = {n: config.log_dir / f"{n}{suffix}" for n in names}
    cutoff = None
    if since is not None:
        if stderr:
            raise UserError("--since needs timestamps, and NAME.stderr.log has none", EXIT_USAGE)
        try:
            cutoff = logs.since_stamp(since, datetime.now(UTC))
        except ValueError as e:
            raise UserError(f"--since: {e}", EXIT_USAGE) from None
    where = config.log_dir if every else paths[names[0]]
    if not any(path.exists() for path in paths.values()):
        if not follow:
            raise UserError(f"no log yet at {where} (has the node run?)")
        err(f"herdctl: no log yet at {where}; waiting for it (Ctrl-C to stop)")
    width = max(map(len, names)) if every else 0

    def emit(entries: Iterable[logs.Entry]) -> None:
        for entry in entries:
            text = logs.prefixed(entry, width) if every else entry.lines
            sys.stdout.write("".join(f"{line}\n" for line in text))
        sys.stdout.flush()

    followers = {n: logs.Follower(path) for n, path in paths.items()}
    emit(logs.history(followers, 10 if lines is None and cutoff is None else lines, cutoff))
    if not follow:
        for f in followers.values():
            f.close()
        return
    try:
        for entry in logs.follow(followers):
            emit([entry])
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
