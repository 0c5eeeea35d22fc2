"""Sample-and-hold timeline of heart-rate readings: the vectorised engine behind core.zones.

Readings are sorted by timestamp (stable); of readings sharing a timestamp the first in input
order is kept. Each reading holds from its timestamp until the next one's; an interval longer than
max_gap_ms counts entirely as no data. The last reading holds until end_ms when given (same gap
rule; 0 when end_ms <= its timestamp), else 0 ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from heartrate_serve.core.errors import InvalidRequest

# Largest bpm span binned densely (np.bincount); wider (garbage) input uses np.unique.
DENSE_RANGE = 1 << 16


def check_lows(lows: Sequence[int]) -> None:
    """Raises InvalidRequest unless lows are positive and strictly ascending."""
    if any(v <= 0 for v in lows) or any(b <= a for a, b in zip(lows, lows[1:], strict=False)):
        raise InvalidRequest(
            "custom_zone_lower_bpm", "custom_zone_lower_bpm must be positive, strictly ascending"
        )


@dataclass(frozen=True)
class Held:
    """The held time of a series, compacted per distinct bpm value (all the zone maths needs).

    values are ascending distinct bpm, ms[i] the counted milliseconds held at values[i].
    """

    values: NDArray[np.int64]
    ms: NDArray[np.int64]
    no_data_ms: int
    reading_count: int
    plain_mean_bpm: float  # mean of the deduplicated readings; only set when no time counts


def hold(ts_ms: ArrayLike, bpm: ArrayLike, max_gap_ms: int, end_ms: int | None) -> Held:
    """Sorts, deduplicates and applies sample-and-hold with the gap rule, vectorised."""
    t, b = _columns(ts_ms, bpm, max_gap_ms)
    held = _intervals(t, end_ms)
    if t.size > 1 and bool(np.any(held[:-1] < 0)):
        order = np.argsort(t, kind="stable")
        t, b = t[order], b[order]
        held = _intervals(t, end_ms)
    dup = np.flatnonzero(held[:-1] == 0) + 1  # same timestamp as the reading before
    _credit_first_of_duplicates(held, dup)
    gap = held > max_gap_ms
    no_data = int(held[gap].sum())
    held[gap] = 0
    values, ms = _histogram(b, held)
    count = int(b.size - dup.size)
    mean = 0.0
    if count and not ms.any():  # no counted time: the plain mean of the kept readings
        mean = float(int(b.sum(dtype=np.int64)) - int(b[dup].sum(dtype=np.int64))) / count
    return Held(values, ms, no_data, count, mean)


def _columns(
    ts_ms: ArrayLike, bpm: ArrayLike, max_gap_ms: int
) -> tuple[NDArray[np.int64], NDArray[np.signedinteger[Any]]]:
    """The input as 1-D int64 timestamps and int32/int64 bpm (no copy when already so)."""
    t = np.asarray(ts_ms, dtype=np.int64).ravel()
    b = np.asarray(bpm).ravel()
    if b.dtype not in (np.int32, np.int64):
        b = b.astype(np.int64)
    if t.shape != b.shape:
        raise InvalidRequest("timestamps", "timestamps must have one entry per bpm")
    if max_gap_ms < 0:
        raise InvalidRequest("max_gap_seconds", "max_gap_seconds must be >= 0")
    return t, b


def _intervals(t: NDArray[np.int64], end_ms: int | None) -> NDArray[np.int64]:
    """Time from each reading to the next (the last: to end_ms, never negative, or 0)."""
    held = np.empty(t.size, dtype=np.int64)
    np.subtract(t[1:], t[:-1], out=held[:-1])
    if t.size:
        held[-1] = max(end_ms - int(t[-1]), 0) if end_ms is not None else 0
    return held


def _credit_first_of_duplicates(held: NDArray[np.int64], dup: NDArray[np.intp]) -> None:
    """Moves each duplicate run's interval (held by its last reading) to its first reading.

    In a run f..l of equal timestamps, readings f..l-1 hold 0 ms and l holds the interval to the
    next timestamp; the first reading in input order (f, after a stable sort) must get it.
    """
    if dup.size == 0:
        return
    breaks = dup[1:] != dup[:-1] + 1
    firsts = dup[np.concatenate(([True], breaks))] - 1
    lasts = dup[np.concatenate((breaks, [True]))]
    held[firsts] = held[lasts]
    held[lasts] = 0


def _histogram(
    bpm: NDArray[np.signedinteger[Any]], held: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The distinct bpm values holding time, ascending, and the ms summed per value."""
    if bpm.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo, hi = int(bpm.min()), int(bpm.max())
    if lo >= 0 and hi <= DENSE_RANGE:
        sums = np.bincount(bpm, weights=held, minlength=hi + 1)
        values = np.arange(hi + 1, dtype=np.int64)
    elif hi - lo <= DENSE_RANGE:
        sums = np.bincount(bpm - lo, weights=held, minlength=hi - lo + 1)
        values = np.arange(lo, hi + 1, dtype=np.int64)
    else:
        values, inverse = np.unique(bpm.astype(np.int64), return_inverse=True)
        sums = np.bincount(inverse, weights=held, minlength=values.size)
    ms = np.rint(sums).astype(np.int64)  # float sums of int ms below 2**53 are exact
    nonzero = ms > 0
    return values[nonzero], ms[nonzero]


def bin_ms(h: Held, lows: Sequence[int]) -> tuple[tuple[int, ...], int]:
    """Held milliseconds per zone of lows, and below the first bound."""
    idx = np.searchsorted(np.asarray(lows, dtype=np.int64), h.values, side="right")
    sums = np.bincount(idx, weights=h.ms, minlength=len(lows) + 1)
    ms = np.rint(sums).astype(np.int64).tolist()
    return tuple(ms[1:]), ms[0]


@dataclass(frozen=True)
class ZoneTimes:
    """Milliseconds per zone, below the zones, without data; counted total; time-weighted mean."""

    zone_ms: tuple[int, ...] = ()
    below_ms: int = 0
    no_data_ms: int = 0
    total_ms: int = 0
    average_bpm: float = 0.0
    reading_count: int = 0


def zone_times(h: Held, lows: Sequence[int]) -> ZoneTimes:
    """ZoneTimes of held readings."""
    zone_ms, below = bin_ms(h, lows)
    total = int(h.ms.sum())
    average = float(np.dot(h.values, h.ms)) / total if total > 0 else h.plain_mean_bpm
    return ZoneTimes(zone_ms, below, h.no_data_ms, total, average, h.reading_count)
