"""A disk that fails on demand: the `write` a Journal is given, for fault-injection tests."""

from __future__ import annotations

import errno
import os


class FlakyDisk:
    """Writes through to the real file until told to fail.

    `fail("ENOSPC")` or `fail("EIO")` makes every write raise that error; `fail("short")`
    lets the next write land only half its bytes and then raises ENOSPC, as a disk that
    fills up mid-write does. `heal()` ends the fault; `fail(mode, times=n)` ends it by
    itself after n failed calls.
    """

    def __init__(self) -> None:
        self.mode: str | None = None
        self.calls = 0
        self.failures = 0
        self._heal_at: int | None = None  # `failures` at which the fault ends

    def fail(self, mode: str, *, times: int | None = None) -> None:
        self.mode = mode
        self._heal_at = None if times is None else self.failures + times

    def heal(self) -> None:
        self.mode = None

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        self.calls += 1
        mode = self.mode
        if mode is None:
            return os.write(fd, data)
        self.failures += 1
        if self.failures == self._heal_at:
            self.mode = None
        if mode == "short" and len(data) > 1:
            self.mode = "ENOSPC"  # the rest finds the disk full
            return os.write(fd, bytes(data[: len(data) // 2]))
        code = errno.EIO if mode == "EIO" else errno.ENOSPC
        raise OSError(code, os.strerror(code))
