"""`herdctl bench`'s engine, one concept per module; its public names are in `herdctl.bench`.

result      what a run is asked for and gives back: Mode, LoadResult, BenchError
meter       how a run is measured: the clock, percentiles, the generator's CPU, progress ticks
loop        the event loop a run is on: uvloop when installed, else plain asyncio
connection  reaching a node; one load connection: request bytes built ahead, replies framed
load        many connections, closed or open loop, measured in a window: run_load
propagate   an IAMAT at one node until WHATSAT at another sees it: run_propagate
report      for the CLI: the progress bar and the summary table
command     `herdctl bench` on a topology: nodes by name, the bar on stderr: bench_herd
"""
