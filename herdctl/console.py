"""The CLI's edge: its exit statuses, the error a user can cause, and its two streams.

Every mistake a user can make ends as one line on stderr and a non-zero exit: 2 for a bad
topology or argument, 1 for everything else, 130 when interrupted (`exit_status`). 3 is not
an error of herdctl's: `status` found a node not running, or `send` a line the node refused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TextIO

from herdctl.control import ControlError
from node.config import ConfigError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3  # `status`: a node is not running (supervisorctl's, and LSB's, 3)
EXIT_REFUSED = 3  # `send`: the node answered `? `, the line is invalid
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake or failure to report as one message and an exit status, not a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED, details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def colour(stream: TextIO) -> bool:
    """Whether to colour what goes to `stream`: a terminal's only, and never when $NO_COLOR
    is set to anything (no-color.org) or the terminal is dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except ValueError:  # closed
        return False


def out(text: str) -> None:
    """A line of the command's output, at once (a pipe or a terminal sees it as it happens)."""
    print(text, flush=True)


def err(text: str) -> None:
    """A line on stderr: errors, warnings, notes that are not the command's output."""
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Run the block to its end though Ctrl-C comes, then raise the KeyboardInterrupt.

    For a request that must not be cut in half (`up` between starting the supervisor and
    asking it to start the nodes); the block must be bounded. A second Ctrl-C interrupts it.
    """
    pressed = False

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal pressed
        if pressed:
            raise KeyboardInterrupt
        pressed = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


def exit_status(command: Callable[[], object]) -> int:
    """Run `command` (the typer app); turn each error a user can cause into one line on
    stderr, and return the exit status."""
    try:
        command()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_FAILED)
    except UserError as e:
        err(f"herdctl: {e}")
        if e.details:
            err(e.details)
        return e.code
    except ConfigError as e:
        err(f"herdctl: {e}")
        return EXIT_USAGE
    except ControlError as e:
        err(f"herdctl: {e}")
        return EXIT_FAILED
    except BrokenPipeError:  # `herdctl tail --all | head`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        err(f"herdctl: {e.strerror or e}{where}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0
