"""Synthetic, deterministic heart-rate workouts for `heartrate simulate` (pure numpy, no I/O)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.constants import VALID_MAX_BPM, VALID_MIN_BPM

# Phases as fractions of the whole workout: warm-up, intervals, then the cool-down (the rest).
WARMUP_FRACTION = 0.2
INTERVALS_FRACTION = 0.65
# Work/recovery pairs in the interval phase; each pair is WORK_SHARE work, the rest recovery.
INTERVAL_CYCLES = 4
WORK_SHARE = 0.6
# Share of each work or recovery block spent ramping from the previous level.
RAMP_SHARE = 0.25
WARMUP_START_BPM = 70.0
WARMUP_END_BPM = 130.0
WORK_BPM = (160.0, 175.0)
RECOVERY_BPM = (120.0, 130.0)
COOLDOWN_END_BPM = 90.0
NOISE_SD_BPM = 1.5


def sample_count(duration_s: float, rate_hz: float) -> int:
    """How many readings a workout of `duration_s` seconds sampled at `rate_hz` holds."""
    if not (math.isfinite(duration_s) and math.isfinite(rate_hz)) or duration_s < 0:
        raise ValueError("duration_s must be a finite number >= 0")
    if rate_hz <= 0:
        raise ValueError("rate_hz must be > 0")
    return int(math.floor(duration_s * rate_hz + 1e-9))


def _rng(seed: int, stream: int) -> np.random.Generator:
    """An independent generator per (seed, stream); any int seed, negative ones included."""
    return np.random.default_rng([seed & (2**64 - 1), stream])


def _interval_knots(
    start_s: float, length_s: float, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """(time, bpm) knots of alternating work and recovery blocks, each ramping in then holding."""
    knots: list[tuple[float, float]] = []
    cycle_s = length_s / INTERVAL_CYCLES
    t = start_s
    for _ in range(INTERVAL_CYCLES):
        work = float(rng.uniform(*WORK_BPM))
        rest = float(rng.uniform(*RECOVERY_BPM))
        for level, block_s in ((work, cycle_s * WORK_SHARE), (rest, cycle_s * (1 - WORK_SHARE))):
            knots += [(t + block_s * RAMP_SHARE, level), (t + block_s, level)]
            t += block_s
    return knots


def target_curve(duration_s: float, t_s: NDArray[np.float64], seed: int) -> NDArray[np.float64]:
    """The noiseless workout at times `t_s`: warm-up ramp, intervals, cool-down ramp."""
    rng = _rng(seed, 0)
    warmup_end = duration_s * WARMUP_FRACTION
    intervals_s = duration_s * INTERVALS_FRACTION
    knots = [(0.0, WARMUP_START_BPM), (warmup_end, WARMUP_END_BPM)]
    knots += _interval_knots(warmup_end, intervals_s, rng)
    knots.append((duration_s, COOLDOWN_END_BPM))
    xs = np.array([k[0] for k in knots], dtype=np.float64)
    ys = np.array([k[1] for k in knots], dtype=np.float64)
    return np.interp(t_s, xs, ys)


def workout_bpm(duration_s: float, rate_hz: float, seed: int) -> NDArray[np.int32]:
    """A realistic workout as int32 bpm, one per 1/rate_hz s, deterministic per seed, in 40-180."""
    n = sample_count(duration_s, rate_hz)
    t_s = np.arange(n, dtype=np.float64) / rate_hz
    curve = target_curve(duration_s, t_s, seed)
    noise = _rng(seed, 1).normal(0.0, NOISE_SD_BPM, n)
    bpm = np.clip(np.rint(curve + noise), VALID_MIN_BPM, VALID_MAX_BPM)
    return bpm.astype(np.int32)
