"""Runtime-tunable values of each deployment: parsed from serve_config.yaml's user_config.

Defaults come from core/constants.py; an unknown key or a bad value fails the (re)configure with
a message naming it, so a typo in serve_config.yaml is not silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from heartrate_serve.core.alerts import AlertRules
from heartrate_serve.core.constants import (
    ALERT_CLEAR_READINGS,
    ALERT_SUSTAIN_S,
    DEFAULT_MAX_GAP_S,
    MAX_FUTURE_MS,
    NORMAL_HIGH_BPM,
    NORMAL_LOW_BPM,
    VALID_MAX_BPM,
    VALID_MIN_BPM,
)
from heartrate_serve.core.validation import ValidationRules


def _checked(cls: type, config: Mapping[str, Any]) -> dict[str, Any]:
    """Config values cast to the dataclass's field types; unknown keys raise ValueError."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(f"unknown user_config key(s) for {cls.__name__}: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for key, value in config.items():
        cast = float if known[key].type in ("float", float) else int
        try:
            out[key] = cast(value)
        except (TypeError, ValueError):
            raise ValueError(f"user_config {key} must be a number, got {value!r}") from None
    return out


@dataclass(frozen=True)
class IngressTunables:
    """The ingress's user_config."""

    alert_sustain_s: int = ALERT_SUSTAIN_S
    alert_clear_readings: int = ALERT_CLEAR_READINGS
    # How long a replica trusts a cached profile band; another replica's change shows after this.
    profile_cache_ttl_s: float = 5.0
    max_gap_s: int = DEFAULT_MAX_GAP_S
    # Batches of at least this many readings are validated on the Validator deployment; smaller
    # ones in the ingress (see validation_router.py for the measurement behind it).
    validator_offload_min_readings: int = 50_000

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> IngressTunables:
        """Parses and checks the ingress user_config."""
        t = cls(**_checked(cls, config))
        if t.alert_sustain_s < 0 or t.alert_clear_readings < 1 or t.max_gap_s < 0:
            raise ValueError("alert_sustain_s, max_gap_s must be >= 0; alert_clear_readings >= 1")
        return t

    def alert_rules(self) -> AlertRules:
        """The hysteresis rules for the store's alert state machine."""
        return AlertRules(self.alert_sustain_s * 1000, self.alert_clear_readings)


@dataclass(frozen=True)
class ValidatorTunables:
    """The validator's user_config: the bands and timestamp limits."""

    valid_min_bpm: int = VALID_MIN_BPM
    valid_max_bpm: int = VALID_MAX_BPM
    normal_low_bpm: int = NORMAL_LOW_BPM
    normal_high_bpm: int = NORMAL_HIGH_BPM
    max_future_s: int = MAX_FUTURE_MS // 1000

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ValidatorTunables:
        """Parses the validator user_config."""
        return cls(**_checked(cls, config))

    def rules(self, retention_days: int) -> ValidationRules:
        """Validation rules; raises InvalidRequest when the bands are inconsistent."""
        return ValidationRules(
            valid_min_bpm=self.valid_min_bpm,
            valid_max_bpm=self.valid_max_bpm,
            normal_low_bpm=self.normal_low_bpm,
            normal_high_bpm=self.normal_high_bpm,
            max_future_ms=self.max_future_s * 1000,
            retention_ms=retention_days * 86_400_000,
        )


@dataclass(frozen=True)
class ZoneTunables:
    """The zone calculator's user_config (reserved for future zone defaults)."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ZoneTunables:
        """Parses the zone calculator's user_config."""
        return cls(**_checked(cls, config))
