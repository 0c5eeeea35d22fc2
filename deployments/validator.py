"""The validator deployment: validates and classifies readings in numpy batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from ray import serve
from ray.serve import Deployment

from heartrate_serve.core.validation import ValidationRules, validate_readings
from heartrate_serve.service.tunables import ValidatorTunables
from heartrate_serve.settings import Settings


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
    """Validates a batch under rules; per-reading bands of 0 mean the rules' default band."""
    low = np.where(normal_low > 0, normal_low, rules.normal_low_bpm)
    high = np.where(normal_high > 0, normal_high, rules.normal_high_bpm)
    result = validate_readings(bpm, ts_ms, now_ms, rules, low, high)
    return ValidationOutput(result.reason, result.classification, rules)


class Validator:
    """Owns the validation rules (user_config) and applies them to whole batches at once."""

    def __init__(self) -> None:
        self._retention_days = Settings.from_env().retention_days
        self._rules = ValidatorTunables().rules(self._retention_days)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Applies new bands/limits from user_config."""
        self._rules = ValidatorTunables.from_config(config).rules(self._retention_days)

    def validate(
        self,
        bpm: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        now_ms: int,
        normal_low: NDArray[np.int32],
        normal_high: NDArray[np.int32],
    ) -> ValidationOutput:
        """Validates a batch; per-reading bands of 0 mean the configured default band."""
        return validate_batch(self._rules, bpm, ts_ms, now_ms, normal_low, normal_high)

    def rules(self) -> ValidationRules:
        """The rules in force."""
        return self._rules

    def ping(self) -> bool:
        """Liveness for the health check."""
        return True


ValidatorDeployment: Deployment = serve.deployment(name="Validator")(Validator)
