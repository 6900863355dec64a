"""For the CLI: the progress bar while a run goes, the human summary when it is done."""

from __future__ import annotations

import math
from collections.abc import Mapping

from herdctl.loadgen.result import LoadResult, Mode
from herdctl.render import table


def progress_bar(elapsed: float, total: float, done: int, unit: str, width: int = 30) -> str:
    """A one-line bar: share of `total` (seconds, or samples when unit is "samples")."""
    share = min(1.0, (done if unit == "samples" else elapsed) / total) if total > 0 else 1.0
    filled = int(share * width)
    where = f"{done:,}/{int(total):,}" if unit == "samples" else f"{elapsed:.1f}/{total:.1f}s"
    return f"[{'#' * filled}{'.' * (width - filled)}] {where}  {done:,} {unit}"


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def summary(result: LoadResult, names: Mapping[str, str] | None = None) -> str:
    """The human report: what ran, then one table row of figures, then any warnings."""
    names = names or {}
    x = result.extra

    def who(address: str) -> str:
        return f"{names[address]} ({address})" if address in names else address

    if result.mode == Mode.PROPAGATE:
        head = (
            f"propagate {who(x['from'])} -> {who(x['to'])}: {result.requests} samples, "
            f"polled every {x['poll_interval_us']:.0f} us ({x['poll_depth']} WHATSATs in flight)"
            f", {x['loop']}"
        )
        bg = x["background"]
        if bg is not None:
            asked = "closed loop" if bg["rate"] is None else f"{bg['rate']:,.0f}/s asked"
            head += (
                f"\nbackground IAMAT into {', '.join(map(who, bg['targets']))}: {asked}, "
                f"{bg['throughput']:,.0f} replies/s, p99 {_ms(bg['latency_ms']['p99'])} ms"
                f", {bg['errors']:,} errors"
            )
        header = ["SAMPLES", "SEEN", "ERRORS"]
    else:
        how = (
            f"closed loop, {x['conns']} conns x {x['pipeline']} in flight"
            if x["closed_loop"]
            else f"open loop at {x['rate']:,.0f}/s over {x['conns']} conns"
        )
        head = (
            f"{result.mode} -> {', '.join(map(who, x['targets']))}: {how}, "
            f"{result.duration_s:.1f}s after {x['warmup_s']:.1f}s warm-up, {x['loop']}"
        )
        header = ["REQUESTS", "REPLIES", "ERRORS", "REPLIES/S"]
    lat = result.latency_ms
    header += ["P50(ms)", "P90(ms)", "P99(ms)", "MAX(ms)", "GEN CPU%"]
    row = [f"{result.requests:,}", f"{result.replies:,}", f"{result.errors:,}"]
    if result.mode != Mode.PROPAGATE:
        row.append(f"{result.throughput:,.0f}")
    row += [*(_ms(lat[k]) for k in ("p50", "p90", "p99", "max")), f"{result.cpu_percent:.1f}"]
    lines = [head, table(header, [row], frozenset(header))]
    if x.get("connections_lost"):
        lines.append(
            f"note: the node(s) closed {x['connections_lost']} of {x['conns']} connections during"
            f" the run; the {x['unanswered']:,} requests they left unanswered count as errors"
        )
    if x.get("stopped_early"):
        lines.append(f"stopped early: {x['stopped_early']}")
    if result.cpu_percent > 90:
        lines.append(
            f"note: the load generator used {result.cpu_percent:.0f}% of a core;"
            " it may have been the bottleneck"
        )
    return "\n".join(lines)
