"""The `heartrate` client's gRPC requests, built from parsed arguments and readings."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from heartrate_serve.cli.inputs import Reading, fill_timestamps
from heartrate_serve.proto import heartrate_service_pb2 as pb

ZONE_MODELS = {
    "percent": "ZONE_MODEL_PERCENT_HRMAX",
    "reserve": "ZONE_MODEL_HEART_RATE_RESERVE",
    "custom": "ZONE_MODEL_CUSTOM",
}
FORMULAS = {
    name: f"HR_MAX_FORMULA_{name.upper()}" for name in ("fox", "tanaka", "gellish", "gulati")
}
SEXES = {"male": "SEX_MALE", "female": "SEX_FEMALE"}


def reading_request(reading: Reading, user_id: str) -> pb.HeartRateRequest:
    """The HeartRateRequest for one reading (timestamp_ms 0: stamped by the server)."""
    return pb.HeartRateRequest(bpm=reading.bpm, timestamp_ms=reading.timestamp_ms, user_id=user_id)


def submit_request(args: argparse.Namespace) -> pb.HeartRateRequest:
    """The request of `submit` from its parsed arguments."""
    ms = args.timestamp_ms if args.timestamp_ms is not None else args.timestamp
    return reading_request(Reading(args.bpm, ms or 0), args.user)


def status_request(args: argparse.Namespace) -> pb.StatusRequest:
    """The request of `status` from its parsed arguments."""
    return pb.StatusRequest(recent_count=args.recent, user_id=args.user)


def batch_request(readings: Sequence[Reading], user_id: str, now: int) -> pb.HeartRateBatchRequest:
    """A columnar batch; readings without a timestamp are spaced 1 s apart (see fill_timestamps)."""
    stamps = fill_timestamps([r.timestamp_ms for r in readings], now)
    return pb.HeartRateBatchRequest(
        user_id=user_id, bpm=[r.bpm for r in readings], timestamps_ms=stamps
    )


def set_enum_options(msg: Any, model: str | None, formula: str | None, sex: str | None) -> None:
    """Sets zone_model/hr_max_formula/sex (CLI names) on a zone request or profile when given."""
    if model:
        msg.zone_model = pb.ZoneModel.Value(ZONE_MODELS[model])
    if formula:
        msg.hr_max_formula = pb.HrMaxFormula.Value(FORMULAS[formula])
    if sex:
        msg.sex = pb.Sex.Value(SEXES[sex])


def zone_request(
    args: argparse.Namespace, readings: Sequence[Reading], now: int
) -> pb.ExerciseZoneRequest:
    """The CalculateExerciseZones request: options, plus columnar readings or a stored range."""
    req = pb.ExerciseZoneRequest(
        user_id=args.user,
        age=args.age,
        max_hr_bpm=args.max_hr,
        resting_bpm=args.resting,
        custom_zone_lower_bpm=args.lows or [],
        session_end_timestamp_ms=args.end or 0,
    )
    set_enum_options(req, args.model or ("custom" if args.lows else None), args.formula, args.sex)
    if args.max_gap is not None:
        req.max_gap_seconds = args.max_gap
    if args.from_ts is not None:
        req.stored_range.from_timestamp_ms = args.from_ts
        req.stored_range.to_timestamp_ms = args.to_ts
    else:
        req.bpm.extend(r.bpm for r in readings)
        req.timestamps_ms.extend(fill_timestamps([r.timestamp_ms for r in readings], now))
    return req


PROFILE_INTS = (
    ("age", "age"),
    ("resting", "resting_bpm"),
    ("max_hr", "max_hr_bpm"),
    ("normal_low", "normal_low_bpm"),
    ("normal_high", "normal_high_bpm"),
)


def profile_from_args(args: argparse.Namespace, base: pb.UserProfile | None) -> pb.UserProfile:
    """The profile to set: `base` (the stored one, or none) with the given options applied."""
    profile = pb.UserProfile()
    if base is not None:
        profile.CopyFrom(base)
    profile.user_id = args.user
    for option, field in PROFILE_INTS:
        if getattr(args, option) is not None:
            setattr(profile, field, getattr(args, option))
    set_enum_options(profile, args.model, args.formula, args.sex)
    if args.lows is not None:
        del profile.custom_zone_lower_bpm[:]
        profile.custom_zone_lower_bpm.extend(args.lows)
    if getattr(args, "webhook_url", None) is not None:
        profile.webhook_url = args.webhook_url
    return profile
