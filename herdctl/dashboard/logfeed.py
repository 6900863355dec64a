"""Every log's new lines for the dashboard, merged by time, never more than a window at once.

Unlike `herdctl tail -f` (herdctl.logs.Follower), which must show every line, the page shows
the latest: a log that grew by more than `WINDOW` bytes since the last look (a benchmark
logs a line per request) is read from WINDOW bytes before its end, and the poll says lines
were skipped, so the supervisor never spends its time reading a busy herd's logs. A
rotated log is read from the start of the new file (what the old one got meanwhile is
skipped too). Files only: no asyncio, no clock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from herdctl import logs

WINDOW = 64 * 1024  # bytes of one log read at most per poll
MAX_ENTRIES = 200  # entries one poll gives at most (the latest)
HISTORY_LIMIT = 256 * 1024  # bytes of one log read back at most for its last lines


class EntryView(TypedDict):
    """One log event as the page shows it: its time, the log it came from, its text."""

    time: str  # the line's own ISO timestamp ("" when it had none)
    source: str  # the node's name, or "herdctl" for the supervisor's log
    text: str  # continuation lines joined with LF


def view(entry: logs.Entry) -> EntryView:
    return {"time": entry.stamp, "source": entry.source, "text": "\n".join(entry.lines)}


@dataclass
class Tail:
    """One log followed from its end as it was when first seen, a bounded window per poll."""

    path: Path
    file_id: tuple[int, int] | None = None  # (inode, device) of the file read last
    offset: int = 0  # where the next unread line starts
    mid_line: bool = False  # a skip landed inside a line: drop up to its end first
    _seen: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return
        self.file_id, self.offset = (st.st_ino, st.st_dev), st.st_size
        self._seen = True

    def poll(self) -> tuple[list[str], bool]:
        """The complete lines appended since the last poll, and whether some were skipped."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below, in one place
        except OSError:
            return [], False
        with f:
            st = os.fstat(f.fileno())
            if (st.st_ino, st.st_dev) != self.file_id:  # new, or rotated: from its start
                self.file_id, self.offset, self.mid_line = (st.st_ino, st.st_dev), 0, False
                skipped = self._seen
                self._seen = True
            elif st.st_size < self.offset:  # truncated
                self.offset, self.mid_line, skipped = 0, False, True
            else:
                skipped = False
            start = max(self.offset, st.st_size - WINDOW)
            if start > self.offset:
                skipped, self.mid_line = True, True
            f.seek(start)
            data = f.read(st.st_size - start)
        used = 0
        if self.mid_line:
            newline = data.find(b"\n")
            if newline < 0:
                self.offset = start + len(data)
                return [], skipped
            used, self.mid_line = newline + 1, False
        end = data.rfind(b"\n")
        if end < used:
            self.offset = start + used
            return [], skipped
        self.offset = start + end + 1
        lines = data[used:end].split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines], skipped


class LogFeed:
    """The new entries of several logs (by source name), merged by time at each poll."""

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self._tails: dict[str, Tail] = {}
        self.retarget(paths)

    def retarget(self, paths: Mapping[str, Path]) -> None:
        """Follow these logs from now on: a log already followed keeps its place, a new one
        is followed from its end, a dropped one is forgotten (a reload changed the herd)."""
        self._tails = {
            name: self._tails[name]
            if name in self._tails and self._tails[name].path == path
            else Tail(path)
            for name, path in paths.items()
        }

    def poll(self) -> tuple[list[EntryView], bool]:
        """The entries appended since the last poll (the latest MAX_ENTRIES), merged by
        time, and whether any were skipped."""
        fresh: dict[str, list[str]] = {}
        skipped = False
        for name, tail in self._tails.items():
            lines, missed = tail.poll()
            skipped = skipped or missed
            if lines:
                fresh[name] = lines
        entries = [view(entry) for entry in logs.merge(fresh)]
        if len(entries) > MAX_ENTRIES:
            entries, skipped = entries[-MAX_ENTRIES:], True
        return entries, skipped


def history(paths: Mapping[str, Path], n: int) -> list[EntryView]:
    """The last `n` entries of all the logs together, merged by time (each log's last `n`
    lines read, from no further back than HISTORY_LIMIT bytes)."""
    found: dict[str, list[str]] = {}
    for name, path in paths.items():
        try:
            found[name] = logs.last_lines(path, n, limit=HISTORY_LIMIT)
        except OSError:
            continue
    merged = [view(entry) for entry in logs.merge(found)]
    return merged[-n:] if n > 0 else []
