"""`herdctl bench` on a topology: the nodes by name, live progress on stderr, and errors that
name the node behind an address."""

from __future__ import annotations

import sys

from herdctl.loadgen.load import run_load
from herdctl.loadgen.loop import run_sync
from herdctl.loadgen.propagate import run_propagate
from herdctl.loadgen.report import progress_bar
from herdctl.loadgen.result import LOAD_MODES, BenchError, LoadResult, Mode
from node.config import HerdConfig

WARMUP = 0.5  # seconds of load before the measured window


def bench_herd(
    config: HerdConfig,
    *,
    mode: Mode,
    conns: int,
    pipeline: int,
    duration: float,
    rate: float | None,
    targets: list[str] | None,
    source: str,
    dest: str,
    samples: int,
    loop: str,
) -> tuple[LoadResult, dict[str, str]]:
    """Run one benchmark on the named nodes; its result, and each address's node name (for
    `summary`). Targets default to Welsh (propagate: the `source` node). A bar shows the
    progress while stderr is a terminal. BenchError names the node of an address."""
    default = [source] if mode == Mode.PROPAGATE else ["Welsh"]
    specs = [config.node(name) for name in dict.fromkeys(targets or default)]
    names = {f"{spec.host}:{spec.port}": spec.name for spec in specs}
    addresses = [(spec.host, spec.port) for spec in specs]
    live = sys.stderr.isatty()
    unit = "samples" if mode == Mode.PROPAGATE else "replies"
    total = float(samples) if mode == Mode.PROPAGATE else duration + WARMUP

    def show(elapsed: float, done: int) -> None:
        sys.stderr.write(f"\r\x1b[K{progress_bar(elapsed, total, done, unit)}")
        sys.stderr.flush()

    if mode in LOAD_MODES:
        run = run_load(
            addresses,
            mode=mode,
            conns=conns,
            pipeline=pipeline,
            duration=duration,
            rate=rate,
            warmup=WARMUP,
            progress=show if live else None,
        )
    else:
        src, dst = config.node(source), config.node(dest)
        names.update({f"{s.host}:{s.port}": s.name for s in (src, dst)})
        run = run_propagate(
            (src.host, src.port),
            (dst.host, dst.port),
            samples=samples,
            background=addresses if targets or rate else None,
            background_rate=rate,
            progress=show if live else None,
        )
    try:
        return run_sync(run, loop), names
    except BenchError as e:
        message = str(e)
        for where, name in names.items():  # "cannot reach 127.0.0.1:12003: ..." names Welsh
            message = message.replace(where, f"{name} at {where}")
        raise BenchError(message) from None
    finally:
        if live:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
