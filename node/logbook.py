"""The node's operator log: one timestamped event per line, buffered off the hot path."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from node.native import mypyc_attr
from node.private import open_private, private_dir, tighten
from node.rotation import rotate_files

# Control characters and backslash are escaped so every event stays on one greppable line;
# bytes that are not UTF-8 arrive as surrogates (surrogateescape) and show as \xNN, which a
# literal backslash in the text (shown doubled) can never be mistaken for.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_ESCAPES.update({c: f"\\u{c:04x}" for c in range(0x80, 0xA0)})
_ESCAPES.update({ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_ESCAPES.update({0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)})
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


_NEEDS_ESCAPE = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_ESCAPES)) + "]")


# The bytes show() would change, but for LF: raw_events joins its events with LF, deletes
# these from the block and compares lengths (a C-speed pass, unlike a regex search), and
# counts the LFs, to tell whether the whole block can go out as it is.
_RAW_NEEDS_ESCAPE = bytes([*range(0x0A), *range(0x0B, 0x20), 0x5C, *range(0x7F, 0x100)])
_RAW_NEEDS_ESCAPE_OR_LF = _RAW_NEEDS_ESCAPE + b"\n"  # one event: an LF would make two lines


def _escape(match: re.Match[str]) -> str:
    return _ESCAPES[ord(match.group())]


def show(data: bytes) -> str:
    """Bytes as one printable line: UTF-8 where valid, escapes for the rest."""
    # Most lines need no escape at all: a regex scan beats translate() on every character.
    return _NEEDS_ESCAPE.sub(_escape, data.decode("utf-8", "surrogateescape"))


# Compiled (node.native); the tests' fake node captures events in an interpreted subclass.
@mypyc_attr(allow_interpreted_subclasses=True)
class LogBook:
    """Appends events to a file; writes happen in batches on a timer, never per event.

    Events are kept as UTF-8 bytes from the moment they are recorded, so the hot path never
    encodes text. `flush_interval` bounds how stale the file can be; `close()` writes what
    is left.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        flush_interval: float = 0.1,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
    ) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._file: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._interval = flush_interval
        self._timer: asyncio.TimerHandle | None = None
        self._stamp_second = -1
        self._stamp_prefix = b""
        self._failing = False  # writes fail: said once on stderr, not at every flush
        if path is not None:
            private_dir(path.parent)
            self._open()
            for i in range(1, backups + 1):  # rotated before the herd made its logs 0600
                tighten(self._backup(i))

    def _open(self) -> None:
        """Open the log for appending: created 0600, or tightened to 0600 if it was wider."""
        assert self._path is not None
        fd = open_private(self._path, os.O_WRONLY | os.O_APPEND)
        self._file = os.fdopen(fd, "ab", buffering=1 << 16)

    def _backup(self, i: int) -> Path:
        assert self._path is not None
        return self._path.with_name(f"{self._path.name}.{i}")

    def _stamp(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        return b"%s.%06dZ" % (self._stamp_prefix, int((now - second) * 1e6))

    def event(self, text: str) -> None:
        """Record one event now; it reaches the file within the flush interval."""
        # backslashreplace: a stray surrogate must not cost the event (show() leaves none).
        self._pending.append(b"%s %s\n" % (self._stamp(), text.encode("utf-8", "backslashreplace")))
        self._schedule()

    def raw_events(self, events: list[bytes]) -> None:
        """Record several events of this instant, given as bytes; each is escaped as
        `show()` would, with one scan for the whole batch when none needs it."""
        if not events:
            return
        stamp = self._stamp()
        if len(events) == 1:  # a waiting client's read: one line, one event
            event = events[0]
            if len(event.translate(None, _RAW_NEEDS_ESCAPE_OR_LF)) == len(event):
                self._pending.append(b"%s %s\n" % (stamp, event))
                if self._timer is None:
                    self._schedule()
                return
        prefix = stamp + b" "
        block = b"\n".join(events)
        if (
            len(block.translate(None, _RAW_NEEDS_ESCAPE)) == len(block)
            and block.count(b"\n") == len(events) - 1
        ):
            self._pending.append(prefix + block.replace(b"\n", b"\n" + prefix) + b"\n")
        else:
            self._pending.extend(
                prefix + show(event).encode("utf-8", "backslashreplace") + b"\n" for event in events
            )
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self._interval, self.flush)

    def flush(self) -> None:
        """Write every pending event."""
        self._timer = None
        if not self._pending:
            return
        chunk = b"".join(self._pending)
        self._pending.clear()
        try:
            if self._file is None:
                self._to_stderr(chunk)
                return
            self._file.write(chunk)
            self._file.flush()
            if self._file.tell() >= self._max_bytes:
                self._rotate()
        except OSError as e:  # a full disk must not take the node down
            if not self._failing:
                self._failing = True
                print(f"log write failed (said once until it works again): {e}", file=sys.stderr)
        else:
            self._failing = False

    @staticmethod
    def _to_stderr(chunk: bytes) -> None:
        stream = sys.stderr
        if stream is None:
            return
        binary = getattr(stream, "buffer", None)
        if binary is not None:
            stream.flush()
            binary.write(chunk)
            binary.flush()
        else:  # a text-only stream (a test's StringIO): text it is
            stream.write(chunk.decode("utf-8", "replace"))
            stream.flush()

    def _rotate(self) -> None:
        """NAME.log -> NAME.log.1 -> ... -> NAME.log.<backups>; the oldest is dropped."""
        assert self._file is not None and self._path is not None
        self._file.close()
        self._file = None  # until reopened, events go to stderr rather than a closed file
        try:
            rotate_files(self._path, self._backups)
        finally:
            self._open()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


class RateLimited:
    """Events of one kind, at most `burst` per `period` seconds; the rest are counted, and
    the count is said in one line when the next period is let through (or at `report_ended`).
    For what an attacker or a broken environment can repeat thousands of times a second."""

    def __init__(
        self,
        log: Callable[[str], None],
        *,
        burst: int = 10,
        period: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._burst = burst
        self._period = period
        self._clock = clock
        self._windows: dict[str, list[float]] = {}  # kind -> [start, let through, suppressed]

    def event(self, kind: str, text: str) -> None:
        now = self._clock()
        window = self._windows.get(kind)
        if window is None or now - window[0] >= self._period:
            self._say_suppressed(kind)
            self._windows[kind] = [now, 1, 0]
            self._log(text)
        elif window[1] < self._burst:
            window[1] += 1
            self._log(text)
        else:
            window[2] += 1

    def report_ended(self) -> None:
        """Say the counts of every period that has ended."""
        now = self._clock()
        for kind, window in list(self._windows.items()):
            if now - window[0] >= self._period:
                self._say_suppressed(kind)
                del self._windows[kind]

    def _say_suppressed(self, kind: str) -> None:
        window = self._windows.get(kind)
        if window is not None and window[2]:
            self._log(f"{kind}_SUPPRESSED count={int(window[2])} seconds={self._period:g}")
            window[2] = 0
