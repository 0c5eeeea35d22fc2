"""core.validation and core.errors: user ids, timestamps, batch validation, messages."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from heartrate_serve.core.constants import (
    DEFAULT_USER_ID,
    MIN_TIMESTAMP_MS,
    Classification,
    RejectReason,
)
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.validation import (
    MAX_SECONDS,
    ValidationRules,
    canonical_user_id,
    reject_message,
    resolve_timestamps_ms,
    validate_readings,
)

NOW = 1_750_000_000_000
DAY = 86_400_000
RULES = ValidationRules()
L, N, H = Classification.LOW, Classification.NORMAL, Classification.HIGH


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", DEFAULT_USER_ID), ("default", DEFAULT_USER_ID), ("alice", "alice"),
     ("a.b_c:d@e-f", "a.b_c:d@e-f"), ("x" * 128, "x" * 128), ("0", "0")],
)  # fmt: skip
def test_canonical_user_id_accepts(raw: str, expected: str) -> None:
    """Empty means the default user; valid ids pass unchanged."""
    assert canonical_user_id(raw) == expected


@pytest.mark.parametrize("raw", ["x" * 129, "a b", "ä", "a/b", "a\n", "\n", "a*"])
def test_canonical_user_id_rejects(raw: str) -> None:
    """Too long or foreign characters raise InvalidRequest(field="user_id")."""
    with pytest.raises(InvalidRequest) as err:
        canonical_user_id(raw)
    assert err.value.field == "user_id"
    assert "user_id" in str(err.value)


@pytest.mark.parametrize(
    ("ts_s", "ts_ms", "expected"),
    [(0, 0, NOW), (1_700_000_000, 0, 1_700_000_000_000), (0, 1_700_000_000_123, 1_700_000_000_123),
     (1_600_000_000, 1_700_000_000_123, 1_700_000_000_123)],
)  # fmt: skip
def test_resolve_timestamps_ms(ts_s: int, ts_ms: int, expected: int) -> None:
    """ms wins when non-zero, else seconds * 1000, both zero mean now."""
    got = resolve_timestamps_ms(np.array([ts_s]), np.array([ts_ms]), NOW)
    assert got.dtype == np.int64 and got.tolist() == [expected]


def test_resolve_timestamps_ms_is_vectorised() -> None:
    """Mixed rows resolve independently in one call."""
    got = resolve_timestamps_ms([0, 5, 0, 7], [0, 0, 9, 11], NOW)
    assert got.tolist() == [NOW, 5000, 9, 11]


@pytest.mark.parametrize(
    ("bpm", "ts", "reason", "cls"),
    [
        (39, NOW, RejectReason.BPM_OUT_OF_RANGE, N),
        (40, NOW, RejectReason.NONE, L),
        (49, NOW, RejectReason.NONE, L),
        (50, NOW, RejectReason.NONE, N),
        (150, NOW, RejectReason.NONE, N),
        (151, NOW, RejectReason.NONE, H),
        (180, NOW, RejectReason.NONE, H),
        (181, NOW, RejectReason.BPM_OUT_OF_RANGE, N),
        (181, NOW + 10 * DAY, RejectReason.BPM_OUT_OF_RANGE, N),
        (100, NOW - 30 * DAY, RejectReason.NONE, N),
        (100, NOW - 30 * DAY - 1, RejectReason.TIMESTAMP_TOO_OLD, N),
        (100, NOW + 300_000, RejectReason.NONE, N),
        (100, NOW + 300_001, RejectReason.TIMESTAMP_IN_FUTURE, N),
        (30, 5, RejectReason.BPM_OUT_OF_RANGE, N),
    ],
)
def test_validate_readings_table(bpm: int, ts: int, reason: int, cls: int) -> None:
    """Inclusive valid band, bpm checked first, retention and clock-skew windows, LOW/HIGH."""
    result = validate_readings(np.array([bpm], np.int32), np.array([ts], np.int64), NOW, RULES)
    assert (int(result.reason[0]), int(result.classification[0])) == (reason, cls)
    assert bool(result.valid[0]) is (reason == RejectReason.NONE)
    assert result.reason.dtype == np.uint8 and result.classification.dtype == np.uint8


@pytest.mark.parametrize(
    ("ts", "reason"),
    [(MIN_TIMESTAMP_MS - 1, RejectReason.TIMESTAMP_TOO_OLD), (MIN_TIMESTAMP_MS, RejectReason.NONE)],
)
def test_without_retention_only_year_2000_limits(ts: int, reason: int) -> None:
    """retention_ms=None keeps everything since 2000-01-01."""
    rules = ValidationRules(retention_ms=None)
    result = validate_readings(np.array([100], np.int32), np.array([ts], np.int64), NOW, rules)
    assert int(result.reason[0]) == reason


def test_per_reading_bands_override_the_rules() -> None:
    """Per-reading normal bands (user profiles) replace the default band; scalars broadcast."""
    bpm = np.array([55, 55, 120, 120], np.int32)
    ts = np.full(4, NOW, np.int64)
    per_reading = validate_readings(
        bpm, ts, NOW, RULES, np.array([60, 50, 50, 50]), [150, 150, 110, 150]
    )
    assert per_reading.classification.tolist() == [L, N, H, N]
    scalar = validate_readings(bpm, ts, NOW, RULES, 60, 110)
    assert scalar.classification.tolist() == [L, L, H, H]


def test_validate_readings_rejects_mismatched_lengths() -> None:
    """bpm and timestamps of different length are a bad request."""
    with pytest.raises(InvalidRequest) as err:
        validate_readings(np.array([1, 2], np.int32), np.array([NOW], np.int64), NOW, RULES)
    assert err.value.field == "timestamps"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"valid_min_bpm": 0}, "valid_min_bpm"), ({"valid_min_bpm": 180}, "valid_min_bpm"),
     ({"normal_low_bpm": 30}, "normal_low_bpm"), ({"normal_low_bpm": 150}, "normal_low_bpm"),
     ({"normal_high_bpm": 181}, "normal_high_bpm"), ({"max_future_ms": -1}, "max_future_ms"),
     ({"retention_ms": 0}, "retention_ms")],
)  # fmt: skip
def test_validation_rules_are_checked(kwargs: dict[str, int], field: str) -> None:
    """Inconsistent bands or limits raise InvalidRequest naming the field."""
    with pytest.raises(InvalidRequest) as err:
        ValidationRules(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("reason", "bpm", "ts", "fragment"),
    [
        (RejectReason.BPM_OUT_OF_RANGE, 200, NOW, "bpm 200 is outside the valid range 40-180"),
        (RejectReason.TIMESTAMP_TOO_OLD, 80, 5, "within the last 30 days"),
        (RejectReason.TIMESTAMP_IN_FUTURE, 80, NOW + DAY, "300 s ahead of the server clock"),
        (RejectReason.INVALID_USER_ID, 80, NOW, "user_id"),
        (RejectReason.STORE_UNAVAILABLE, 80, NOW, "retry"),
        (99, 80, NOW, "reason 99"),
    ],
)
def test_reject_message(reason: int, bpm: int, ts: int, fragment: str) -> None:
    """Every rejection reason has a clear, non-empty explanation."""
    assert fragment in reject_message(reason, bpm, ts, RULES)


def test_reject_message_empty_for_none_and_safe_for_absurd_times() -> None:
    """NONE has no message; timestamps beyond datetime's range still format."""
    assert reject_message(RejectReason.NONE, 80, NOW, RULES) == ""
    assert "ahead" in reject_message(RejectReason.TIMESTAMP_IN_FUTURE, 80, 2**62, RULES)


def test_invalid_request_pickles_with_its_field() -> None:
    """InvalidRequest survives pickling (Ray process boundaries) with field and message."""
    err = pickle.loads(pickle.dumps(InvalidRequest("age", "age must be > 0")))
    assert (err.field, str(err)) == ("age", "age must be > 0")
    assert isinstance(err, ValueError)


def test_invalid_request_message_names_the_field() -> None:
    """A message that does not name the field is prefixed with it."""
    assert str(InvalidRequest("bpm", "must not be empty")) == "bpm: must not be empty"
    assert str(InvalidRequest("bpm")) == "bpm: is invalid"


@pytest.mark.parametrize(
    ("ts_s", "ts_ms"),
    [
        (0, 0),
        (1_700_000_000, 0),
        (0, 1_700_000_000_123),
        (1_700_000_000, 1_700_000_000_456),
        (-5, 0),
        (0, -7),
        (2**63 - 1, 0),
        (-(2**63), 0),
        (MAX_SECONDS + 1, 0),
    ],
)
def test_one_reading_timestamp_matches_the_vectorised_rule(ts_s: int, ts_ms: int) -> None:
    """The stream hot path's plain-int resolution (service/convert.py) gives what
    resolve_timestamps_ms gives, saturation included."""
    from heartrate_serve.service.convert import reading_ts_ms

    now_ms = 1_700_000_500_000
    expected = int(resolve_timestamps_ms(np.array([ts_s]), np.array([ts_ms]), now_ms)[0])
    assert reading_ts_ms(ts_s, ts_ms, now_ms) == expected
