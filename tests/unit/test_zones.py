"""core.zones: HRmax formulas, zone bounds, time in zones, TRIMP and the session analysis."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from heartrate_serve.core.constants import HrMaxFormula, Sex, ZoneModel
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.zones import (
    ZoneTimes,
    analyse_session,
    banister_trimp,
    edwards_trimp,
    hr_max,
    time_in_zones,
    zone_lower_bounds,
)

FIVE = (90, 108, 126, 144, 162)  # 50..90 % of Fox HRmax 180 (age 40)
S = 1000


def series(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, bpm) pairs as (ts_ms int64, bpm int32) arrays."""
    ts = np.array([p[0] * S for p in pairs], dtype=np.int64)
    return ts, np.array([p[1] for p in pairs], dtype=np.int32)


VECTOR_1 = [(0, 100), (10, 110), (20, 126), (30, 150), (40, 170), (50, 85)]
VECTOR_2 = [(0, 120), (5, 120), (10, 120), (100, 140), (105, 140)]


@pytest.mark.parametrize(
    ("age", "formula", "expected"),
    [
        (40, HrMaxFormula.FOX, Fraction(180)),
        (30, HrMaxFormula.TANAKA, Fraction(187)),
        (40, HrMaxFormula.TANAKA, Fraction(180)),
        (30, HrMaxFormula.GELLISH, Fraction(186)),
        (35, HrMaxFormula.GELLISH, Fraction(365, 2)),
        (50, HrMaxFormula.GULATI, Fraction(162)),
        (40, HrMaxFormula.GULATI, Fraction(854, 5)),
        (40, 0, Fraction(180)),
    ],
)
def test_hr_max_formulas_are_exact(age: int, formula: int, expected: Fraction) -> None:
    """Each formula gives its exact HRmax (0, unspecified, means Fox)."""
    assert hr_max(age, formula) == expected


@pytest.mark.parametrize(("age", "formula"), [(0, 1), (-3, 1), (121, 1), (40, 9)])
def test_hr_max_rejects_bad_input(age: int, formula: int) -> None:
    """Age outside 1-120 or an unknown formula is an InvalidRequest naming the field."""
    with pytest.raises(InvalidRequest) as err:
        hr_max(age, formula)
    assert err.value.field == ("age" if formula == 1 else "hr_max_formula")


@pytest.mark.parametrize(
    "top",
    [Fraction(180), hr_max(40, HrMaxFormula.FOX), hr_max(40, HrMaxFormula.TANAKA), 180, 180.0],
)
def test_seventy_percent_of_180_is_126_on_every_path(top: Fraction | int | float) -> None:
    """0.7 * 180 is exactly 126 (no float error), whatever way HRmax 180 was obtained."""
    assert zone_lower_bounds(ZoneModel.PERCENT_HRMAX, top, 60) == FIVE
    lows = analyse_session(*series(VECTOR_1), max_hr_bpm=180, session_end_ms=60 * S).zones
    assert lows[2].lower_bpm == 126


@pytest.mark.parametrize(
    ("model", "top", "rest", "custom", "expected"),
    [
        (ZoneModel.PERCENT_HRMAX, Fraction(180), 60, (), FIVE),
        (0, Fraction(180), 60, (), FIVE),
        (ZoneModel.PERCENT_HRMAX, Fraction(854, 5), 60, (), (86, 103, 120, 137, 154)),
        (ZoneModel.HEART_RATE_RESERVE, Fraction(180), 60, (), (120, 132, 144, 156, 168)),
        (ZoneModel.HEART_RATE_RESERVE, Fraction(187), 55, (), (121, 135, 148, 161, 174)),
        (ZoneModel.CUSTOM, Fraction(180), 60, (100, 130, 160), (100, 130, 160)),
    ],
)
def test_zone_lower_bounds(
    model: int, top: Fraction, rest: int, custom: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    """Bounds are the exact percentage (of HRmax or of the reserve) rounded up, or the custom."""
    assert zone_lower_bounds(model, top, rest, custom) == expected


@pytest.mark.parametrize(("model", "custom"), [(3, ()), (3, (100, 100)), (3, (0, 100)), (7, ())])
def test_zone_lower_bounds_rejects_bad_models(model: int, custom: tuple[int, ...]) -> None:
    """Missing/unordered custom bounds or an unknown model raise InvalidRequest."""
    with pytest.raises(InvalidRequest) as err:
        zone_lower_bounds(model, Fraction(180), 60, custom)
    assert err.value.field == ("zone_model" if model == 7 else "custom_zone_lower_bpm")


def test_vector_1_ten_seconds_in_each_zone() -> None:
    """Hand-checked vector 1: 10 s below zone 1 and 10 s in each of zones 1-5; Edwards 2.5."""
    ts, bpm = series(VECTOR_1)
    zt = time_in_zones(ts, bpm, FIVE, 30 * S, 60 * S)
    assert zt == ZoneTimes((10 * S,) * 5, 10 * S, 0, 60 * S, 123.5, 6)
    assert edwards_trimp(ts, bpm, hr_max=180, session_end_ms=60 * S) == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("gap_s", "zone2_s", "zone3_s", "no_data_s"), [(30, 10, 10, 90), (1000, 100, 10, 0)]
)
def test_vector_2_gap_rule(gap_s: int, zone2_s: int, zone3_s: int, no_data_s: int) -> None:
    """Hand-checked vector 2: a 90 s hole counts as no data (else zone 2 would get 100 s)."""
    ts, bpm = series(VECTOR_2)
    zt = time_in_zones(ts, bpm, FIVE, gap_s * S, 110 * S)
    assert zt.zone_ms == (0, zone2_s * S, zone3_s * S, 0, 0)
    assert (zt.no_data_ms, zt.below_ms) == (no_data_s * S, 0)
    assert zt.total_ms == (zone2_s + zone3_s) * S


@pytest.mark.parametrize(
    ("sex", "expected"), [(Sex.MALE, 60.78), (Sex.UNSPECIFIED, 60.78), (Sex.FEMALE, 67.71)]
)
def test_vector_3_banister_steady_30_min(sex: int, expected: float) -> None:
    """Hand-checked vector 3: 30 min at 150 bpm, rest 60, max 180 (unspecified sex: men's)."""
    ts = np.arange(1800, dtype=np.int64) * S
    bpm = np.full(1800, 150, dtype=np.int32)
    trimp = banister_trimp(ts, bpm, hr_max=180, resting_bpm=60, sex=sex, session_end_ms=1800 * S)
    assert round(trimp, 2) == expected


@pytest.mark.parametrize(("heart_rate", "expected_hrr"), [(40, 0.0), (60, 0.0), (200, 1.0)])
def test_banister_clips_heart_rate_reserve(heart_rate: int, expected_hrr: float) -> None:
    """HRr is clipped to [0, 1]: below rest counts 0, above HRmax counts as HRmax."""
    ts, bpm = series([(0, heart_rate)])
    trimp = banister_trimp(ts, bpm, hr_max=180, resting_bpm=60, session_end_ms=30 * S)
    assert 2 * trimp == pytest.approx(expected_hrr * 0.64 * np.exp(1.92 * expected_hrr))


@pytest.mark.parametrize(
    ("pairs", "end_s", "expected"),
    [
        ([], None, ZoneTimes((0,) * 5, 0, 0, 0, 0.0, 0)),
        ([(0, 130)], None, ZoneTimes((0,) * 5, 0, 0, 0, 130.0, 1)),
        ([(0, 130)], 20, ZoneTimes((0, 0, 20 * S, 0, 0), 0, 0, 20 * S, 130.0, 1)),
        ([(0, 130)], 40, ZoneTimes((0,) * 5, 0, 40 * S, 0, 130.0, 1)),
        ([(10, 130)], 5, ZoneTimes((0,) * 5, 0, 0, 0, 130.0, 1)),
        ([(10, 100), (0, 130)], 20, ZoneTimes((10 * S, 0, 10 * S, 0, 0), 0, 0, 20 * S, 115.0, 2)),
        (
            [(0, 130), (0, 95), (10, 95)],
            None,
            ZoneTimes((0, 0, 10 * S, 0, 0), 0, 0, 10 * S, 130.0, 2),
        ),
        ([(0, 80), (0, 130)], None, ZoneTimes((0,) * 5, 0, 0, 0, 80.0, 1)),
        ([(0, 100), (30, 170)], None, ZoneTimes((30 * S, 0, 0, 0, 0), 0, 0, 30 * S, 100.0, 2)),
        ([(0, 100), (31, 170)], None, ZoneTimes((0,) * 5, 0, 31 * S, 0, 135.0, 2)),
    ],
)
def test_time_in_zones_edge_cases(
    pairs: list[tuple[int, int]], end_s: int | None, expected: ZoneTimes
) -> None:
    """Empty, single reading, session end (and its gap rule), unsorted, duplicates, gap edge."""
    ts, bpm = series(pairs)
    end = None if end_s is None else end_s * S
    assert time_in_zones(ts, bpm, FIVE, 30 * S, end) == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ts_ms": [0, 1], "bpm": [100]}, "timestamps"),
        ({"ts_ms": [], "bpm": []}, "measurements"),
        ({"age": 0}, "age"),
        ({"age": 40, "model": 3}, "custom_zone_lower_bpm"),
        ({"age": 40, "max_gap_ms": -1}, "max_gap_seconds"),
        ({"age": 40, "max_hr_bpm": -5}, "max_hr_bpm"),
        ({"max_hr_bpm": 150, "resting_bpm": 150}, "resting_bpm"),
        ({"age": 40, "sex": 9}, "sex"),
    ],
)
def test_analyse_session_rejects_inconsistent_input(kwargs: dict[str, object], field: str) -> None:
    """Inconsistent requests raise InvalidRequest naming the request field."""
    args: dict[str, object] = {"ts_ms": [0, 1000], "bpm": [100, 110], **kwargs}
    with pytest.raises(InvalidRequest) as err:
        analyse_session(**args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_analyse_session_vector_1() -> None:
    """The session analysis of vector 1: zones, legacy zones, totals and both TRIMPs."""
    a = analyse_session(*series(VECTOR_1), age=40, session_end_ms=60 * S)
    assert [(z.index, z.lower_bpm, z.upper_bpm, z.ms) for z in a.zones] == [
        (1, 90, 108, 10 * S),
        (2, 108, 126, 10 * S),
        (3, 126, 144, 10 * S),
        (4, 144, 162, 10 * S),
        (5, 162, 0, 10 * S),
    ]
    assert a.legacy_zone_ms == (10 * S, 10 * S, 20 * S)
    assert (a.hr_max_bpm, a.total_ms, a.no_data_ms, a.below_ms) == (180, 60 * S, 0, 10 * S)
    assert (a.average_bpm, a.edwards_trimp, a.reading_count) == (123.5, 2.5, 6)
    assert a.banister_trimp > 0


@pytest.mark.parametrize("model", [ZoneModel.HEART_RATE_RESERVE, ZoneModel.CUSTOM])
def test_legacy_zones_are_always_percent_hrmax(model: int) -> None:
    """The original's zone1-3 times use %HRmax bounds whatever the requested model."""
    a = analyse_session(
        *series(VECTOR_1), age=40, model=model, custom_lows=(100, 150), session_end_ms=60 * S
    )
    assert a.legacy_zone_ms == (10 * S, 10 * S, 20 * S)
    assert a.zone_model == model


def test_measured_max_wins_over_the_formula() -> None:
    """max_hr_bpm > 0 is used instead of the age formula."""
    a = analyse_session(*series(VECTOR_1), age=20, max_hr_bpm=180, session_end_ms=60 * S)
    assert (a.hr_max_bpm, a.zones[0].lower_bpm) == (180, 90)


def test_hr_max_bpm_rounds_a_fractional_estimate() -> None:
    """Gulati at 40 (170.8) reports 171 bpm but keeps exact bounds (ceil of 85.4 is 86)."""
    a = analyse_session(*series(VECTOR_1), age=40, formula=HrMaxFormula.GULATI)
    assert (a.hr_max, a.hr_max_bpm, a.zones[0].lower_bpm) == (170.8, 171, 86)
