"""Per-user alert state with hysteresis: a pure state machine over classified readings.

The Redis store mirrors this machine in Lua (deployments/store.lua) so that the write and the
state update happen atomically; tests/integration checks the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.constants import ALERT_CLEAR_READINGS, ALERT_SUSTAIN_S, Classification
from heartrate_serve.core.errors import InvalidRequest


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


def step_alerts(
    state: AlertState,
    ts_ms: Sequence[int] | NDArray[np.int64],
    classification: Sequence[int] | NDArray[np.uint8],
    rules: AlertRules,
) -> tuple[AlertState, list[AlertEvent]]:
    """Advances a user's alert state over a batch of classified readings.

    Readings are taken in timestamp order (stable); one at or before state.last_ts_ms is late
    and changes nothing. A NORMAL reading resets the pending alert and, while an alert is active,
    counts towards clearing it (clear_readings in a row). A LOW/HIGH reading resets that count and
    raises its alert once it has been pending for sustain_ms (at once when sustain_ms is 0),
    clearing a different active alert first.

    Args:
        state: The state before the batch.
        ts_ms: Unix milliseconds per reading.
        classification: Classification value per reading (same length).
        rules: The hysteresis parameters.

    Returns:
        The new state and the events raised/cleared, in timestamp order.

    Raises:
        InvalidRequest: field "timestamps" when the two sequences differ in length.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    cls = np.asarray(classification, dtype=np.int64)
    if ts.shape != cls.shape:
        raise InvalidRequest("timestamps", "timestamps must have one entry per classification")
    order = np.argsort(ts, kind="stable")
    s = _Mutable(**asdict(state))
    events: list[AlertEvent] = []
    for t, c in zip(ts[order].tolist(), cls[order].tolist(), strict=True):
        if t <= s.last_ts_ms:
            continue
        if c == Classification.NORMAL:
            _on_normal(s, t, rules, events)
        else:
            _on_out_of_band(s, t, c, rules, events)
        s.last_ts_ms = t
    return AlertState(**asdict(s)), events


@dataclass
class _Mutable:
    """The working copy of an AlertState while a batch is applied."""

    active: int
    since_ms: int
    pending: int
    pending_since_ms: int
    normal_count: int
    last_ts_ms: int


def _on_normal(s: _Mutable, t: int, rules: AlertRules, events: list[AlertEvent]) -> None:
    """A NORMAL reading: drops the pending alert; clear_readings of them clear the active one."""
    s.pending, s.pending_since_ms = 0, 0
    if s.active == 0:
        return
    s.normal_count += 1
    if s.normal_count >= rules.clear_readings:
        events.append(AlertEvent("cleared", s.active, t))
        s.active, s.since_ms, s.normal_count = 0, 0, 0


def _on_out_of_band(
    s: _Mutable, t: int, c: int, rules: AlertRules, events: list[AlertEvent]
) -> None:
    """A LOW/HIGH reading: starts or continues its pending window, raising once sustained."""
    s.normal_count = 0
    if s.active == c:
        return
    if s.pending != c:
        s.pending, s.pending_since_ms = c, t
    if t - s.pending_since_ms >= rules.sustain_ms:
        if s.active != 0:
            events.append(AlertEvent("cleared", s.active, t))
        events.append(AlertEvent("raised", c, t))
        s.active, s.since_ms, s.pending, s.pending_since_ms = c, t, 0, 0
