"""Runtime-tunable values of each deployment: serve_config.yaml's user_config, as pydantic models.

Defaults come from core/constants.py; an unknown key or a bad value fails the (re)configure with
a message naming it, so a typo in serve_config.yaml is not silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from heartrate_serve.core.alerts import AlertRules
from heartrate_serve.core.constants import (
    ALERT_CLEAR_READINGS,
    ALERT_SUSTAIN_S,
    DEFAULT_MAX_GAP_S,
    MAX_FUTURE_MS,
    MAX_OPEN_STREAMS,
    MAX_QUEUED_READINGS,
    NORMAL_HIGH_BPM,
    NORMAL_LOW_BPM,
    REQUEST_TIMEOUT_S,
    VALID_MAX_BPM,
    VALID_MIN_BPM,
)
from heartrate_serve.core.validation import ValidationRules


class _Tunables(BaseModel):
    """Frozen, unknown keys refused; `from_config` turns pydantic's errors into one ValueError."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Self:
        """Parses and checks a user_config; raises ValueError naming each bad key."""
        try:
            return cls.model_validate(dict(config or {}))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or cls.__name__}: {e['msg']}"
                for e in error.errors()
            )
            raise ValueError(f"bad user_config for {cls.__name__}: {problems}") from None


class IngressTunables(_Tunables):
    """The ingress's user_config."""

    alert_sustain_s: int = Field(default=ALERT_SUSTAIN_S, ge=0)
    alert_clear_readings: int = Field(default=ALERT_CLEAR_READINGS, ge=1)
    # How long a replica trusts a cached profile band; another replica's change shows after this.
    profile_cache_ttl_s: float = Field(default=5.0, ge=0)
    max_gap_s: int = Field(default=DEFAULT_MAX_GAP_S, ge=0)
    # Overload: work beyond these bounds is shed with RESOURCE_EXHAUSTED instead of queued.
    # Readings waiting for a group-commit round (ingest; zone requests have their own queue of
    # this size), per replica.
    max_queued_readings: int = Field(default=MAX_QUEUED_READINGS, ge=1)
    # Open StreamHeartRate calls per replica (below its max_ongoing_requests, so unary calls
    # still get a slot when every stream slot is taken).
    max_open_streams: int = Field(default=MAX_OPEN_STREAMS, ge=1)
    # Unary calls answer DEADLINE_EXCEEDED after this long (0: no limit); streams are not cut.
    request_timeout_s: float = Field(default=REQUEST_TIMEOUT_S, ge=0)

    def alert_rules(self) -> AlertRules:
        """The hysteresis rules for the store's alert state machine."""
        return AlertRules(self.alert_sustain_s * 1000, self.alert_clear_readings)


class ValidatorTunables(_Tunables):
    """The validator's user_config: the bands and timestamp limits."""

    valid_min_bpm: int = Field(default=VALID_MIN_BPM, ge=1)
    valid_max_bpm: int = Field(default=VALID_MAX_BPM, ge=1)
    normal_low_bpm: int = Field(default=NORMAL_LOW_BPM, ge=1)
    normal_high_bpm: int = Field(default=NORMAL_HIGH_BPM, ge=1)
    max_future_s: int = Field(default=MAX_FUTURE_MS // 1000, ge=0)

    def rules(self, retention_days: int) -> ValidationRules:
        """The validation rules; raises InvalidRequest when the bands are inconsistent."""
        return ValidationRules(
            valid_min_bpm=self.valid_min_bpm,
            valid_max_bpm=self.valid_max_bpm,
            normal_low_bpm=self.normal_low_bpm,
            normal_high_bpm=self.normal_high_bpm,
            max_future_ms=self.max_future_s * 1000,
            retention_ms=retention_days * 86_400_000,
        )


class ZoneTunables(_Tunables):
    """The zone calculator's user_config (no keys yet: any key is refused)."""
