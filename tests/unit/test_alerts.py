"""core.alerts.step_alerts: the hysteresis state machine that the Redis Lua script mirrors."""

from __future__ import annotations

import pytest

from heartrate_serve.core.alerts import AlertEvent, AlertRules, AlertState, step_alerts
from heartrate_serve.core.constants import Classification
from heartrate_serve.core.errors import InvalidRequest

N, L, H = Classification.NORMAL, Classification.LOW, Classification.HIGH
INSTANT = AlertRules(sustain_ms=0, clear_readings=3)
SUSTAINED = AlertRules(sustain_ms=10_000, clear_readings=3)


def run(
    readings: list[tuple[int, int]], rules: AlertRules, state: AlertState | None = None
) -> tuple[AlertState, list[tuple[str, int, int]]]:
    """Steps (ts_ms, classification) readings; events as (kind, type, ts) tuples."""
    ts = [r[0] for r in readings]
    cls = [r[1] for r in readings]
    new, events = step_alerts(state or AlertState(), ts, cls, rules)
    return new, [(e.kind, e.alert_type, e.ts_ms) for e in events]


@pytest.mark.parametrize(
    ("readings", "rules", "events", "active"),
    [
        # Raised once at the first out-of-band reading, not per reading.
        ([(1, H), (2, H), (3, H)], INSTANT, [("raised", H, 1)], H),
        # Cleared after 3 consecutive normals, not before.
        ([(1, H), (2, N), (3, N)], INSTANT, [("raised", H, 1)], H),
        ([(1, H), (2, N), (3, N), (4, N)], INSTANT, [("raised", H, 1), ("cleared", H, 4)], 0),
        # An out-of-band reading resets the normal count.
        ([(1, H), (2, N), (3, N), (4, H), (5, N), (6, N)], INSTANT, [("raised", H, 1)], H),
        # LOW -> HIGH switch: the old alert is cleared, the new raised, at the same reading.
        ([(1, L), (2, H)], INSTANT, [("raised", L, 1), ("cleared", L, 2), ("raised", H, 2)], H),
        # Sustain window: raised only once out of band for sustain_ms.
        ([(1_000, H), (6_000, H), (10_999, H)], SUSTAINED, [], 0),
        ([(1_000, H), (6_000, H), (11_000, H)], SUSTAINED, [("raised", H, 11_000)], H),
        # A normal reading restarts the sustain window.
        ([(1_000, H), (6_000, N), (7_000, H), (16_000, H)], SUSTAINED, [], 0),
        ([(1_000, H), (6_000, N), (7_000, H), (17_000, H)], SUSTAINED, [("raised", H, 17_000)], H),
        # The initial state's last_ts_ms is 0: a reading at 0 counts as late.
        ([(0, H)], INSTANT, [], 0),
        # Input order does not matter: readings are taken in timestamp order.
        ([(4, N), (1, H), (3, N), (2, N)], INSTANT, [("raised", H, 1), ("cleared", H, 4)], 0),
        # Normal readings with no active alert do nothing.
        ([(1, N), (2, N)], INSTANT, [], 0),
        # Clear, then raise again.
        (
            [(1, L), (2, N), (3, N), (4, N), (5, L)],
            INSTANT,
            [("raised", L, 1), ("cleared", L, 4), ("raised", L, 5)],
            L,
        ),
    ],
)
def test_hysteresis_table(
    readings: list[tuple[int, int]],
    rules: AlertRules,
    events: list[tuple[str, int, int]],
    active: int,
) -> None:
    """Raise once, clear after clear_readings normals, sustain window, switches, ordering."""
    state, got = run(readings, rules)
    assert got == events
    assert state.active == active
    assert state.last_ts_ms == max(r[0] for r in readings)


def test_late_readings_change_nothing() -> None:
    """A reading at or before last_ts_ms is ignored, across batches and inside one batch."""
    state, _ = run([(100, H)], INSTANT)
    again, events = run([(50, N), (100, N), (90, L)], INSTANT, state)
    assert (again, events) == (state, [])
    same_ts, events = run([(200, N), (200, N), (200, N)], INSTANT, state)
    assert (same_ts.normal_count, events) == (1, [])


def test_state_fields_after_raise_and_clear() -> None:
    """since_ms, pending and counters hold the documented values."""
    state, _ = run([(1_000, H), (4_000, L)], SUSTAINED)
    assert state == AlertState(0, 0, L, 4_000, 0, 4_000)
    state, _ = run([(14_000, L)], SUSTAINED, state)
    assert state == AlertState(L, 14_000, 0, 0, 0, 14_000)
    state, _ = run([(15_000, N), (16_000, N)], SUSTAINED, state)
    assert state == AlertState(L, 14_000, 0, 0, 2, 16_000)
    state, events = run([(17_000, N)], SUSTAINED, state)
    assert (state, events) == (AlertState(0, 0, 0, 0, 0, 17_000), [("cleared", L, 17_000)])


def test_batches_compose() -> None:
    """Stepping one batch equals stepping its halves in turn (the store applies per request)."""
    readings = [(t, c) for t, c in enumerate([N, H, H, N, L, L, N, N, N, H, N, N, N], start=1)]
    whole, events = run(readings, INSTANT)
    first, events_a = run(readings[:6], INSTANT)
    second, events_b = run(readings[6:], INSTANT, first)
    assert (second, events_a + events_b) == (whole, events)


def test_empty_batch_and_events_are_dataclasses() -> None:
    """No readings: same state, no events; events are AlertEvent values."""
    state = AlertState(active=H, since_ms=5, last_ts_ms=5)
    assert step_alerts(state, [], [], INSTANT) == (state, [])
    _, events = step_alerts(AlertState(), [1], [L], INSTANT)
    assert events == [AlertEvent("raised", L, 1)]


def test_mismatched_lengths_are_rejected() -> None:
    """Timestamps and classifications must pair up."""
    with pytest.raises(InvalidRequest):
        step_alerts(AlertState(), [1, 2], [H], INSTANT)
