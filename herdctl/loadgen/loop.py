"""The event loop a run is on: uvloop when it is installed (or asked for), else plain asyncio."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from herdctl.loadgen.result import BenchError

T = TypeVar("T")


def loop_factory(choice: str = "auto") -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """("uvloop", its factory) for "uvloop", or "auto" when importable; else plain asyncio."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"loop must be auto, uvloop or asyncio, not {choice!r}")
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise BenchError("uvloop is not installed (pip install 'herd[fast]')") from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def run_sync(main: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """Run a coroutine (run_load, run_propagate) to its end on a new uvloop or asyncio loop."""
    try:
        _, factory = loop_factory(loop)
    except BaseException:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name() -> str:
    """The running event loop's library: "uvloop" or "asyncio"."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
