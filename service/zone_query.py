"""A CalculateExerciseZones request resolved against the user's profile (pure, no Ray, no Redis):
what to compute (request fields over profile over defaults), over sent readings or a stored
range; InvalidRequest names the bad field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.constants import DEFAULT_RESTING_BPM, ORIGINAL_NO_MEASUREMENTS
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.profiles import CUSTOM_ZONE_COUNT, UserProfile
from heartrate_serve.core.validation import MAX_SECONDS, canonical_user_id, seconds_to_ms
from heartrate_serve.proto import heartrate_service_pb2 as pb

# The zone answer's durations are int32 seconds: sent readings (with the session end) may span
# at most that long (about 68 years), else the answer could not be written.
ZONE_MAX_SPAN_MS = (2**31 - 1) * 1000


@dataclass(frozen=True)
class ZoneQuery:
    """A zone request resolved against the user's profile: what to compute, over what."""

    user_id: str
    params: dict[str, Any]
    ts_ms: NDArray[np.int64] | None
    bpm: NDArray[np.int32] | None
    stored_range: tuple[int, int] | None


def zone_query(
    req: pb.ExerciseZoneRequest, profile: UserProfile | None, default_gap_s: int
) -> ZoneQuery:
    """Resolves a zone request (request fields over profile over defaults)."""
    prof = profile or UserProfile(user_id="")
    gap_s = req.max_gap_seconds if req.HasField("max_gap_seconds") else default_gap_s
    end_s = _seconds_to_ms(np.array([req.session_end_timestamp]), "session_end_timestamp")
    end_ms = req.session_end_timestamp_ms or int(end_s[0])
    lows_sent = len(req.custom_zone_lower_bpm)
    if lows_sent > CUSTOM_ZONE_COUNT[1]:
        raise InvalidRequest(
            "custom_zone_lower_bpm",
            f"custom_zone_lower_bpm holds {lows_sent} bounds; at most {CUSTOM_ZONE_COUNT[1]}",
        )
    params: dict[str, Any] = {
        "age": req.age or prof.age,
        "model": req.zone_model or prof.zone_model or 1,
        "formula": req.hr_max_formula or prof.hr_max_formula or 1,
        "max_hr_bpm": req.max_hr_bpm or prof.max_hr_bpm,
        "resting_bpm": req.resting_bpm or prof.resting_bpm or DEFAULT_RESTING_BPM,
        "custom_lows": tuple(req.custom_zone_lower_bpm) or prof.custom_zone_lower_bpm,
        "max_gap_ms": gap_s * 1000,
        "session_end_ms": end_ms or None,
        "sex": req.sex or prof.sex,
    }
    user = canonical_user_id(req.user_id)
    if req.HasField("stored_range"):
        rng = (req.stored_range.from_timestamp_ms, req.stored_range.to_timestamp_ms)
        if rng[1] < rng[0]:
            raise InvalidRequest("stored_range", "stored_range.to_timestamp_ms < from_timestamp_ms")
        return ZoneQuery(user, params, None, None, rng)
    field, ts, bpm = _zone_readings(req)
    _check_span(req, field, ts, end_ms)
    return ZoneQuery(user, params, ts, bpm, None)


def _zone_readings(
    req: pb.ExerciseZoneRequest,
) -> tuple[str, NDArray[np.int64], NDArray[np.int32]]:
    """The readings sent with a zone request, and the field their timestamps came from:
    columnar arrays when given, else measurements."""
    if len(req.bpm):
        n = len(req.bpm)
        if len(req.timestamps_ms):
            field, ts = "timestamps_ms", np.asarray(req.timestamps_ms, dtype=np.int64)
        else:
            field = "timestamps"
            ts = _seconds_to_ms(np.asarray(req.timestamps, dtype=np.int64), field)
        if len(ts) != n:
            raise InvalidRequest(field, f"{field} must have one entry per bpm ({n})")
        return field, ts, np.asarray(req.bpm, dtype=np.int32)
    if not req.measurements:
        raise InvalidRequest(
            "measurements",
            ORIGINAL_NO_MEASUREMENTS,
            detail="measurements (or bpm/timestamps) must not be empty",
            exact=True,
        )
    ms = req.measurements
    n = len(ms)
    milli = np.fromiter((m.timestamp_ms for m in ms), np.int64, n)
    sec = _seconds_to_ms(np.fromiter((m.timestamp for m in ms), np.int64, n), "measurements")
    ts = np.where(milli != 0, milli, sec)
    return "measurements", ts, np.fromiter((m.bpm for m in ms), np.int32, n)


def _seconds_to_ms(sec: NDArray[np.int64], field: str) -> NDArray[np.int64]:
    """Unix seconds as milliseconds; InvalidRequest naming field when one does not fit int64."""
    if len(sec) and (int(sec.max()) > MAX_SECONDS or int(sec.min()) < -MAX_SECONDS):
        raise InvalidRequest(field, f"{field}: Unix seconds must be within +-{MAX_SECONDS}")
    return seconds_to_ms(sec)


def _check_span(
    req: pb.ExerciseZoneRequest, field: str, ts: NDArray[np.int64], end_ms: int
) -> None:
    """Sent readings, with the session end, must span at most ZONE_MAX_SPAN_MS."""
    first, last = int(ts.min()), int(ts.max())
    if last - first > ZONE_MAX_SPAN_MS:
        raise InvalidRequest(
            field, f"{field}: the readings span {last - first} ms; at most {ZONE_MAX_SPAN_MS} ms"
        )
    if end_ms and end_ms - first > ZONE_MAX_SPAN_MS:
        name = (
            "session_end_timestamp_ms" if req.session_end_timestamp_ms else "session_end_timestamp"
        )
        raise InvalidRequest(
            name, f"{name} is more than {ZONE_MAX_SPAN_MS} ms after the first reading"
        )
