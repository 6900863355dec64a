"""What a run is asked to do and what it gives back: its Mode, a LoadResult or a BenchError."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

Address = tuple[str, int]


class Mode(StrEnum):
    IAMAT = "iamat"
    WHATSAT = "whatsat"
    MIXED = "mixed"
    PROPAGATE = "propagate"


LOAD_MODES = frozenset({Mode.IAMAT, Mode.WHATSAT, Mode.MIXED})


class BenchError(Exception):
    """The run could not go on; str() says why. `reason` is set when `address` was unreachable."""

    def __init__(
        self, message: str, address: Address | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.address = address
        self.reason = reason


@dataclass
class LoadResult:
    """One run's figures: latencies in ms, throughput in replies/s, CPU in % of one core."""

    mode: str
    requests: int
    replies: int
    errors: int
    duration_s: float
    throughput: float  # replies per second
    latency_ms: dict[str, float]  # p50, p90, p99, max
    cpu_percent: float  # this generator's own CPU use over the measured window
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; a figure with no sample (NaN) becomes None."""
        plain: dict[str, Any] = _json_safe(asdict(self))
        return plain


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
