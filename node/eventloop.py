"""The event loop a process runs on: uvloop when it is installed (the `fast` extra), else
plain asyncio. Nodes, the load generator and the bench's minimal node all choose here."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

LOOPS = ("auto", "uvloop", "asyncio")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
_MISSING = "uvloop is not installed (pip install 'herd[fast]')"


class LoopUnavailable(Exception):
    """uvloop was asked for by name and is not installed."""


def loop_factory(choice: str = "auto") -> tuple[str, LoopFactory]:
    """("uvloop", its factory) for "uvloop", or for "auto" when importable; else asyncio's."""
    if choice not in LOOPS:
        raise ValueError(f"loop must be auto, uvloop or asyncio, not {choice!r}")
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise LoopUnavailable(_MISSING) from None
        else:
            factory: LoopFactory = uvloop.new_event_loop
            return "uvloop", factory
    return "asyncio", asyncio.new_event_loop


def loop_name() -> str:
    """The running event loop's library: "uvloop" or "asyncio"."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
