"""Request validation: user ids, timestamps, and vectorised checks of reading batches."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import ArrayLike, NDArray

from heartrate_serve.core.constants import (
    DEFAULT_RETENTION_DAYS,
    DEFAULT_USER_ID,
    MAX_FUTURE_MS,
    MIN_TIMESTAMP_MS,
    NORMAL_HIGH_BPM,
    NORMAL_LOW_BPM,
    USER_ID_PATTERN,
    VALID_MAX_BPM,
    VALID_MIN_BPM,
    Classification,
    RejectReason,
)
from heartrate_serve.core.errors import InvalidRequest

MS_PER_DAY = 86_400_000
# Unix seconds whose milliseconds still fit int64; beyond it seconds saturate (so a hostile
# value is refused as too old / in the future instead of wrapping around onto a valid time).
MAX_SECONDS = int(np.iinfo(np.int64).max) // 1000
_USER_ID_RE = re.compile(USER_ID_PATTERN)

BandArg = int | ArrayLike | None


def canonical_user_id(user_id: str) -> str:
    """Returns the canonical user id: "" means the default user.

    Args:
        user_id: The id as sent; empty for old clients.

    Returns:
        DEFAULT_USER_ID for "", else user_id unchanged.

    Raises:
        InvalidRequest: field "user_id", when it is not 1-128 characters of [A-Za-z0-9._:@-].
    """
    if user_id == "":
        return str(DEFAULT_USER_ID)
    if not _USER_ID_RE.fullmatch(user_id):
        raise InvalidRequest("user_id", "user_id must be 1-128 characters of [A-Za-z0-9._:@-]")
    return user_id


def seconds_to_ms(ts_s: ArrayLike) -> NDArray[np.int64]:
    """Unix seconds to milliseconds, saturating at +-MAX_SECONDS instead of wrapping around
    int64 (seconds * 1000 of a value like 1789334176945883078 wraps onto today)."""
    sec = np.asarray(ts_s, dtype=np.int64)
    clipped: NDArray[np.int64] = np.clip(sec, -MAX_SECONDS, MAX_SECONDS) * 1000
    return clipped


def resolve_timestamps_ms(ts_s: ArrayLike, ts_ms: ArrayLike, now_ms: int) -> NDArray[np.int64]:
    """Resolves per-reading (seconds, milliseconds) pairs to Unix milliseconds.

    Args:
        ts_s: Unix seconds per reading (0: unset).
        ts_ms: Unix milliseconds per reading (0: unset); wins when non-zero.
        now_ms: The server clock, used when both are zero.

    Returns:
        int64 milliseconds, one per reading; seconds beyond int64 milliseconds saturate
        (seconds_to_ms), so they are refused as out of the time window, never wrapped.
    """
    sec = np.asarray(ts_s, dtype=np.int64)
    milli = np.asarray(ts_ms, dtype=np.int64)
    from_s = np.where(sec != 0, seconds_to_ms(sec), np.int64(now_ms))
    return np.where(milli != 0, milli, from_s).astype(np.int64, copy=False)


@dataclass(frozen=True)
class ValidationRules:
    """Valid and normal bpm bands (inclusive) and timestamp limits, in bpm and milliseconds."""

    valid_min_bpm: int = VALID_MIN_BPM
    valid_max_bpm: int = VALID_MAX_BPM
    normal_low_bpm: int = NORMAL_LOW_BPM
    normal_high_bpm: int = NORMAL_HIGH_BPM
    max_future_ms: int = MAX_FUTURE_MS
    retention_ms: int | None = DEFAULT_RETENTION_DAYS * MS_PER_DAY

    def __post_init__(self) -> None:
        """Checks 0 < valid_min < valid_max, the normal band inside it, limits non-negative."""
        if not 0 < self.valid_min_bpm < self.valid_max_bpm:
            raise InvalidRequest("valid_min_bpm", "valid_min_bpm must be > 0 and < valid_max_bpm")
        if not self.valid_min_bpm <= self.normal_low_bpm < self.normal_high_bpm:
            raise InvalidRequest(
                "normal_low_bpm", "normal_low_bpm must be >= valid_min_bpm and < normal_high_bpm"
            )
        if self.normal_high_bpm > self.valid_max_bpm:
            raise InvalidRequest("normal_high_bpm", "normal_high_bpm must be <= valid_max_bpm")
        if self.max_future_ms < 0:
            raise InvalidRequest("max_future_ms", "max_future_ms must be >= 0")
        if self.retention_ms is not None and self.retention_ms <= 0:
            raise InvalidRequest("retention_ms", "retention_ms must be > 0 or None")

    def oldest_ms(self, now_ms: int) -> int:
        """The oldest accepted timestamp at now_ms (retention window, never before 2000)."""
        if self.retention_ms is None:
            return int(MIN_TIMESTAMP_MS)
        return max(int(MIN_TIMESTAMP_MS), now_ms - self.retention_ms)


@dataclass(frozen=True)
class ValidationResult:
    """Per-reading RejectReason and Classification (0 for rejected readings), both uint8."""

    reason: NDArray[np.uint8]
    classification: NDArray[np.uint8]

    @property
    def valid(self) -> NDArray[np.bool_]:
        """The mask of accepted readings."""
        mask: NDArray[np.bool_] = self.reason == int(RejectReason.NONE)
        return mask


def validate_readings(
    bpm: ArrayLike,
    ts_ms: ArrayLike,
    now_ms: int,
    rules: ValidationRules,
    normal_low_bpm: BandArg = None,
    normal_high_bpm: BandArg = None,
) -> ValidationResult:
    """Validates and classifies a batch of readings, vectorised.

    Args:
        bpm: bpm per reading.
        ts_ms: Unix milliseconds per reading (already resolved).
        now_ms: The server clock.
        rules: Bands and limits.
        normal_low_bpm: Per-reading (or scalar) normal band low; None: the rules' band.
        normal_high_bpm: Per-reading (or scalar) normal band high; None: the rules' band.

    Returns:
        The reject reason per reading (bpm checked before the timestamp) and, for accepted
        readings, LOW (< low), HIGH (> high) or NORMAL.

    Raises:
        InvalidRequest: field "timestamps" when bpm and ts_ms differ in length.
    """
    b = np.asarray(bpm, dtype=np.int32)
    t = np.asarray(ts_ms, dtype=np.int64)
    if b.shape != t.shape:
        raise InvalidRequest("timestamps", "timestamps must have one entry per bpm")
    reason = np.zeros(b.shape, dtype=np.uint8)
    reason[t > now_ms + rules.max_future_ms] = RejectReason.TIMESTAMP_IN_FUTURE
    reason[t < rules.oldest_ms(now_ms)] = RejectReason.TIMESTAMP_TOO_OLD
    reason[(b < rules.valid_min_bpm) | (b > rules.valid_max_bpm)] = RejectReason.BPM_OUT_OF_RANGE
    low = rules.normal_low_bpm if normal_low_bpm is None else np.asarray(normal_low_bpm)
    high = rules.normal_high_bpm if normal_high_bpm is None else np.asarray(normal_high_bpm)
    cls = np.zeros(b.shape, dtype=np.uint8)
    cls[b < low] = Classification.LOW
    cls[b > high] = Classification.HIGH
    cls[reason != RejectReason.NONE] = Classification.NORMAL
    return ValidationResult(reason=reason, classification=cls)


def _iso(ts_ms: int) -> str:
    """ts_ms as an ISO-8601 UTC time, or as plain milliseconds when out of datetime's range."""
    try:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return f"{ts_ms} ms"


def reject_message(reason: int, bpm: int, ts_ms: int, rules: ValidationRules) -> str:
    """A human-readable explanation of why one reading was rejected.

    Args:
        reason: A RejectReason value.
        bpm: The reading's bpm.
        ts_ms: The reading's timestamp, Unix milliseconds.
        rules: The rules it was checked against.

    Returns:
        The message; "" for RejectReason.NONE.
    """
    if reason == RejectReason.NONE:
        return ""
    if reason == RejectReason.BPM_OUT_OF_RANGE:
        lo, hi = rules.valid_min_bpm, rules.valid_max_bpm
        return f"bpm {bpm} is outside the valid range {lo}-{hi}"
    if reason == RejectReason.TIMESTAMP_TOO_OLD:
        rule = "after 2000-01-01"
        if rules.retention_ms is not None:
            rule = f"within the last {rules.retention_ms / MS_PER_DAY:g} days and {rule}"
        return f"timestamp {ts_ms} ({_iso(ts_ms)}) is too old: readings must be {rule}"
    if reason == RejectReason.TIMESTAMP_IN_FUTURE:
        ahead = f"{rules.max_future_ms / 1000:g} s"
        return f"timestamp {ts_ms} ({_iso(ts_ms)}) is more than {ahead} ahead of the server clock"
    if reason == RejectReason.INVALID_USER_ID:
        return "user_id must be 1-128 characters of [A-Za-z0-9._:@-]"
    if reason == RejectReason.STORE_UNAVAILABLE:
        return "the store is unavailable: the reading was not stored; retry later"
    return f"reading rejected (reason {reason})"
