"""Medians of the rounds -> the table `make bench` prints, each figure with its target."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from figures import Measurement

OURS, MINIMAL, NODEJS = "ours", "minimal", "nodejs"  # a measurement's system: the columns
MINIMAL_HERD = "minimal_herd"  # run.py's name for the system behind propagation's "minimal"


@dataclass
class Row:
    """One line of the table. `verdict` is PASS, FAIL, `-` (informative) or `n/a`."""

    figure: str
    ours: str = ""
    minimal: str = ""
    nodejs: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = "-"
    value: float | None = None  # the number the verdict is about, for results.json


def median_of(measurements: list[Measurement], figure: str, system: str, field: str) -> float:
    values = [m.get(field) for m in measurements if m.figure == figure and m.system == system]
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _num(value: float, fmt: str = "{:,.0f}") -> str:
    return "" if math.isnan(value) else fmt.format(value)


def _ms(value: float) -> str:
    """Milliseconds; infinite is a quantile whose samples timed out (see Measurement.get)."""
    return "timed out" if math.isinf(value) else _num(value, "{:.3f} ms")


def _verdict(value: float, ok: Callable[[float], bool]) -> str:
    if math.isnan(value):
        return "n/a"
    return "PASS" if ok(value) else "FAIL"


def _below(limit: float) -> Callable[[float], bool]:
    return lambda v: v < limit


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda v: v <= limit


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else math.nan


def per_round(ms: list[Measurement], figure: str, field: str) -> list[float]:
    """Ours / Node.js in each round (the k-th measurement of each, in the order taken):
    a median of the rounds can hide one round that falls behind."""
    ours = [m.get(field) for m in ms if m.figure == figure and m.system == OURS]
    nodejs = [m.get(field) for m in ms if m.figure == figure and m.system == NODEJS]
    return [_ratio(a, b) for a, b in zip(ours, nodejs, strict=False)]


def _every_round(
    figure: str,
    ratios: list[float],
    target: str,
    at_least: float | None = None,
    at_most: float | None = None,
) -> Row:
    """A row of each round's ratio, judged by the worst of them."""
    known = [r for r in ratios if not math.isnan(r)]
    worst = (min if at_least is not None else max)(known) if known else math.nan

    def ok(v: float) -> bool:
        return (at_least is None or v >= at_least) and (at_most is None or v <= at_most)

    return Row(
        figure,
        ratio=" ".join(f"{r:.2f}" for r in ratios) or "",
        target=target,
        verdict=_verdict(worst, ok) if len(known) == len(ratios) else "n/a",
        value=worst,
    )


def throughput_rows(ms: list[Measurement]) -> list[Row]:
    def med(system: str) -> float:
        return median_of(ms, "ingest", system, "throughput")

    ours, minimal, nodejs = med(OURS), med(MINIMAL), med(NODEJS)
    vs_min, vs_node = _ratio(ours, minimal), _ratio(ours, nodejs)
    return [
        Row(
            "ingest 32x64, replies/s",
            _num(ours),
            _num(minimal),
            _num(nodejs),
            "",
            ">= 50,000",
            _verdict(ours, lambda v: v >= 50_000),
            ours,
        ),
        Row(
            "ingest: ours / minimal",
            ratio=_num(vs_min, "{:.1%}"),
            target=">= 15%",
            verdict=_verdict(vs_min, lambda v: v >= 0.15),
            value=vs_min,
        ),
        Row(
            "ingest: ours / Node.js",
            ratio=_num(vs_node, "{:.2f}x"),
            target=">= 1.0 (aim)",
            verdict=_verdict(vs_node, lambda v: v >= 1.0),
            value=vs_node,
        ),
        _every_round(
            "ingest: ours / Node.js, each round",
            per_round(ms, "ingest", "throughput"),
            ">= 1.25 in every round",
            at_least=1.25,
        ),
    ]


def latency_rows(ms: list[Measurement]) -> list[Row]:
    def med(system: str, q: str) -> float:
        return median_of(ms, "latency", system, f"latency_ms.{q}")

    rows = []
    for q in ("p50", "p99"):
        ours, minimal, nodejs = med(OURS, q), med(MINIMAL, q), med(NODEJS, q)
        rows.append(Row(f"latency 8x1, {q}", _ms(ours), _ms(minimal), _ms(nodejs), value=ours))
    ours, minimal, nodejs = med(OURS, "p50"), med(MINIMAL, "p50"), med(NODEJS, "p50")
    vs_min, vs_node = _ratio(ours, minimal), _ratio(ours, nodejs)
    rows.append(
        Row(
            "latency p50: ours / minimal",
            ratio=_num(vs_min, "{:.2f}x"),
            target="<= 4x",
            verdict=_verdict(vs_min, lambda v: v <= 4.0),
            value=vs_min,
        )
    )
    rows.append(
        Row(
            "latency p50: ours / Node.js",
            ratio=_num(vs_node, "{:.2f}x"),
            target="<= 1.0 (aim)",
            verdict=_verdict(vs_node, lambda v: v <= 1.0),
            value=vs_node,
        )
    )
    rows.append(
        _every_round(
            "latency p50: ours / Node.js, each round",
            per_round(ms, "latency", "latency_ms.p50"),
            "<= 0.8 in every round",
            at_most=0.8,
        )
    )
    return rows


def propagation_rows(ms: list[Measurement], background_rate: int) -> list[Row]:
    def med(figure: str, system: str, q: str) -> float:
        return median_of(ms, figure, system, f"latency_ms.{q}")

    specs = [
        ("propagate_idle", "p50", "propagation W->H idle, p50", 1.0),
        ("propagate_idle", "p99", "propagation W->H idle, p99", 4.0),
        ("propagate_loaded", "p50", f"propagation at {background_rate:,}/s, p50", math.nan),
        ("propagate_loaded", "p99", f"propagation at {background_rate:,}/s, p99", 10.0),
    ]
    rows = []
    for figure, q, label, limit in specs:
        ours, minimal, nodejs = (med(figure, k, q) for k in (OURS, MINIMAL, NODEJS))
        row = Row(
            label, _ms(ours), _ms(minimal), _ms(nodejs), _num(_ratio(ours, nodejs), "{:.2f}x")
        )
        if not math.isnan(limit):
            row.target, row.verdict, row.value = (
                f"< {limit:g} ms",
                _verdict(ours, _below(limit)),
                ours,
            )
        rows.append(row)
    for figure, q, label in [
        ("propagate_idle", "p50", "propagation idle p50: ours / minimal herd"),
        (
            "propagate_loaded",
            "p50",
            f"propagation at {background_rate:,}/s p50: ours / minimal herd",
        ),
    ]:
        ratio = _ratio(med(figure, OURS, q), med(figure, MINIMAL, q))
        rows.append(Row(label, ratio=_num(ratio, "{:.2f}x"), value=ratio))
    idle_rounds = per_round(ms, "propagate_idle", "latency_ms.p50")
    if idle_rounds:  # not judged: the issue asks it of the median; shown for the spread
        rows.append(
            Row(
                "propagation idle p50: ours / Node.js, each round",
                ratio=" ".join(_num(r, "{:.2f}") or "-" for r in idle_rounds),
            )
        )
    against_nodejs = [  # the propagation issue's targets, as ratios to the Node.js herd
        ("propagate_idle", "p50", "propagation idle p50: ours / Node.js", 0.8),
        ("propagate_idle", "p99", "propagation idle p99: ours / Node.js", 0.8),
        (
            "propagate_loaded",
            "p50",
            f"propagation at {background_rate:,}/s p50: ours / Node.js",
            1.0,
        ),
    ]
    for figure, q, label, most in against_nodejs:
        ratio = _ratio(med(figure, OURS, q), med(figure, NODEJS, q))
        rows.append(
            Row(
                label,
                ratio=_num(ratio, "{:.2f}x"),
                target=f"<= {most:g}x",
                verdict=_verdict(ratio, _at_most(most)),
                value=ratio,
            )
        )
    return rows


def scale_rows(
    million: dict[str, Any] | None, idle: dict[str, Any] | None, quick: bool
) -> list[Row]:
    """The scale figures; in a --quick run they are measured smaller and not judged."""
    rows: list[Row] = []

    def judged(value: float, ok: Callable[[float], bool]) -> str:
        return "n/a" if quick else _verdict(value, ok)

    if million is not None:
        n = f"{million['clients']:,}"
        rss, replay, catch = million["rss_mb"], million["replay_s"], million["catch_up_s"]
        rows += [
            Row(
                f"{n} clients: RSS",
                f"{rss:.0f} MB",
                target="< 400 MB",
                verdict=judged(rss, lambda v: v < 400),
                value=rss,
            ),
            Row(
                f"{n} clients: journal replay",
                f"{replay:.2f} s",
                target="< 10 s",
                verdict=judged(replay, lambda v: v < 10),
                value=replay,
            ),
            Row(
                f"{n} clients: fresh neighbour catch-up",
                f"{catch:.2f} s",
                target="< 20 s",
                verdict=judged(catch, lambda v: v < 20),
                value=catch,
            ),
        ]
    if idle is not None:
        change = idle["change"]
        rows.append(
            Row(
                f"{idle['idle_connections']:,} idle conns: 8x1 p99 change",
                f"{idle['p99_without_ms']:.3f} -> {idle['p99_with_ms']:.3f} ms",
                ratio=_num(change, "{:+.0%}"),
                target="< +20%",
                verdict=judged(change, lambda v: v < 0.20),
                value=change,
            )
        )
    return rows


COLUMNS = ("figure", "ours", "minimal", "Node.js", "ratio", "target", "verdict")


def render(rows: list[Row]) -> str:
    cells = [COLUMNS] + [
        (r.figure, r.ours, r.minimal, r.nodejs, r.ratio, r.target, r.verdict) for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = []
    for k, c in enumerate(cells):
        parts = [c[0].ljust(widths[0])] + [c[i].rjust(widths[i]) for i in range(1, len(c))]
        lines.append("  ".join(parts).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
