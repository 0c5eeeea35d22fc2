"""The synthetic workout generator behind `heartrate simulate` (pure numpy, no server)."""

from __future__ import annotations

import numpy as np
import pytest

from heartrate_serve.cli.workouts import (
    INTERVALS_FRACTION,
    WARMUP_FRACTION,
    sample_count,
    workout_bpm,
)


def _phases(bpm: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits a workout into its warm-up, interval and cool-down samples."""
    w = int(n * WARMUP_FRACTION)
    i = int(n * (WARMUP_FRACTION + INTERVALS_FRACTION))
    return bpm[:w], bpm[w:i], bpm[i:]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(("duration", "rate"), [(60, 1), (600, 2), (30, 10), (3600, 0.5)])
def test_values_always_in_the_valid_band(duration: float, rate: float, seed: int) -> None:
    """Every value is an int32 within 40-180 bpm, whatever the seed, rate and duration."""
    bpm = workout_bpm(duration, rate, seed)
    assert bpm.dtype == np.int32
    assert bpm.min() >= 40 and bpm.max() <= 180


@pytest.mark.parametrize(
    ("duration", "rate", "n"), [(60, 1, 60), (10, 4, 40), (0.3, 10, 3), (10, 0.5, 5), (0, 1, 0)]
)
def test_one_sample_per_period(duration: float, rate: float, n: int) -> None:
    """A workout of D seconds at R Hz holds floor(D * R) readings (no float off-by-one)."""
    assert sample_count(duration, rate) == n
    assert len(workout_bpm(duration, rate, 1)) == n


def test_same_seed_same_workout_other_seed_other_workout() -> None:
    """The generator is deterministic per seed and seeds give different workouts."""
    a = workout_bpm(300, 2, 42)
    assert np.array_equal(a, workout_bpm(300, 2, 42))
    assert not np.array_equal(a, workout_bpm(300, 2, 43))


def test_negative_seeds_are_accepted_and_distinct() -> None:
    """Any int seed works; -1 and 1 give different workouts."""
    assert not np.array_equal(workout_bpm(120, 1, -1), workout_bpm(120, 1, 1))


@pytest.mark.parametrize("seed", range(10))
def test_shape_warm_up_intervals_cool_down(seed: int) -> None:
    """Warm-up ramps ~70 to ~130, intervals run higher with work and recovery, cool-down ~90."""
    n = 1200
    bpm = workout_bpm(n, 1, seed)
    warm, intervals, cool = _phases(bpm, n)
    assert abs(int(warm[:5].mean()) - 70) <= 5
    assert warm.mean() < intervals.mean()
    assert warm[: len(warm) // 4].mean() < warm[-len(warm) // 4 :].mean()
    assert intervals.max() >= 158
    assert 115 <= np.percentile(intervals, 10) <= 135
    assert abs(int(cool[-5:].mean()) - 90) <= 5
    assert cool.mean() < intervals.mean()


def test_intervals_alternate_high_and_recovery() -> None:
    """The interval phase crosses between work (>150) and recovery (<135) several times."""
    n = 2400
    _, intervals, _ = _phases(workout_bpm(n, 1, 7), n)
    state = np.where(intervals > 150, 1, np.where(intervals < 135, -1, 0))
    changes = np.count_nonzero(np.diff(state[state != 0]))
    assert changes >= 6


@pytest.mark.parametrize(
    ("duration", "rate"), [(10, 0), (10, -1), (-1, 1), (float("nan"), 1), (10, float("inf"))]
)
def test_rejects_nonsense_duration_and_rate(duration: float, rate: float) -> None:
    """A rate <= 0 or a negative or non-finite duration raises ValueError."""
    with pytest.raises(ValueError):
        workout_bpm(duration, rate, 0)
