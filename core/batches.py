"""Whole-round operations of the two compute deployments, as pure functions over numpy arrays.

The Validator and the ZoneCalculator deployments, and the in-process ports of the plain baseline,
call exactly these, so the work done on either side of a deployment hop is the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.validation import ValidationRules, validate_readings
from heartrate_serve.core.zones import SessionAnalysis, analyse_session


@dataclass(frozen=True)
class ValidationOutput:
    """Per-reading reject reasons and classifications, with the rules that produced them."""

    reason: NDArray[np.uint8]
    classification: NDArray[np.uint8]
    rules: ValidationRules


def validate_batch(
    rules: ValidationRules,
    bpm: NDArray[np.int32],
    ts_ms: NDArray[np.int64],
    now_ms: int,
    normal_low: NDArray[np.int32],
    normal_high: NDArray[np.int32],
) -> ValidationOutput:
    """Validates a round under rules; per-reading bands of 0 mean the rules' default band.

    Raises:
        InvalidRequest: "timestamps" when the arrays differ in length.
    """
    low = np.where(normal_low > 0, normal_low, rules.normal_low_bpm)
    high = np.where(normal_high > 0, normal_high, rules.normal_high_bpm)
    result = validate_readings(bpm, ts_ms, now_ms, rules, low, high)
    return ValidationOutput(result.reason, result.classification, rules)


@dataclass(frozen=True)
class ZoneJob:
    """One CalculateExerciseZones request's readings and analyse_session keyword arguments."""

    ts_ms: NDArray[np.int64]
    bpm: NDArray[np.int32]
    params: dict[str, Any]

    @property
    def readings(self) -> int:
        """How many readings the job holds (its weight in a round)."""
        return len(self.ts_ms)


def analyse_jobs(jobs: Sequence[ZoneJob]) -> list[SessionAnalysis | InvalidRequest]:
    """analyse_session over each job; a bad job's InvalidRequest is returned in its place, so one
    bad request does not fail the others of its round."""
    out: list[SessionAnalysis | InvalidRequest] = []
    for job in jobs:
        try:
            out.append(analyse_session(job.ts_ms, job.bpm, **job.params))
        except InvalidRequest as error:
            out.append(error)
    return out
