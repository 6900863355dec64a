"""`herdctl bench`'s engine: an asyncio load generator and meter for a running herd.

`run_load` drives IAMAT and WHATSAT traffic over many pipelined connections, closed loop (each
connection keeps `pipeline` requests in flight) or open loop (`rate` requests per second on a
clock, whatever the replies, so latency includes queueing). `run_propagate` times how long an
IAMAT at one node takes to become visible to WHATSAT at another. Both return a LoadResult.

It is built not to be the bottleneck, and reports its own CPU use to show it: request bytes are
built ahead in blocks, each refill of a connection is one write, replies are framed with
bytes.count/find, and nothing per request creates a task or formats a string. It runs on the
caller's event loop; `loop_factory` picks uvloop when it is installed.

The engine is the `herdctl.loadgen` package, one concept per module; this module is its public
face: the names the CLI, bench/ and the tests use.
"""

from herdctl.loadgen.load import run_load
from herdctl.loadgen.loop import loop_factory, run_sync
from herdctl.loadgen.propagate import POLL_DEPTH, run_propagate
from herdctl.loadgen.report import progress_bar, summary
from herdctl.loadgen.result import LOAD_MODES, BenchError, LoadResult, Mode

__all__ = [
    "LOAD_MODES",
    "POLL_DEPTH",
    "BenchError",
    "LoadResult",
    "Mode",
    "loop_factory",
    "progress_bar",
    "run_load",
    "run_propagate",
    "run_sync",
    "summary",
]
