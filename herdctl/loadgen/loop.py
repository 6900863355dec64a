"""The event loop a run is on: uvloop when it is installed (or asked for), else plain asyncio.

`loop_name` is re-exported for the load and propagation runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from herdctl.loadgen.result import BenchError
from node.eventloop import LoopUnavailable, loop_name
from node.eventloop import loop_factory as choose_loop

T = TypeVar("T")


def loop_factory(choice: str = "auto") -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """`node.eventloop.loop_factory`, with a missing uvloop as a BenchError."""
    try:
        return choose_loop(choice)
    except LoopUnavailable as e:
        raise BenchError(str(e)) from None


def run_sync(main: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """Run a coroutine (run_load, run_propagate) to its end on a new uvloop or asyncio loop."""
    try:
        _, factory = loop_factory(loop)
    except BaseException:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


__all__ = ["loop_factory", "loop_name", "run_sync"]
