"""Benchmarks the pure core: numpy time-in-zones vs the pure-Python reference, and validation.

Run from the repository root: python -m heartrate_serve.loadtest.bench_core
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.validation import ValidationRules, validate_readings
from heartrate_serve.core.zones import (
    analyse_session,
    banister_trimp,
    edwards_trimp,
    time_in_zones,
    zone_lower_bounds,
)

N = 1_000_000
REPEATS = 3
HR_MAX, REST, GAP_MS = 180, 60, 30_000
NOW_MS = 1_750_000_000_000


def load_reference() -> ModuleType:
    """tests/reference_zones.py, by path (next to this package's source, else under the cwd)."""
    candidates = [
        Path(__file__).resolve().parents[1] / "tests" / "reference_zones.py",
        Path.cwd() / "tests" / "reference_zones.py",
    ]
    path = next(p for p in candidates if p.exists())
    spec = importlib.util.spec_from_file_location("reference_zones", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("reference_zones", module)
    spec.loader.exec_module(module)
    return module


def irregular_series(n: int, seed: int = 7) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """A realistic ~1 Hz series: jittered intervals, dropouts of 31 s-10 min, duplicates, drift."""
    rng = np.random.default_rng(seed)
    step = rng.normal(1000, 120, n).clip(200, 2500).astype(np.int64)
    dropouts = rng.random(n) < 0.0005  # sensor lost contact: counts as no data
    step[dropouts] = rng.integers(31_000, 600_000, int(dropouts.sum()))
    step[rng.random(n) < 0.001] = 0  # duplicate timestamps (re-sent readings)
    ts = NOW_MS - 20 * 86_400_000 + np.cumsum(step)
    walk = np.cumsum(rng.normal(0, 1.5, n))
    bpm = (120 + 45 * np.sin(np.arange(n) / 3000) + walk % 20).clip(45, 195)
    return ts, bpm.astype(np.int32)


def best_of(fn: Callable[[], Any]) -> tuple[float, Any]:
    """The best wall time of REPEATS runs (after the caller's warm-up) and the last result."""
    best, result = float("inf"), None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_zones(ref: ModuleType, ts: NDArray[np.int64], bpm: NDArray[np.int32]) -> list[str]:
    """Table rows for time-in-zones and zones+TRIMPs, numpy vs reference; checks they agree."""
    lows = zone_lower_bounds(1, HR_MAX, REST)
    t_list, b_list = ts.tolist(), bpm.tolist()
    time_in_zones(ts[:10_000], bpm[:10_000], lows, GAP_MS, None)  # warm-up
    ref.reference_time_in_zones(t_list[:10_000], b_list[:10_000], lows, GAP_MS, None)
    np_s, got = best_of(lambda: time_in_zones(ts, bpm, lows, GAP_MS, None))
    py_s, want = best_of(lambda: ref.reference_time_in_zones(t_list, b_list, lows, GAP_MS, None))
    got_d = asdict(got)
    assert abs(got_d.pop("average_bpm") - want.pop("average_bpm")) < 1e-6 and got_d == want

    def np_all() -> tuple[Any, float, float]:
        """Zones and both TRIMPs through the public numpy functions."""
        zt = time_in_zones(ts, bpm, lows, GAP_MS, None)
        ban = banister_trimp(ts, bpm, hr_max=HR_MAX, resting_bpm=REST, max_gap_ms=GAP_MS)
        return zt, ban, edwards_trimp(ts, bpm, hr_max=HR_MAX, max_gap_ms=GAP_MS)

    def py_all() -> tuple[Any, float, float]:
        """The same with the pure-Python reference."""
        zt = ref.reference_time_in_zones(t_list, b_list, lows, GAP_MS, None)
        ban = ref.reference_banister(t_list, b_list, HR_MAX, REST, 0, GAP_MS, None)
        return zt, ban, ref.reference_edwards(t_list, b_list, HR_MAX, GAP_MS, None)

    np_all_s, (_, ban, edw) = best_of(np_all)
    py_all_s, (_, rban, redw) = best_of(py_all)
    assert abs(ban - rban) < 1e-6 * rban and abs(edw - redw) < 1e-6 * redw
    session_s, _ = best_of(
        lambda: analyse_session(ts, bpm, max_hr_bpm=HR_MAX, resting_bpm=REST, max_gap_ms=GAP_MS)
    )
    return [
        _row("time_in_zones", np_s, py_s),
        _row("zones + Banister + Edwards", np_all_s, py_all_s),
        f"| analyse_session (all, numpy) | {N:,} | {session_s * 1e3:.1f} ms | - | - |",
    ]


def _row(name: str, np_s: float, py_s: float) -> str:
    """One comparison row of the markdown table."""
    return f"| {name} | {N:,} | {np_s * 1e3:.1f} ms | {py_s * 1e3:.0f} ms | {py_s / np_s:.0f}x |"


def bench_validation(ts: NDArray[np.int64], bpm: NDArray[np.int32]) -> str:
    """Table row for batch validation with per-reading normal bands (as the validator runs it)."""
    rules = ValidationRules()
    low = np.full(N, 50, dtype=np.int32)
    high = np.full(N, 150, dtype=np.int32)
    validate_readings(bpm[:10_000], ts[:10_000], NOW_MS, rules, low[:10_000], high[:10_000])
    secs, _ = best_of(lambda: validate_readings(bpm, ts, NOW_MS, rules, low, high))
    rate = f"{N / secs / 1e6:.1f} M readings/s"
    return f"| validate_readings | {N:,} | {secs * 1e3:.1f} ms ({rate}) | - | - |"


def main() -> None:
    """Runs every core benchmark and prints one markdown table."""
    ts, bpm = irregular_series(N)
    rows = [*bench_zones(load_reference(), ts, bpm), bench_validation(ts, bpm)]
    versions = f"numpy {np.__version__}, Python {sys.version.split()[0]}"
    print(f"core benchmark, best of {REPEATS} after a warm-up ({versions})\n")
    print("| benchmark | readings | numpy | pure Python | speed-up |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
