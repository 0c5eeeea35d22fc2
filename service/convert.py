"""Pure conversions between protobuf messages and core values (no Ray, no Redis)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.alert_feed import AlertRecord
from heartrate_serve.core.alerts import AlertRules, AlertState
from heartrate_serve.core.constants import (
    ORIGINAL_OUT_OF_RANGE,
    Classification,
    RejectReason,
)
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.profiles import UserProfile, validate_profile
from heartrate_serve.core.stats import summarize
from heartrate_serve.core.validation import (
    MAX_SECONDS,
    ValidationRules,
    canonical_user_id,
    reject_message,
    resolve_timestamps_ms,
)
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service.pipeline import BatchOutcome, ReadingBatch

STATUS_DEFAULT_RECENT = 10
STATUS_MAX_RECENT = 1000
BATCH_MAX_READINGS = 100_000


def now_resolved(ts_s: Sequence[int], ts_ms: Sequence[int], now_ms: int) -> NDArray[np.int64]:
    """Resolves (seconds, milliseconds) timestamp pairs to milliseconds, 0/0 meaning now."""
    return resolve_timestamps_ms(
        np.asarray(ts_s, dtype=np.int64), np.asarray(ts_ms, dtype=np.int64), now_ms
    )


def reading_ts_ms(ts_s: int, ts_ms: int, now_ms: int) -> int:
    """resolve_timestamps_ms for one reading, in plain ints (a stream message's hot path: the
    numpy version costs ~20 us for one value)."""
    if ts_ms:
        return ts_ms
    if ts_s:
        return max(-MAX_SECONDS, min(MAX_SECONDS, ts_s)) * 1000
    return now_ms


def reading_from_request(req: pb.HeartRateRequest, now_ms: int) -> ReadingBatch:
    """One HeartRateRequest as a batch of one; raises InvalidRequest for a bad user_id."""
    user = canonical_user_id(req.user_id)
    ts = reading_ts_ms(req.timestamp, req.timestamp_ms, now_ms)
    return ReadingBatch(user, np.array([req.bpm], dtype=np.int32), np.array([ts], dtype=np.int64))


def batch_from_request(req: pb.HeartRateBatchRequest, now_ms: int) -> ReadingBatch:
    """A columnar batch request as a ReadingBatch; raises InvalidRequest naming the bad field."""
    user = canonical_user_id(req.user_id)
    n = len(req.bpm)
    if n == 0:
        raise InvalidRequest("bpm", "bpm must hold at least one reading")
    if n > BATCH_MAX_READINGS:
        raise InvalidRequest("bpm", f"bpm holds {n} readings; at most {BATCH_MAX_READINGS}")
    zeros = np.zeros(n, dtype=np.int64)
    if len(req.timestamps_ms):
        field, ts_ms, ts_s = "timestamps_ms", np.asarray(req.timestamps_ms, dtype=np.int64), zeros
    else:
        field, ts_ms, ts_s = "timestamps", zeros, np.asarray(req.timestamps, dtype=np.int64)
    if len(req.timestamps_ms or req.timestamps) != n:
        raise InvalidRequest(field, f"{field} must have one entry per bpm ({n})")
    ts = resolve_timestamps_ms(ts_s, ts_ms, now_ms)
    return ReadingBatch(user, np.asarray(req.bpm, dtype=np.int32), ts)


def reading_response(
    out: BatchOutcome, i: int, bpm: int, ts_ms: int, rules: ValidationRules
) -> pb.HeartRateResponse:
    """The answer for reading i of an outcome, in the original contract's terms."""
    reason = int(out.reason[i])
    if reason:
        detail = _message(reason, bpm, ts_ms, rules)
        # The replaced service's text where it had the case; the precise one in error_detail.
        error = ORIGINAL_OUT_OF_RANGE if reason == RejectReason.BPM_OUT_OF_RANGE else detail
        return pb.HeartRateResponse(
            success=False,
            error=error,
            reject_reason=reason,  # type: ignore[arg-type]
            timestamp_ms=ts_ms,
            error_detail=detail,
        )
    cls = int(out.classification[i])
    return pb.HeartRateResponse(
        success=True,
        alert_triggered=cls != Classification.NORMAL,
        alert_type=cls,  # type: ignore[arg-type]
        duplicate=bool(out.duplicate[i]),
        timestamp_ms=ts_ms,
    )


def _message(reason: int, bpm: int, ts_ms: int, rules: ValidationRules) -> str:
    if reason == RejectReason.STORE_UNAVAILABLE:
        return "Redis is down or unreachable: the reading was not stored; retry later"
    if reason == RejectReason.INVALID_USER_ID:
        return "user_id must be 1-128 characters of [A-Za-z0-9._:@-]"
    return reject_message(reason, bpm, ts_ms, rules)


def batch_response(
    batch: ReadingBatch, out: BatchOutcome, alert: tuple[int, int], rules: ValidationRules
) -> pb.HeartRateBatchResponse:
    """Counts plus per-reading results for the rejected and alerting readings only."""
    rejected = out.reason != 0
    alerting = ~rejected & (out.classification != 0)
    resp = pb.HeartRateBatchResponse(
        accepted=int((~rejected & ~out.duplicate).sum()),
        rejected=int(rejected.sum()),
        duplicate=int((~rejected & out.duplicate).sum()),
        alert_active=alert[0] != 0,
        alert_type=alert[0],  # type: ignore[arg-type]
    )
    for i in np.flatnonzero(rejected | alerting).tolist():
        r = reading_response(out, i, int(batch.bpm[i]), int(batch.ts_ms[i]), rules)
        resp.results.add(
            index=i,
            success=r.success,
            error=r.error_detail,  # a new RPC: the precise text
            reject_reason=r.reject_reason,
            alert_triggered=r.alert_triggered,
            alert_type=r.alert_type,
        )
    return resp


def status_limit(recent_count: int) -> int:
    """How many recent readings a StatusRequest asks for (0: the default; capped)."""
    if recent_count < 0:
        raise InvalidRequest("recent_count", "recent_count must be >= 0")
    return min(recent_count or STATUS_DEFAULT_RECENT, STATUS_MAX_RECENT)


def status_response(
    ts_ms: NDArray[np.int64],
    bpm: NDArray[np.int32],
    cls: NDArray[np.uint8],
    state: AlertState,
    thresholds: pb.Thresholds,
) -> pb.StatusResponse:
    """A StatusResponse from the newest readings (newest first) and the alert state."""
    stats = summarize(bpm)
    resp = pb.StatusResponse(
        alert_active=state.active != 0,
        alert_type=state.active,  # type: ignore[arg-type]
        alert_since=state.since_ms // 1000,
        alert_since_ms=state.since_ms,
        stats=pb.HeartRateStats(
            average_bpm=stats.mean_bpm,
            min_bpm=stats.min_bpm,
            max_bpm=stats.max_bpm,
            count=stats.count,
        ),
        thresholds=thresholds,
    )
    for t, b, c in zip(ts_ms.tolist(), bpm.tolist(), cls.tolist(), strict=True):
        resp.recent_measurements.add(
            bpm=b, timestamp=t // 1000, timestamp_ms=t, triggered_alert=c != 0
        )
    return resp


def thresholds(rules: ValidationRules, alerts: AlertRules, band: tuple[int, int]) -> pb.Thresholds:
    """The thresholds in force for one user: its profile's band over the defaults."""
    return pb.Thresholds(
        valid_min_bpm=rules.valid_min_bpm,
        valid_max_bpm=rules.valid_max_bpm,
        normal_low_bpm=band[0] or rules.normal_low_bpm,
        normal_high_bpm=band[1] or rules.normal_high_bpm,
        alert_sustain_seconds=alerts.sustain_ms // 1000,
        alert_clear_readings=alerts.clear_readings,
    )


def profile_from_proto(p: pb.UserProfile) -> UserProfile:
    """A validated core profile from its message; raises InvalidRequest naming the field."""
    return validate_profile(
        UserProfile(
            user_id=canonical_user_id(p.user_id),
            age=p.age,
            sex=p.sex,
            resting_bpm=p.resting_bpm,
            max_hr_bpm=p.max_hr_bpm,
            zone_model=p.zone_model,
            hr_max_formula=p.hr_max_formula,
            normal_low_bpm=p.normal_low_bpm,
            normal_high_bpm=p.normal_high_bpm,
            custom_zone_lower_bpm=tuple(p.custom_zone_lower_bpm),
            webhook_url=p.webhook_url,
        )
    )


def profile_to_proto(p: UserProfile) -> pb.UserProfile:
    """The message for a core profile."""
    return pb.UserProfile(
        user_id=p.user_id,
        age=p.age,
        sex=p.sex,  # type: ignore[arg-type]
        resting_bpm=p.resting_bpm,
        max_hr_bpm=p.max_hr_bpm,
        zone_model=p.zone_model,  # type: ignore[arg-type]
        hr_max_formula=p.hr_max_formula,  # type: ignore[arg-type]
        normal_low_bpm=p.normal_low_bpm,
        normal_high_bpm=p.normal_high_bpm,
        custom_zone_lower_bpm=list(p.custom_zone_lower_bpm),
        webhook_url=p.webhook_url,
    )


def alert_event(record: AlertRecord) -> pb.AlertEvent:
    """An AlertRecord as the wire's AlertEvent."""
    return pb.AlertEvent(
        event_id=record.event_id,
        user_id=record.user_id,
        alert_type=record.alert_type,  # type: ignore[arg-type]
        active=record.active,
        at_ms=record.at_ms,
        bpm=record.bpm,
    )
