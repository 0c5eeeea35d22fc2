"""Pure helpers shared by the load generator, the benchmark and the locust runner: scenario specs,
percentiles, latency summaries and the markdown table. No I/O, no gRPC."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Scenario kinds of the load generator, with what one "message" counts and the default in-flight
# number (streams for the stream kinds).
SCENARIO_KINDS: dict[str, tuple[str, int]] = {
    "unary": ("msg/s", 16),  # SubmitHeartRate, N calls in flight
    "stream": ("msg/s", 16),  # N bidi streams, each sends as soon as its previous ack returned
    "streams1hz": ("msg/s", 2000),  # N bidi streams at 1 reading/s each
    "batch": ("readings/s", 4),  # SubmitHeartRateBatch of 1 000 readings, N calls in flight
    "status": ("calls/s", 16),  # GetHeartRateStatus, N calls in flight
    "zones": ("readings/s", 2),  # CalculateExerciseZones over 100 k columnar readings
    "zones-stored": ("readings/s", 2),  # CalculateExerciseZones over 100 k stored readings
}


@dataclass(frozen=True)
class ScenarioSpec:
    """One load-generator scenario: a kind and its concurrency (calls in flight or streams)."""

    kind: str
    concurrency: int

    @property
    def name(self) -> str:
        """The spec as written on the command line, e.g. "unary:16"."""
        return f"{self.kind}:{self.concurrency}"

    @property
    def unit(self) -> str:
        """What the throughput of this scenario counts per second."""
        return SCENARIO_KINDS[self.kind][0]


def parse_scenario(text: str) -> ScenarioSpec:
    """Parses "kind[:concurrency]" (e.g. "unary:16", "batch"); raises ValueError when bad."""
    kind, _, count = text.strip().partition(":")
    if kind not in SCENARIO_KINDS:
        raise ValueError(f"unknown scenario kind {kind!r}; one of {', '.join(SCENARIO_KINDS)}")
    if not count:
        return ScenarioSpec(kind, SCENARIO_KINDS[kind][1])
    try:
        n = int(count)
    except ValueError:
        raise ValueError(f"scenario concurrency must be an integer, got {count!r}") from None
    if not 1 <= n <= 100_000:
        raise ValueError(f"scenario concurrency must be in [1, 100000], got {n}")
    return ScenarioSpec(kind, n)


def parse_scenarios(text: str) -> list[ScenarioSpec]:
    """Parses a comma-separated list of scenario specs."""
    return [parse_scenario(part) for part in text.split(",") if part.strip()]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks (numpy's
    default); NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass(frozen=True)
class LatencySummary:
    """Latency statistics in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def summarize_latencies(latencies_ms: Iterable[float]) -> LatencySummary:
    """p50/p90/p99/max/mean of latencies in ms (NaN fields when empty)."""
    data = sorted(latencies_ms)
    if not data:
        nan = math.nan
        return LatencySummary(0, nan, nan, nan, nan, nan)
    return LatencySummary(
        count=len(data),
        p50_ms=percentile(data, 50),
        p90_ms=percentile(data, 90),
        p99_ms=percentile(data, 99),
        max_ms=data[-1],
        mean_ms=sum(data) / len(data),
    )


def ratio(service: float, baseline: float) -> float:
    """service / baseline; NaN when the baseline is zero or unknown."""
    if not baseline or math.isnan(baseline) or math.isnan(service):
        return math.nan
    return service / baseline


def fmt_num(value: float | None, digits: int = 0) -> str:
    """A number for the table: thousands separated by a thin space-free comma; '-' for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table; the first column left-aligned, the others right."""
    rows = [list(r) for r in rows]
    for r in rows:
        if len(r) != len(headers):
            raise ValueError(f"row has {len(r)} cells, expected {len(headers)}: {r}")
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(parts) + " |"

    sep = "|" + "|".join(
        ":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return "\n".join([line(headers), sep + "|", *(line(r) for r in rows)])


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"
