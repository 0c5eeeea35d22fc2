"""Heart-rate zones, time in zones and TRIMP, vectorised; times are Unix milliseconds.

The sample-and-hold and gap rules are in core.sample_hold. Zone bounds are integer bpm, half-open
[lower, next lower), the top zone open-ended; below the first bound is "below zones".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from heartrate_serve.core.constants import (
    BANISTER_COEFFICIENTS,
    DEFAULT_MAX_GAP_S,
    DEFAULT_RESTING_BPM,
    FIVE_ZONE_LOW_PCT,
    HR_MAX_COEFFICIENTS,
    LEGACY_ZONE_EDGES_PCT,
    ORIGINAL_AGE_NOT_POSITIVE,
    HrMaxFormula,
    Sex,
    ZoneModel,
)
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.sample_hold import Held, ZoneTimes, bin_ms, check_lows, hold, zone_times

MS_PER_MINUTE = 60_000
MAX_AGE = 120
DEFAULT_MAX_GAP_MS = DEFAULT_MAX_GAP_S * 1000
HrMax = Fraction | int | float
_E = TypeVar("_E", HrMaxFormula, ZoneModel, Sex)
__all__ = [
    "SessionAnalysis", "ZoneTime", "ZoneTimes", "analyse_session", "banister_trimp",
    "edwards_trimp", "hr_max", "time_in_zones", "zone_lower_bounds",
]  # fmt: skip


def hr_max(age: int, formula: HrMaxFormula | int = HrMaxFormula.FOX) -> Fraction:
    """Estimates HRmax exactly from age.

    Args:
        age: Years, 1-120.
        formula: An HrMaxFormula (0, unspecified, means FOX).

    Returns:
        intercept - slope * age, as an exact Fraction.

    Raises:
        InvalidRequest: field "age" outside 1-120; "hr_max_formula" for an unknown formula.
    """
    rule = f"age must be 1-{MAX_AGE} years (or give max_hr_bpm)"
    if age <= 0:  # the replaced service's case and text
        raise InvalidRequest("age", ORIGINAL_AGE_NOT_POSITIVE, detail=rule, exact=True)
    if age > MAX_AGE:
        raise InvalidRequest("age", rule)
    intercept, slope = HR_MAX_COEFFICIENTS[_enum(HrMaxFormula, formula or 1, "hr_max_formula")]
    return Fraction(intercept - slope * age)


def _enum(enum: type[_E], value: int, field: str) -> _E:
    """enum(value), or InvalidRequest naming field."""
    try:
        return enum(value)
    except ValueError:
        raise InvalidRequest(field, f"{field} {value} is not a known value") from None


def zone_lower_bounds(
    model: ZoneModel | int, hr_max: HrMax, resting_bpm: int, custom: Sequence[int] = ()
) -> tuple[int, ...]:
    """Integer lower bounds of a zone model's zones (the exact bound rounded up).

    Args:
        model: PERCENT_HRMAX (pct of HRmax), HEART_RATE_RESERVE (rest + pct of HRmax - rest),
            or CUSTOM; 0 means PERCENT_HRMAX.
        hr_max: HRmax in bpm, exact.
        resting_bpm: Resting heart rate (heart-rate reserve only).
        custom: The CUSTOM model's bounds, strictly ascending, positive.

    Returns:
        The lower bounds, ascending; 70 % of 180 gives exactly 126.

    Raises:
        InvalidRequest: "custom_zone_lower_bpm" for missing or unordered custom bounds.
    """
    kind = _enum(ZoneModel, model or ZoneModel.PERCENT_HRMAX, "zone_model")
    top = Fraction(hr_max)
    if kind == ZoneModel.PERCENT_HRMAX:
        return tuple(math.ceil(top * Fraction(p, 100)) for p in FIVE_ZONE_LOW_PCT)
    if kind == ZoneModel.HEART_RATE_RESERVE:
        reserve = top - resting_bpm
        return tuple(math.ceil(resting_bpm + reserve * Fraction(p, 100)) for p in FIVE_ZONE_LOW_PCT)
    lows = tuple(int(v) for v in custom)
    check_lows(lows)
    if not lows:
        raise InvalidRequest("custom_zone_lower_bpm", "custom_zone_lower_bpm is required")
    return lows


def time_in_zones(
    ts_ms: ArrayLike,
    bpm: ArrayLike,
    lows_bpm: Sequence[int] | NDArray[np.integer],
    max_gap_ms: int = DEFAULT_MAX_GAP_MS,
    session_end_ms: int | None = None,
) -> ZoneTimes:
    """Time spent in each zone, vectorised (rules: core.sample_hold).

    Args:
        ts_ms: Unix milliseconds per reading, any order, duplicates allowed.
        bpm: bpm per reading.
        lows_bpm: Zone lower bounds, strictly ascending.
        max_gap_ms: Longer intervals count as no data.
        session_end_ms: Until when the last reading holds; None: it holds 0 ms.

    Returns:
        The ZoneTimes; all zeros for no readings.

    Raises:
        InvalidRequest: "timestamps" (lengths differ), "max_gap_seconds" (negative),
            "custom_zone_lower_bpm" (bounds not ascending).
    """
    lows = [int(v) for v in np.asarray(lows_bpm).tolist()]
    check_lows(lows)
    return zone_times(hold(ts_ms, bpm, max_gap_ms, session_end_ms), lows)


def _banister(h: Held, top: HrMax, resting_bpm: int, sex: int) -> float:
    """Banister TRIMP of held readings."""
    kind = _enum(Sex, sex, "sex")
    a, b = BANISTER_COEFFICIENTS.get(kind, BANISTER_COEFFICIENTS[Sex.MALE])
    reserve = float(top) - resting_bpm
    if reserve <= 0:
        raise InvalidRequest("resting_bpm", "resting_bpm must be below HRmax")
    hrr = np.clip((h.values - resting_bpm) / reserve, 0.0, 1.0)
    return float(np.sum(h.ms * hrr * np.exp(b * hrr))) * float(a) / MS_PER_MINUTE


def _edwards(zone_ms: Sequence[int]) -> float:
    """Edwards TRIMP from the five %HRmax zones' milliseconds."""
    return sum(i * ms for i, ms in enumerate(zone_ms, start=1)) / MS_PER_MINUTE


def banister_trimp(
    ts_ms: ArrayLike,
    bpm: ArrayLike,
    *,
    hr_max: HrMax,
    resting_bpm: int = DEFAULT_RESTING_BPM,
    sex: Sex | int = Sex.UNSPECIFIED,
    max_gap_ms: int = DEFAULT_MAX_GAP_MS,
    session_end_ms: int | None = None,
) -> float:
    """Banister TRIMP: sum of minutes * HRr * a * exp(b * HRr) over counted intervals.

    Args:
        ts_ms, bpm: The readings (as time_in_zones).
        hr_max: HRmax, bpm.
        resting_bpm: Resting heart rate; HRr = (bpm - rest) / (HRmax - rest) clipped to [0, 1].
        sex: Selects (a, b); UNSPECIFIED uses the male coefficients.
        max_gap_ms, session_end_ms: As time_in_zones.

    Returns:
        The TRIMP (arbitrary units).

    Raises:
        InvalidRequest: as time_in_zones; "resting_bpm" when not below HRmax; "sex" unknown.
    """
    return _banister(hold(ts_ms, bpm, max_gap_ms, session_end_ms), hr_max, resting_bpm, sex)


def edwards_trimp(
    ts_ms: ArrayLike,
    bpm: ArrayLike,
    *,
    hr_max: HrMax,
    max_gap_ms: int = DEFAULT_MAX_GAP_MS,
    session_end_ms: int | None = None,
) -> float:
    """Edwards TRIMP: sum of minutes in zone i times i, for the 5 %HRmax zones (i = 1..5).

    Args:
        ts_ms, bpm: The readings (as time_in_zones).
        hr_max: HRmax, bpm.
        max_gap_ms, session_end_ms: As time_in_zones.

    Returns:
        The TRIMP (zone-weighted minutes).

    Raises:
        InvalidRequest: as time_in_zones.
    """
    lows = zone_lower_bounds(ZoneModel.PERCENT_HRMAX, hr_max, 0)
    return _edwards(bin_ms(hold(ts_ms, bpm, max_gap_ms, session_end_ms), lows)[0])


@dataclass(frozen=True)
class ZoneTime:
    """One zone of a model: 1-based index, [lower_bpm, upper_bpm) (upper 0: open), time in it."""

    index: int
    lower_bpm: int
    upper_bpm: int
    ms: int


@dataclass(frozen=True)
class SessionAnalysis:
    """Everything CalculateExerciseZones answers, in milliseconds and bpm."""

    zone_model: int
    hr_max: float
    hr_max_bpm: int
    zones: tuple[ZoneTime, ...]
    legacy_zone_ms: tuple[int, int, int]
    total_ms: int
    no_data_ms: int
    below_ms: int
    average_bpm: float
    banister_trimp: float
    edwards_trimp: float
    reading_count: int


def _session_hr_max(age: int, formula: int, max_hr_bpm: int, resting_bpm: int) -> Fraction:
    """The measured maximum when > 0, else the formula's; checks resting_bpm against it."""
    if max_hr_bpm < 0:
        raise InvalidRequest("max_hr_bpm", "max_hr_bpm must be >= 0")
    top = Fraction(max_hr_bpm) if max_hr_bpm > 0 else hr_max(age, formula)
    if not 0 < resting_bpm < top:
        raise InvalidRequest("resting_bpm", f"resting_bpm must be > 0 and below HRmax {top}")
    return top


def analyse_session(
    ts_ms: ArrayLike,
    bpm: ArrayLike,
    *,
    age: int = 0,
    model: ZoneModel | int = ZoneModel.PERCENT_HRMAX,
    formula: HrMaxFormula | int = HrMaxFormula.FOX,
    max_hr_bpm: int = 0,
    resting_bpm: int = DEFAULT_RESTING_BPM,
    custom_lows: Sequence[int] = (),
    max_gap_ms: int = DEFAULT_MAX_GAP_MS,
    session_end_ms: int | None = None,
    sex: Sex | int = Sex.UNSPECIFIED,
) -> SessionAnalysis:
    """Zones of the model, the original's three %HRmax zones, TRIMPs and averages of a session.

    Args:
        ts_ms, bpm, max_gap_ms, session_end_ms: The readings and hold rules (as time_in_zones).
        age, formula: Estimate HRmax unless max_hr_bpm > 0 (0 model/formula: the defaults).
        model, custom_lows, resting_bpm: Select the zone bounds (zone_lower_bounds).
        max_hr_bpm: Measured HRmax; wins when > 0.
        sex: Banister coefficients.

    Returns:
        The SessionAnalysis; legacy zones are [50,60), [60,70), [70,90) % of HRmax whatever model.

    Raises:
        InvalidRequest: "timestamps" (lengths differ), "measurements" (no readings), "age",
            "max_hr_bpm", "resting_bpm", "custom_zone_lower_bpm", "max_gap_seconds", "sex".
    """
    h = hold(ts_ms, bpm, max_gap_ms, session_end_ms)
    if h.reading_count == 0:
        raise InvalidRequest("measurements", "measurements must hold at least one reading")
    top = _session_hr_max(age, formula, max_hr_bpm, resting_bpm)
    lows = zone_lower_bounds(model, top, resting_bpm, custom_lows)
    times = zone_times(h, lows)
    uppers = (*lows[1:], 0)
    zones = tuple(
        ZoneTime(i + 1, *z) for i, z in enumerate(zip(lows, uppers, times.zone_ms, strict=True))
    )
    legacy = [math.ceil(top * Fraction(p, 100)) for p in LEGACY_ZONE_EDGES_PCT]
    five = zone_lower_bounds(ZoneModel.PERCENT_HRMAX, top, resting_bpm)
    legacy_ms = bin_ms(h, legacy)[0]
    return SessionAnalysis(
        zone_model=int(model or ZoneModel.PERCENT_HRMAX),
        hr_max=float(top),
        hr_max_bpm=math.floor(top + Fraction(1, 2)),
        zones=zones,
        legacy_zone_ms=(legacy_ms[0], legacy_ms[1], legacy_ms[2]),
        total_ms=times.total_ms,
        no_data_ms=times.no_data_ms,
        below_ms=times.below_ms,
        average_bpm=times.average_bpm,
        banister_trimp=_banister(h, top, resting_bpm, sex),
        edwards_trimp=_edwards(bin_ms(h, five)[0]),
        reading_count=times.reading_count,
    )
