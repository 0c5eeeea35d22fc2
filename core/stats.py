"""Summary statistics of a series of heart-rate readings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class Stats:
    """Count, minimum, maximum and arithmetic mean of bpm values (all zero when empty)."""

    count: int = 0
    min_bpm: int = 0
    max_bpm: int = 0
    mean_bpm: float = 0.0


def summarize(bpm: ArrayLike) -> Stats:
    """Summarises bpm readings.

    Args:
        bpm: The readings' bpm values, any 1-D integer array-like.

    Returns:
        Their Stats; Stats() (all zeros) for no readings.
    """
    arr = np.asarray(bpm, dtype=np.int64).ravel()
    if arr.size == 0:
        return Stats()
    return Stats(
        count=int(arr.size),
        min_bpm=int(arr.min()),
        max_bpm=int(arr.max()),
        mean_bpm=float(arr.mean()),
    )
