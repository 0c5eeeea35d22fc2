"""core.stats.summarize: count, min, max and mean of readings."""

from __future__ import annotations

import numpy as np
import pytest

from heartrate_serve.core.stats import Stats, summarize


@pytest.mark.parametrize(
    ("bpm", "expected"),
    [
        ([], Stats(0, 0, 0, 0.0)),
        ([72], Stats(1, 72, 72, 72.0)),
        ([60, 80, 100], Stats(3, 60, 100, 80.0)),
        ([90, 61], Stats(2, 61, 90, 75.5)),
        (np.array([180, 40, 41], dtype=np.int32), Stats(3, 40, 180, 87.0)),
    ],
)
def test_summarize(bpm: list[int] | np.ndarray, expected: Stats) -> None:
    """Zeros for no readings; exact min/max; arithmetic mean as float."""
    assert summarize(bpm) == expected


def test_summarize_returns_plain_python_numbers() -> None:
    """Fields are int/float, not numpy scalars (they go straight into protobuf)."""
    s = summarize(np.array([70, 71], dtype=np.int32))
    assert [type(v) for v in (s.count, s.min_bpm, s.max_bpm, s.mean_bpm)] == [int, int, int, float]
