"""The `heartrate` client's gRPC requests, built from arguments and readings."""

from __future__ import annotations

import argparse

from heartrate_serve.cli import parser as cli_parser
from heartrate_serve.cli import requests as cli_requests
from heartrate_serve.cli.inputs import Reading
from heartrate_serve.proto import heartrate_service_pb2 as pb

T0_S = 1_700_000_000
T0_MS = T0_S * 1000


def args(*argv: str) -> argparse.Namespace:
    """Parses a command line as `heartrate` would."""
    return cli_parser.parse_args(list(argv))


def test_submit_request() -> None:
    """submit sends bpm, user and the timestamp as ms (none: 0, the server's now)."""
    assert cli_requests.submit_request(
        args("--user", "ann", "submit", "72")
    ) == pb.HeartRateRequest(bpm=72, user_id="ann")
    req = cli_requests.submit_request(args("submit", "72", "--timestamp", "1700000000.5"))
    assert req.timestamp_ms == T0_MS + 500
    req = cli_requests.submit_request(args("submit", "72", "--timestamp-ms", str(T0_MS)))
    assert req.timestamp_ms == T0_MS and req.timestamp == 0


def test_status_request() -> None:
    """status asks for --recent readings of --user."""
    req = cli_requests.status_request(args("--user", "bo", "status", "--recent", "3"))
    assert req == pb.StatusRequest(recent_count=3, user_id="bo")


def test_batch_request_is_columnar_with_filled_timestamps() -> None:
    """batch sends bpm and timestamps_ms columns; missing times are spaced 1 s apart."""
    readings = [Reading(60, T0_MS), Reading(61), Reading(62, T0_MS + 5000)]
    req = cli_requests.batch_request(readings, "ann", now=0)
    assert list(req.bpm) == [60, 61, 62]
    assert list(req.timestamps_ms) == [T0_MS, T0_MS + 1000, T0_MS + 5000]
    assert req.user_id == "ann" and not req.timestamps


def test_zone_request_from_readings() -> None:
    """zones sends columnar readings plus every option, lows implying the custom model."""
    ns = args(
        "--user", "ann", "zones", "--age", "40", "--lows", "100,120,140", "--formula", "tanaka",
        "--max-hr", "185", "--resting", "55", "--max-gap", "0", "--end", "1700000060",
        "--sex", "female",
    )  # fmt: skip
    req = cli_requests.zone_request(ns, [Reading(110, T0_MS), Reading(130)], now=0)
    assert (req.user_id, req.age, req.max_hr_bpm, req.resting_bpm) == ("ann", 40, 185, 55)
    assert req.zone_model == pb.ZONE_MODEL_CUSTOM
    assert req.hr_max_formula == pb.HR_MAX_FORMULA_TANAKA and req.sex == pb.SEX_FEMALE
    assert list(req.custom_zone_lower_bpm) == [100, 120, 140]
    assert req.HasField("max_gap_seconds") and req.max_gap_seconds == 0
    assert req.session_end_timestamp_ms == T0_MS + 60_000
    assert list(req.bpm) == [110, 130] and list(req.timestamps_ms) == [T0_MS, T0_MS + 1000]
    assert not req.HasField("stored_range")


def test_zone_request_defaults_leave_choices_to_the_server() -> None:
    """Without options, model/formula/sex are unspecified and max_gap_seconds is unset."""
    req = cli_requests.zone_request(args("zones", "--age", "30"), [Reading(100, T0_MS)], now=0)
    assert req.zone_model == pb.ZONE_MODEL_UNSPECIFIED
    assert req.hr_max_formula == pb.HR_MAX_FORMULA_UNSPECIFIED and req.sex == pb.SEX_UNSPECIFIED
    assert not req.HasField("max_gap_seconds") and req.max_hr_bpm == 0 and req.resting_bpm == 0
    assert req.session_end_timestamp_ms == 0


def test_zone_request_from_stored_range() -> None:
    """--from/--to ask for stored readings and send none."""
    ns = args("zones", "--age", "30", "--model", "reserve", "--from", "1700000000", "--to",
              "2023-11-14T23:13:20Z")  # fmt: skip
    req = cli_requests.zone_request(ns, [], now=0)
    assert req.stored_range.from_timestamp_ms == T0_MS
    assert req.stored_range.to_timestamp_ms == T0_MS + 3_600_000
    assert req.zone_model == pb.ZONE_MODEL_HEART_RATE_RESERVE and not req.bpm


def test_profile_set_updates_the_stored_profile() -> None:
    """profile set keeps stored fields it is not given and replaces those it is."""
    base = pb.UserProfile(
        user_id="ann", age=40, resting_bpm=58, normal_high_bpm=160, custom_zone_lower_bpm=[90, 110]
    )
    ns = args("--user", "ann", "profile", "set", "--age", "41", "--sex", "male",
              "--model", "percent", "--formula", "gulati", "--lows", "95,115,135",
              "--normal-low", "45")  # fmt: skip
    p = cli_requests.profile_from_args(ns, base)
    assert (p.user_id, p.age, p.resting_bpm, p.normal_high_bpm, p.normal_low_bpm) == (
        "ann", 41, 58, 160, 45,
    )  # fmt: skip
    assert p.sex == pb.SEX_MALE and p.zone_model == pb.ZONE_MODEL_PERCENT_HRMAX
    assert p.hr_max_formula == pb.HR_MAX_FORMULA_GULATI
    assert list(p.custom_zone_lower_bpm) == [95, 115, 135]
    assert base.age == 40


def test_profile_set_without_a_stored_profile() -> None:
    """Without a stored profile only the given fields are set; 0 resets a value explicitly."""
    p = cli_requests.profile_from_args(
        args("profile", "set", "--max-hr", "0", "--resting", "50"), None
    )
    assert p == pb.UserProfile(resting_bpm=50)
    assert args("profile", "set", "--replace").replace
