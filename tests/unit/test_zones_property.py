"""Property tests: the numpy zones engine agrees with the pure-Python reference implementation."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartrate_serve.core.zones import banister_trimp, edwards_trimp, time_in_zones
from tests.support import reference_zones as ref

# Timestamps on a coarse grid so duplicates and exact gap-boundary intervals are common.
readings = st.lists(
    st.tuples(st.integers(0, 120).map(lambda s: s * 500), st.integers(30, 220)), max_size=40
)
lows_st = st.lists(st.integers(40, 200), max_size=6, unique=True).map(sorted)
gap_st = st.integers(0, 20).map(lambda s: s * 1000)
end_st = st.none() | st.integers(0, 130).map(lambda s: s * 500)
SETTINGS = settings(max_examples=300, deadline=None, database=None)  # no .hypothesis/ dir


def _arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Columns as the service passes them."""
    ts = np.array([p[0] for p in pairs], dtype=np.int64)
    return ts, np.array([p[1] for p in pairs], dtype=np.int32)


@SETTINGS
@given(readings, lows_st, gap_st, end_st)
def test_time_in_zones_matches_reference(
    pairs: list[tuple[int, int]], lows: list[int], gap: int, end: int | None
) -> None:
    """Zone, below, no-data and total ms are identical; the average agrees to float precision."""
    got = asdict(time_in_zones(*_arrays(pairs), lows, gap, end))
    want = ref.reference_time_in_zones([p[0] for p in pairs], [p[1] for p in pairs], lows, gap, end)
    assert got.pop("average_bpm") == pytest.approx(want.pop("average_bpm"))
    assert got == want


@SETTINGS
@given(
    readings, gap_st, end_st, st.integers(150, 210), st.integers(40, 90), st.sampled_from([0, 1, 2])
)
def test_trimps_match_reference(
    pairs: list[tuple[int, int]], gap: int, end: int | None, top: int, rest: int, sex: int
) -> None:
    """Banister and Edwards TRIMP agree with the reference on irregular series."""
    ts, bpm = _arrays(pairs)
    t, b = [p[0] for p in pairs], [p[1] for p in pairs]
    banister = banister_trimp(
        ts, bpm, hr_max=top, resting_bpm=rest, sex=sex, max_gap_ms=gap, session_end_ms=end
    )
    edwards = edwards_trimp(ts, bpm, hr_max=top, max_gap_ms=gap, session_end_ms=end)
    assert banister == pytest.approx(ref.reference_banister(t, b, top, rest, sex, gap, end))
    assert edwards == pytest.approx(ref.reference_edwards(t, b, top, gap, end))


@pytest.mark.parametrize(
    "pairs",
    [
        [],
        [(1000, 120)],
        [(0, 120), (0, 60), (500, 150)],
        [(0, -5), (500, 100_000), (1000, 120), (1500, 100_000)],  # wide span: sparse binning
    ],
)
def test_reference_agrees_on_tiny_series(pairs: list[tuple[int, int]]) -> None:
    """Empty, single, duplicate and absurd-bpm series agree explicitly (not only by chance)."""
    got = asdict(time_in_zones(*_arrays(pairs), [90, 126], 1000, 2000))
    want = ref.reference_time_in_zones(
        [p[0] for p in pairs], [p[1] for p in pairs], [90, 126], 1000, 2000
    )
    assert got == want
