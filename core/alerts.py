"""Per-user alert state with hysteresis: a pure state machine over classified readings.

The Redis store mirrors this machine in Lua (deployments/store.lua) so that the write and the
state update happen atomically; tests/integration checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from heartrate_serve.core.constants import ALERT_CLEAR_READINGS, ALERT_SUSTAIN_S


@dataclass(frozen=True)
class AlertRules:
    """Hysteresis parameters."""

    sustain_ms: int = ALERT_SUSTAIN_S * 1000
    clear_readings: int = ALERT_CLEAR_READINGS


@dataclass(frozen=True)
class AlertState:
    """A user's sustained alert state. Types are Classification values (0 none, 1 LOW, 2 HIGH)."""

    active: int = 0
    since_ms: int = 0
    pending: int = 0
    pending_since_ms: int = 0
    normal_count: int = 0
    last_ts_ms: int = 0


@dataclass(frozen=True)
class AlertEvent:
    """An alert raised or cleared at ts_ms."""

    kind: str  # "raised" | "cleared"
    alert_type: int
    ts_ms: int
