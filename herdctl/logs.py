"""Reading logs: the last lines of one (for `herdctl tail`, error reports and a dead node's
last words), several merged, and following them.

Pure apart from reading files: no printing, no clock except through the injected `sleep`.
A node log line starts with an ISO timestamp (`2026-11-26T01:35:09.552723Z `); a line without
one (a traceback, a wrapped message) belongs to the line before it. Files are read as bytes
and decoded as UTF-8 with replacement, so a torn or odd byte never stops a tail.
"""

from __future__ import annotations

import heapq
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import BinaryIO

BLOCK = 8192
POLL_INTERVAL = 0.2  # seconds between looks at a followed file

_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?(?= |$)")


def timestamp(line: str) -> str | None:
    """The leading ISO timestamp of a log line, or None for a continuation line."""
    match = _STAMP.match(line)
    return match.group(0) if match else None


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def last_lines(
    path: Path, n: int, *, start: int = 0, limit: int | None = None, block: int = BLOCK
) -> list[str]:
    """The last `n` lines of `path` (without their LF), reading backwards from the end.

    Costs about `n` lines of reading however big the file is. A last line without LF counts.
    Nothing before byte offset `start` is read, nor more than `limit` bytes when given (the
    first line returned may then be the end of a longer one).
    """
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        return _lines_before(f, end, n, start=start, limit=limit, block=block)


def _lines_before(
    f: BinaryIO,
    end: int,
    n: int,
    *,
    start: int = 0,
    limit: int | None = None,
    block: int = BLOCK,
) -> list[str]:
    """The last `n` lines of `f` that end at or before byte offset `end`, read from no
    further back than `start` (and `limit` bytes before `end`)."""
    if n <= 0:
        return []
    floor = start if limit is None else max(start, end - limit)
    pos = end
    chunks: list[bytes] = []
    newlines = 0
    while pos > floor and newlines <= n:
        size = min(block, pos - floor)
        pos -= size
        f.seek(pos)
        chunk = f.read(size)
        chunks.append(chunk)
        newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    if data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        return []
    return [_decode(line) for line in data.split(b"\n")[-n:]]


def _after_last_newline(f: BinaryIO, end: int, *, block: int = BLOCK) -> int:
    """The offset just past the last LF at or before `end` (0 if none): where a line starts."""
    pos = end
    while pos > 0:
        size = min(block, pos)
        pos -= size
        f.seek(pos)
        chunk = f.read(size)
        at = chunk.rfind(b"\n")
        if at >= 0:
            return pos + at + 1
    return 0


def _last_lines_or_none(path: Path, n: int) -> list[str]:
    """`last_lines`, with no lines for a file rotated away meanwhile."""
    try:
        return last_lines(path, n)
    except FileNotFoundError:
        return []


def kept_from(lines: Sequence[str], since: str) -> tuple[int, bool]:
    """Where the entries stamped at or after `since` begin in `lines`, and whether an older
    entry was seen before them (if not, more of them may lie further back).

    Continuation lines belong to the entry above; lines with no stamp above them count as
    older, since their time is unknown.
    """
    start = len(lines)
    for i in range(len(lines) - 1, -1, -1):
        stamp = timestamp(lines[i])
        if stamp is None:
            continue
        if stamp < since:
            return start, True
        start = i
    return start, False


def recent(
    readers: Iterable[Callable[[int], list[str]]],
    n: int | None,
    since: str | None = None,
    *,
    batch: int = 256,
) -> list[str]:
    """The last `n` lines (every one when None) of a log kept in several files, and with
    `since` only those of entries stamped at or after it.

    `readers` give the last k lines of each file, newest file first. Reading goes back only
    as far as it must: `n` lines, or the first entry older than `since`.
    """
    lines: list[str] = []
    for read in readers:
        if n is not None and len(lines) >= n:
            break
        k = batch if n is None else n - len(lines)
        while True:
            got = read(k)
            start, older = kept_from(got, since) if since is not None else (0, False)
            enough = n is not None and len(got) - start + len(lines) >= n
            if older or enough or len(got) < k:  # len(got) < k: the whole file is read
                break
            k *= 4
        lines = got[start:] + lines
        if older:
            break
    if n is not None:
        return lines[-n:] if n else []
    return lines


def since_stamp(since: str, now: datetime) -> str:
    """`--since` as a log timestamp to compare with: an age back from `now` (`90s`, `5m`,
    `2h`, `1d`, `1.5h`; a bare number is seconds) or an ISO time (UTC unless it says).
    ValueError when it is neither."""
    match = _AGE.fullmatch(since.strip())
    if match:
        number, unit = match.groups()
        moment = now - timedelta(seconds=float(number) * _UNIT_SECONDS[unit or "s"])
    else:
        try:
            moment = datetime.fromisoformat(since.strip())
        except ValueError:
            raise ValueError(
                f"expected an age such as 30s, 5m, 2h or 1d, or a time such as "
                f"2026-11-26T04:00:00 (UTC), not {since!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def excerpt(path: Path, n: int) -> str:
    """The last `n` lines of a file under a header naming it, for an error report."""
    try:
        lines = last_lines(path, n)
    except FileNotFoundError:
        return f"--- {path}: no such file ---"
    except OSError as e:
        return f"--- {path}: {e.strerror or e} ---"
    body = "\n".join(lines) if lines else "(empty)"
    return f"--- last {len(lines)} lines of {path} ---\n{body}"


def rotated(path: Path) -> list[Path]:
    """`path` and its rotated copies that exist, newest first: NAME.log, NAME.log.1, ..."""
    found = [path] if path.exists() else []
    i = 1
    while (older := path.with_name(f"{path.name}.{i}")).exists():
        found.append(older)
        i += 1
    return found


@dataclass(frozen=True, slots=True)
class Entry:
    """One log event: its timestamp, the node it came from, and its lines (continuations too)."""

    stamp: str
    source: str
    lines: tuple[str, ...]


def entries(source: str, lines: Iterable[str]) -> Iterator[Entry]:
    """Group `lines` into entries: a line without a timestamp joins the entry before it.

    Lines before the first timestamp form an entry stamped "" (they sort first).
    """
    stamp = ""
    group: list[str] = []
    for line in lines:
        found = timestamp(line)
        if found is not None and group:
            yield Entry(stamp, source, tuple(group))
            group = []
        if found is not None:
            stamp = found
        group.append(line)
    if group:
        yield Entry(stamp, source, tuple(group))


def merge(sources: Mapping[str, Iterable[str]]) -> Iterator[Entry]:
    """Entries of several logs in timestamp order; ties keep the order of `sources`.

    Each source must itself be in time order, as a log is; the merge is lazy.
    """
    streams = [entries(name, lines) for name, lines in sources.items()]
    return heapq.merge(*streams, key=lambda entry: entry.stamp)


def prefixed(entry: Entry, width: int) -> Iterator[str]:
    """The entry's lines, each prefixed `NAME   | ` with the name padded to `width`."""
    for line in entry.lines:
        yield f"{entry.source:<{width}} | {line}"


class Follower:
    """New complete lines of a file as it grows, across rotation and truncation.

    `poll()` returns what arrived since the last call. When the path names a new file (inode
    change: the log was rotated), the rest of the old file is read first, then the new one
    from its start. When the file shrinks (truncated), reading restarts at its start. A file
    that does not exist yet is waited for. With `from_end`, following starts at the start of
    the file's unfinished last line (if any), and `history(n)` gives the lines before that
    point, so a tail followed by new lines neither repeats nor loses one.
    """

    def __init__(self, path: Path, *, from_end: bool = True) -> None:
        self.path = path
        self._f: BinaryIO | None = None
        self._inode = (0, 0)
        self._buffer = b""
        self._start = 0
        self._open(from_end=from_end)

    def _open(self, *, from_end: bool) -> None:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            self._f = None
            return
        stat = os.fstat(f.fileno())
        self._f, self._inode = f, (stat.st_ino, stat.st_dev)
        self._start = _after_last_newline(f, stat.st_size) if from_end else 0
        f.seek(self._start)

    def history(self, n: int | None, since: str | None = None) -> list[str]:
        """The last `n` lines (every one when None) before where following started, topped
        up from NAME.log.1, ...; with `since`, only the entries stamped at or after it."""
        if self._f is None:
            return []
        f, end = self._f, self._start
        readers = [lambda k: _lines_before(f, end, k)]
        readers += [partial(_last_lines_or_none, older) for older in rotated(self.path)[1:]]
        lines = recent(readers, n, since)
        f.seek(self._start)
        return lines

    def poll(self) -> list[str]:
        """The complete lines appended since the last poll (without their LF)."""
        if self._f is None:
            self._open(from_end=False)
            if self._f is None:
                return []
        out = self._read()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:  # between rotation's rename and the new file: wait
            return out
        if (stat.st_ino, stat.st_dev) != self._inode:
            out += self._read()  # whatever the old file got before it was rotated
            out += self._flush_partial()
            self.close()
            self._open(from_end=False)
            if self._f is not None:
                out += self._read()
        elif self._f is not None and stat.st_size < self._f.tell():
            out += self._flush_partial()
            self._f.seek(0)
            out += self._read()
        return out

    def _read(self) -> list[str]:
        if self._f is None:
            return []
        data = self._f.read()
        if not data:
            return []
        head, sep, rest = (self._buffer + data).rpartition(b"\n")
        self._buffer = rest
        if not sep:
            return []
        return [_decode(line) for line in head.split(b"\n")]

    def _flush_partial(self) -> list[str]:
        """A last line the old file never finished is still a line."""
        rest, self._buffer = self._buffer, b""
        return [_decode(rest)] if rest else []

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def history(
    followers: Mapping[str, Follower], n: int | None, since: str | None = None
) -> list[Entry]:
    """The last `n` lines of each followed log (every one when None; with `since`, those
    stamped at or after it), merged by timestamp: `tail --all -n 5` shows 5 per node.

    Exactly `n` lines of each, as `tail -n` gives (fewer if there are fewer): the oldest
    entry of a log may lose its first lines.
    """
    return list(merge({name: f.history(n, since) for name, f in followers.items()}))


def follow(
    followers: Mapping[str, Follower],
    *,
    sleep: Callable[[float], None] = time.sleep,
    stop: Callable[[], bool] = lambda: False,
    interval: float = POLL_INTERVAL,
) -> Iterator[Entry]:
    """Entries appended to each followed log from now on, until `stop()` is true.

    Each poll's new lines are merged by timestamp across the logs, so a live `tail --all -f`
    stays in time order to within one poll interval. Closes the followers at the end.
    """
    try:
        while not stop():
            fresh = {name: f.poll() for name, f in followers.items()}
            yield from merge({name: lines for name, lines in fresh.items() if lines})
            if stop():
                break
            sleep(interval)
    finally:
        for f in followers.values():
            f.close()
