"""A deliberately simple pure-Python reference for time in zones and TRIMP (loops, no numpy).

Tests and the core benchmark compare core.zones against it; keep it obviously correct, not fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

BANISTER = {0: (0.64, 1.92), 1: (0.64, 1.92), 2: (0.86, 1.67)}
FIVE_ZONE_PCT = (50, 60, 70, 80, 90)


def held_readings(
    ts_ms: Sequence[int], bpm: Sequence[int], max_gap_ms: int, end_ms: int | None
) -> tuple[list[tuple[int, int]], int]:
    """(bpm, counted ms) per deduplicated reading in time order, and the no-data ms."""
    ordered = sorted(zip(ts_ms, bpm, strict=True), key=lambda p: p[0])  # sorted() is stable
    readings: list[tuple[int, int]] = []
    for t, b in ordered:
        if readings and readings[-1][0] == t:
            continue  # a duplicate timestamp: the first reading in input order wins
        readings.append((t, b))
    held: list[tuple[int, int]] = []
    no_data = 0
    for i, (t, b) in enumerate(readings):
        if i + 1 < len(readings):
            duration = readings[i + 1][0] - t
        elif end_ms is not None:
            duration = max(end_ms - t, 0)
        else:
            duration = 0
        if duration > max_gap_ms:
            no_data += duration
            duration = 0
        held.append((b, duration))
    return held, no_data


def reference_time_in_zones(
    ts_ms: Sequence[int],
    bpm: Sequence[int],
    lows: Sequence[int],
    max_gap_ms: int,
    end_ms: int | None,
) -> dict[str, Any]:
    """The fields of core.zones.ZoneTimes, computed one reading at a time."""
    held, no_data = held_readings(ts_ms, bpm, max_gap_ms, end_ms)
    zone_ms = [0] * len(lows)
    below = 0
    for b, duration in held:
        zone = 0
        for low in lows:
            if b >= low:
                zone += 1
        if zone == 0:
            below += duration
        else:
            zone_ms[zone - 1] += duration
    total = sum(d for _, d in held)
    if total > 0:
        average = sum(b * d for b, d in held) / total
    elif held:
        average = sum(b for b, _ in held) / len(held)
    else:
        average = 0.0
    return {
        "zone_ms": tuple(zone_ms),
        "below_ms": below,
        "no_data_ms": no_data,
        "total_ms": total,
        "average_bpm": average,
        "reading_count": len(held),
    }


def reference_banister(
    ts_ms: Sequence[int],
    bpm: Sequence[int],
    hr_max: float,
    resting_bpm: int,
    sex: int,
    max_gap_ms: int,
    end_ms: int | None,
) -> float:
    """Banister TRIMP: minutes * HRr * a * exp(b * HRr) summed over counted intervals."""
    a, b = BANISTER[sex]
    trimp = 0.0
    for heart_rate, duration in held_readings(ts_ms, bpm, max_gap_ms, end_ms)[0]:
        hrr = min(max((heart_rate - resting_bpm) / (hr_max - resting_bpm), 0.0), 1.0)
        trimp += duration / 60_000 * hrr * a * math.exp(b * hrr)
    return trimp


def reference_edwards(
    ts_ms: Sequence[int], bpm: Sequence[int], hr_max: int, max_gap_ms: int, end_ms: int | None
) -> float:
    """Edwards TRIMP: minutes in %HRmax zone i (50/60/70/80/90 %) times i."""
    lows = [math.ceil(Fraction(hr_max) * Fraction(p, 100)) for p in FIVE_ZONE_PCT]
    zone_ms: tuple[int, ...] = reference_time_in_zones(ts_ms, bpm, lows, max_gap_ms, end_ms)[
        "zone_ms"
    ]
    return sum((i + 1) * ms for i, ms in enumerate(zone_ms)) / 60_000
