"""The `heartrate` client's pure parts: input lines, arguments, requests, output, errors."""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

import pytest

from heartrate_serve.deployments import cli
from heartrate_serve.deployments.cli import BadLine, Reading, Tally
from heartrate_serve.deployments.settings import Settings
from heartrate_serve.proto import heartrate_service_pb2 as pb

T0_S = 1_700_000_000
T0_MS = T0_S * 1000


def args(*argv: str) -> argparse.Namespace:
    """Parses a command line as `heartrate` would."""
    return cli.parse_args(list(argv))


# --- time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1700000000", T0_MS),
        ("1700000000.25", T0_MS + 250),
        ("1700000000123", T0_MS + 123),
        ("2023-11-14T22:13:20Z", T0_MS),
        ("2023-11-14T22:13:20", T0_MS),
        ("2023-11-14T23:13:20.500+01:00", T0_MS + 500),
        ("0", 0),
    ],
)
def test_parse_time_ms_seconds_millis_and_iso(text: str, ms: int) -> None:
    """Seconds, milliseconds (>= 1e11) and ISO 8601 (naive = UTC) all become Unix ms."""
    assert cli.parse_time_ms(text) == ms


@pytest.mark.parametrize("text", ["yesterday", "-5", "nan", "inf", "1e400", "2023-13-01"])
def test_parse_time_ms_rejects_nonsense(text: str) -> None:
    """Words, negative, non-finite and impossible dates raise ValueError."""
    with pytest.raises(ValueError):
        cli.parse_time_ms(text)


def test_format_ts_and_duration() -> None:
    """Times print as ISO 8601 UTC with ms ('-' for none), durations as m:ss / h:mm:ss."""
    assert cli.format_ts_ms(T0_MS + 5) == "2023-11-14T22:13:20.005Z"
    assert cli.format_ts_ms(0) == "-"
    assert cli.format_duration(59.6) == "1:00"
    assert cli.format_duration(3725) == "1:02:05"


# --- input lines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reading"),
    [
        ("72", Reading(72)),
        ("  72 \n", Reading(72)),
        ("72.0", Reading(72)),
        ("1700000000,72", Reading(72, T0_MS)),
        ("1700000000 , 72", Reading(72, T0_MS)),
        ("1700000000\t72", Reading(72, T0_MS)),
        ("1700000000123,72", Reading(72, T0_MS + 123)),
        ("2023-11-14T22:13:20Z,72", Reading(72, T0_MS)),
        ("200", Reading(200)),
        ('{"bpm": 72}', Reading(72)),
        ('{"bpm": 72, "timestamp": 1700000000}', Reading(72, T0_MS)),
        ('{"bpm": 72, "timestamp": 1700000000.5}', Reading(72, T0_MS + 500)),
        ('{"bpm": 72, "timestamp": "2023-11-14T22:13:20Z"}', Reading(72, T0_MS)),
        ('{"bpm": 72, "timestamp": 1, "timestamp_ms": 1700000000007}', Reading(72, T0_MS + 7)),
        ('{"bpm": "72", "device": "strap"}', Reading(72)),
    ],
)
def test_parse_line_accepts_every_format(line: str, reading: Reading) -> None:
    """'bpm', 'timestamp,bpm' (s, ms or ISO) and JSON objects parse to the same Reading."""
    assert cli.parse_line(line) == reading


@pytest.mark.parametrize("line", ["", "   \n", "# comment", "  # 1700000000,72"])
def test_blank_and_comment_lines_are_skipped(line: str) -> None:
    """Blank and # lines are no reading and no error."""
    assert cli.parse_line(line) is None


@pytest.mark.parametrize(
    "line",
    [
        "abc",
        "72.5",
        "1,2,3",
        "x,72",
        "-5,72",
        "1700000000,",
        "nan",
        "1e400,72",
        "99999999999999",
        "{not json",
        '{"timestamp": 1700000000}',
        '{"bpm": true}',
        '{"bpm": null}',
        '{"bpm": 72, "timestamp": [1]}',
        '{"bpm": 72, "timestamp_ms": -1}',
        '{"bpm": 72, "timestamp": "soon"}',
        "[72]",
    ],
)
def test_malformed_lines_raise_value_error(line: str) -> None:
    """Every malformed line raises ValueError with a reason, never anything else."""
    with pytest.raises(ValueError, match=r"\S"):
        cli.parse_line(line)


def test_parse_lines_reports_and_skips_bad_lines() -> None:
    """Bad lines come out as BadLine with their line number; parsing carries on after them."""
    lines = ["timestamp,bpm\n", "72\n", "\n", "oops\n", "# note\n", "1700000000,80\n", "7,8,9"]
    items = list(cli.parse_lines(lines))
    assert items[0] == Reading(72)
    assert isinstance(items[1], BadLine) and items[1].lineno == 4 and items[1].text == "oops"
    assert items[2] == Reading(80, T0_MS)
    assert isinstance(items[3], BadLine) and items[3].lineno == 7
    assert len(items) == 4
    assert "line 4" in items[1].message() and "'oops'" in items[1].message()


def test_parse_lines_survives_pathological_json() -> None:
    """Deeply nested JSON and replacement characters are bad lines, not crashes."""
    items = list(cli.parse_lines(["[" * 100_000, "{" + '"a":' * 50_000, "\ufffd\ufffd", "60"]))
    assert [type(i) for i in items] == [BadLine, BadLine, BadLine, Reading]


def test_header_lines_are_skipped_silently() -> None:
    """A CSV header such as 'timestamp,bpm' or 'BPM' is neither a reading nor an error."""
    assert cli.is_header("timestamp,bpm") and cli.is_header('"Time"; "BPM"')
    assert not cli.is_header("72") and not cli.is_header("oops")
    assert list(cli.parse_lines(["BPM\n", "60\n"])) == [Reading(60)]


@pytest.mark.parametrize(
    ("stamps", "filled"),
    [
        ([0, 0, 0], [T0_MS - 2000, T0_MS - 1000, T0_MS]),
        ([0, 0, 5000, 0, 9000, 0], [3000, 4000, 5000, 6000, 9000, 10000]),
        ([1, 2, 3], [1, 2, 3]),
        ([], []),
    ],
)
def test_fill_timestamps(stamps: list[int], filled: list[int]) -> None:
    """Missing times are 1 s after the previous (before the first known; else ending now)."""
    assert cli.fill_timestamps(stamps, T0_MS) == filled


# --- arguments --------------------------------------------------------------------------------


def test_global_options_before_or_after_the_command() -> None:
    """--address/--user/--json/--timeout work on either side of the subcommand."""
    a = args("--address", "h:1", "--user", "u1", "--json", "--timeout", "2.5", "status")
    b = args("status", "--address", "h:1", "--user", "u1", "--json", "--timeout", "2.5")
    for ns in (a, b):
        assert (ns.address, ns.user, ns.json, ns.timeout) == ("h:1", "u1", True, 2.5)


def test_global_defaults() -> None:
    """No address (resolved later from Settings), default user, human output, 10 s timeout."""
    ns = args("status")
    assert (ns.address, ns.user, ns.json, ns.timeout, ns.recent) == (None, "", False, 10.0, 10)


def test_default_address_comes_from_settings() -> None:
    """The default address is 127.0.0.1 on the settings' gRPC port."""
    assert cli.default_address(Settings(grpc_port=6000)) == "127.0.0.1:6000"
    assert cli.default_address(Settings.from_env({"GRPC_PORT": "6001"})) == "127.0.0.1:6001"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["submit"],
        ["submit", "abc"],
        ["submit", "72", "--timestamp", "1", "--timestamp-ms", "1000"],
        ["status", "--recent", "-1"],
        ["status", "--timeout", "0"],
        ["zones", "--from", "1700000000"],
        ["zones", "--from", "1", "--to", "2", "readings.csv"],
        ["zones", "--lows", "120,100"],
        ["zones", "--lows", "a,b"],
        ["zones", "--model", "magic"],
        ["zones", "--end", "later"],
        ["profile"],
        ["profile", "set", "--sex", "other"],
        ["simulate", "--users", "2", "--rate", "1"],
        ["simulate", "--users", "0", "--rate", "1", "--duration", "5"],
        ["simulate", "--users", "1", "--rate", "-1", "--duration", "5"],
    ],
)
def test_bad_command_lines_exit_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad command lines exit with argparse's usage error (code 2), before any RPC."""
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_simulate_arguments() -> None:
    """simulate takes users, rate, duration, prefix and seed."""
    ns = args("simulate", "--users", "3", "--rate", "2", "--duration", "1.5", "--seed", "9")
    assert (ns.users, ns.rate, ns.duration, ns.user_prefix, ns.seed) == (3, 2.0, 1.5, "sim-", 9)


# --- requests ---------------------------------------------------------------------------------


def test_submit_request() -> None:
    """submit sends bpm, user and the timestamp as ms (none: 0, the server's now)."""
    assert cli.submit_request(args("--user", "ann", "submit", "72")) == pb.HeartRateRequest(
        bpm=72, user_id="ann"
    )
    req = cli.submit_request(args("submit", "72", "--timestamp", "1700000000.5"))
    assert req.timestamp_ms == T0_MS + 500
    req = cli.submit_request(args("submit", "72", "--timestamp-ms", str(T0_MS)))
    assert req.timestamp_ms == T0_MS and req.timestamp == 0


def test_status_request() -> None:
    """status asks for --recent readings of --user."""
    req = cli.status_request(args("--user", "bo", "status", "--recent", "3"))
    assert req == pb.StatusRequest(recent_count=3, user_id="bo")


def test_batch_request_is_columnar_with_filled_timestamps() -> None:
    """batch sends bpm and timestamps_ms columns; missing times are spaced 1 s apart."""
    readings = [Reading(60, T0_MS), Reading(61), Reading(62, T0_MS + 5000)]
    req = cli.batch_request(readings, "ann", now=0)
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
    req = cli.zone_request(ns, [Reading(110, T0_MS), Reading(130)], now=0)
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
    req = cli.zone_request(args("zones", "--age", "30"), [Reading(100, T0_MS)], now=0)
    assert req.zone_model == pb.ZONE_MODEL_UNSPECIFIED
    assert req.hr_max_formula == pb.HR_MAX_FORMULA_UNSPECIFIED and req.sex == pb.SEX_UNSPECIFIED
    assert not req.HasField("max_gap_seconds") and req.max_hr_bpm == 0 and req.resting_bpm == 0
    assert req.session_end_timestamp_ms == 0


def test_zone_request_from_stored_range() -> None:
    """--from/--to ask for stored readings and send none."""
    ns = args("zones", "--age", "30", "--model", "reserve", "--from", "1700000000", "--to",
              "2023-11-14T23:13:20Z")  # fmt: skip
    req = cli.zone_request(ns, [], now=0)
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
    p = cli.profile_from_args(ns, base)
    assert (p.user_id, p.age, p.resting_bpm, p.normal_high_bpm, p.normal_low_bpm) == (
        "ann", 41, 58, 160, 45,
    )  # fmt: skip
    assert p.sex == pb.SEX_MALE and p.zone_model == pb.ZONE_MODEL_PERCENT_HRMAX
    assert p.hr_max_formula == pb.HR_MAX_FORMULA_GULATI
    assert list(p.custom_zone_lower_bpm) == [95, 115, 135]
    assert base.age == 40


def test_profile_set_without_a_stored_profile() -> None:
    """Without a stored profile only the given fields are set; 0 resets a value explicitly."""
    p = cli.profile_from_args(args("profile", "set", "--max-hr", "0", "--resting", "50"), None)
    assert p == pb.UserProfile(resting_bpm=50)
    assert args("profile", "set", "--replace").replace


# --- responses --------------------------------------------------------------------------------

STORED = pb.HeartRateResponse(success=True, timestamp_ms=T0_MS)
HIGH = pb.HeartRateResponse(
    success=True, alert_triggered=True, alert_type=pb.HIGH_HEART_RATE, timestamp_ms=T0_MS
)
DUPLICATE = pb.HeartRateResponse(success=True, duplicate=True, timestamp_ms=T0_MS)
REJECTED = pb.HeartRateResponse(
    success=False,
    error="bpm 200 is outside 40-180",
    reject_reason=pb.REJECT_REASON_BPM_OUT_OF_RANGE,
    timestamp_ms=T0_MS,
)


def test_response_text() -> None:
    """Answers print as stored / ALERT HIGH / duplicate / rejected with the error and reason."""
    assert cli.response_text(STORED) == "stored at 2023-11-14T22:13:20.000Z"
    assert cli.response_text(HIGH).endswith("stored at 2023-11-14T22:13:20.000Z ALERT HIGH")
    assert cli.response_text(DUPLICATE).startswith("duplicate")
    assert cli.response_text(REJECTED) == ("rejected: bpm 200 is outside 40-180 (BPM_OUT_OF_RANGE)")
    assert cli.response_text(HIGH, Reading(170)) == (
        "170 bpm @ 2023-11-14T22:13:20.000Z: stored ALERT HIGH"
    )


def test_response_dict_is_one_json_object() -> None:
    """Answers become flat JSON objects with result, alert, error and reject reason."""
    assert cli.response_dict(HIGH, Reading(170)) == {
        "result": "stored", "bpm": 170, "timestamp_ms": T0_MS, "alert": "HIGH",
        "error": None, "reject_reason": None,
    }  # fmt: skip
    d = cli.response_dict(REJECTED)
    assert (d["result"], d["reject_reason"], d["alert"]) == ("rejected", "BPM_OUT_OF_RANGE", None)
    assert json.loads(json.dumps(d)) == d
    assert cli.response_dict(DUPLICATE)["result"] == "duplicate"


def test_unknown_reject_reason_from_a_newer_server() -> None:
    """An enum value this client does not know prints as its number instead of failing."""
    assert cli.reject_name(99) == "99" and cli.reject_name(0) is None
    assert cli.alert_name(pb.LOW_HEART_RATE) == "LOW" and cli.alert_name(pb.NONE) is None


def test_tally_counts_answers() -> None:
    """The stream summary counts accepted, rejected, alerts and duplicates separately."""
    tally = Tally(sent=5)
    for resp in (STORED, HIGH, DUPLICATE, REJECTED, HIGH):
        tally.add(resp)
    assert (tally.acked, tally.accepted, tally.rejected, tally.alerts, tally.duplicates) == (
        5, 3, 1, 2, 1,
    )  # fmt: skip
    assert tally.text().startswith("sent 5, acked 5, accepted 3, rejected 1, alerts 2")


def _status() -> pb.StatusResponse:
    """A status with an active HIGH alert and two readings."""
    return pb.StatusResponse(
        alert_active=True,
        alert_type=pb.HIGH_HEART_RATE,
        alert_since_ms=T0_MS,
        stats=pb.HeartRateStats(average_bpm=160.5, min_bpm=150, max_bpm=171, count=2),
        thresholds=pb.Thresholds(
            valid_min_bpm=40, valid_max_bpm=180, normal_low_bpm=50, normal_high_bpm=150,
            alert_sustain_seconds=0, alert_clear_readings=3,
        ),
        recent_measurements=[
            pb.HeartRateMeasurement(bpm=171, timestamp_ms=T0_MS + 1000, triggered_alert=True),
            pb.HeartRateMeasurement(bpm=150, timestamp=T0_S),
        ],
    )  # fmt: skip


def test_status_lines() -> None:
    """status prints the alert since when, thresholds, stats and a recent-readings table."""
    lines = cli.status_lines(_status())
    assert lines[0] == "alert: HIGH since 2023-11-14T22:13:20.000Z"
    assert "normal 50-150 bpm" in lines[1] and "valid 40-180 bpm" in lines[1]
    assert lines[2] == "stats: 2 readings, average 160.5 bpm, min 150, max 171"
    assert "2023-11-14T22:13:21.000Z" in lines[5] and "171" in lines[5] and "yes" in lines[5]
    assert "2023-11-14T22:13:20.000Z" in lines[6] and lines[6].rstrip().endswith("150")


def test_status_lines_without_alert_readings_or_thresholds() -> None:
    """An old-style empty status prints no alert and no readings."""
    assert cli.status_lines(pb.StatusResponse()) == ["alert: none", "stats: no readings"]
    d = cli.status_dict(pb.StatusResponse())
    assert d["alert"] is None and d["thresholds"] is None and d["recent"] == []


def test_status_dict() -> None:
    """status JSON has the alert, its start in ms, thresholds, stats and recent readings."""
    d = cli.status_dict(_status())
    assert (d["alert_active"], d["alert"], d["alert_since_ms"]) == (True, "HIGH", T0_MS)
    assert d["thresholds"]["alert_clear_readings"] == 3 and d["stats"]["count"] == 2
    assert d["recent"][1] == {"timestamp_ms": T0_MS, "bpm": 150, "alert": False}
    json.dumps(d)


def _zones() -> pb.ExerciseZoneResponse:
    """A zone answer with two zones, the top one open."""
    return pb.ExerciseZoneResponse(
        zone1_time=60, zone2_time=30, zone3_time=0, total_duration=120,
        average_heart_rate=121.25, hr_max_bpm=190, no_data_seconds=15.0,
        below_zones_seconds=30.0, banister_trimp=2.5, edwards_trimp=4.0,
        zone_model=pb.ZONE_MODEL_PERCENT_HRMAX, reading_count=121,
        zones=[
            pb.ZoneTime(index=1, lower_bpm=95, upper_bpm=114, seconds=60.0),
            pb.ZoneTime(index=2, lower_bpm=114, upper_bpm=0, seconds=30.0),
        ],
    )  # fmt: skip


def test_zones_lines() -> None:
    """zones prints HRmax, a per-zone table with shares, legacy zones, totals and TRIMPs."""
    lines = cli.zones_lines(_zones())
    assert lines[0] == "HRmax 190 bpm, model percent, 121 readings"
    assert "95-113" in lines[2] and "1:00" in lines[2] and "50.0%" in lines[2]
    assert "114+" in lines[3] and "25.0%" in lines[3]
    assert lines[4].lstrip().startswith("below") and "25.0%" in lines[4]
    assert "60 s / 30 s / 0 s" in lines[5]
    assert "total 120 s" in lines[6] and "no data 15.0 s" in lines[6] and "121.2" in lines[6]
    assert lines[7] == "TRIMP: Banister 2.5, Edwards 4.0"


def test_zones_with_no_data() -> None:
    """An empty zone answer prints without dividing by zero."""
    lines = cli.zones_lines(pb.ExerciseZoneResponse())
    assert any("total 0 s" in line for line in lines)


def test_zones_dict() -> None:
    """zones JSON lists zones (open top zone: upper None), legacy seconds, totals, TRIMPs."""
    d = cli.zones_dict(_zones())
    assert d["zones"][1] == {"index": 2, "lower_bpm": 114, "upper_bpm": None, "seconds": 30.0}
    assert d["legacy_zones_seconds"] == [60, 30, 0] and d["zone_model"] == "percent"
    assert (d["total_duration_seconds"], d["banister_trimp"]) == (120, 2.5)
    json.dumps(d)


def _batch() -> pb.HeartRateBatchResponse:
    """A batch answer with one rejected and one alerting reading."""
    return pb.HeartRateBatchResponse(
        accepted=2, rejected=1, duplicate=1, alert_active=True, alert_type=pb.LOW_HEART_RATE,
        results=[
            pb.BatchReadingResult(index=1, success=False, error="too old",
                                  reject_reason=pb.REJECT_REASON_TIMESTAMP_TOO_OLD),
            pb.BatchReadingResult(index=3, success=True, alert_triggered=True,
                                  alert_type=pb.LOW_HEART_RATE),
        ],
    )  # fmt: skip


def test_batch_lines_and_dict() -> None:
    """batch prints counts, the alert state and one line per reported reading."""
    readings = [Reading(60), Reading(61), Reading(62), Reading(45)]
    lines = cli.batch_lines(_batch(), readings)
    assert lines[0] == "accepted 2, rejected 1, duplicate 1; alert LOW active"
    assert lines[1] == "  #1 61 bpm: rejected: too old (TIMESTAMP_TOO_OLD)"
    assert lines[2] == "  #3 45 bpm: stored ALERT LOW"
    d = cli.batch_dict(_batch())
    assert d["results"][0]["reject_reason"] == "TIMESTAMP_TOO_OLD" and "bpm" not in d["results"][0]
    assert cli.batch_lines(pb.HeartRateBatchResponse(accepted=3)) == [
        "accepted 3, rejected 0, duplicate 0; no alert active"
    ]


def test_profile_lines_and_dict() -> None:
    """Profiles print with CLI enum names; unset values show as default."""
    p = pb.UserProfile(
        user_id="ann",
        age=41,
        sex=pb.SEX_FEMALE,
        hr_max_formula=pb.HR_MAX_FORMULA_TANAKA,
        custom_zone_lower_bpm=[100, 120],
    )
    d = cli.profile_dict(p)
    assert (d["sex"], d["hr_max_formula"], d["zone_model"]) == ("female", "tanaka", None)
    lines = cli.profile_lines(p)
    assert "user_id: ann" in lines and "age: 41" in lines and "sex: female" in lines
    assert "max_hr_bpm: default" in lines and "custom_zone_lower_bpm: 100,120" in lines
    assert "user_id: default user" in cli.profile_lines(pb.UserProfile())


# --- errors, simulate, main -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "details", "exit_code", "message"),
    [
        ("UNAVAILABLE", "failed to connect to all addresses; last error: Connection refused", 3,
         "error: cannot reach h:1 (is the service running?)"),
        ("UNAVAILABLE", "DNS resolution failed for nohost:1", 3, "error: cannot reach h:1"),
        ("UNAVAILABLE", "errors resolving x.invalid:1: Domain name not found", 3,
         "error: cannot reach h:1"),
        ("UNAVAILABLE", "Redis is down", 2, "error: UNAVAILABLE: Redis is down"),
        ("INVALID_ARGUMENT", "age must be > 0", 2, "error: INVALID_ARGUMENT: age must be > 0"),
        ("NOT_FOUND", "no profile for ann", 2, "error: NOT_FOUND: no profile for ann"),
    ],
)  # fmt: skip
def test_rpc_error_report(code: str, details: str, exit_code: int, message: str) -> None:
    """gRPC errors exit 2 with code and details; an unreachable service exits 3."""
    got_code, got_message = cli.rpc_error_report(code, details, "h:1")
    assert got_code == exit_code and got_message.startswith(message)


def test_sim_requests_and_ids() -> None:
    """Simulated readings advance 1/rate s from the start: ms above 1 Hz, else seconds."""
    assert cli.sim_user_ids("sim-", 3) == ["sim-1", "sim-2", "sim-3"]
    fast = cli.sim_request("sim-1", 120, 3, 4.0, T0_MS)
    assert (fast.timestamp_ms, fast.timestamp, fast.user_id, fast.bpm) == (
        T0_MS + 750, 0, "sim-1", 120,
    )  # fmt: skip
    slow = cli.sim_request("sim-2", 90, 3, 0.5, T0_MS + 400)
    assert (slow.timestamp, slow.timestamp_ms) == (T0_S + 6, 0)


def test_progress_and_summary() -> None:
    """The progress line and final summary carry sent, acked, rejected, alerts and time."""
    tally = Tally(sent=10, acked=8, accepted=7, rejected=1, alerts=2)
    assert cli.progress_line(tally, 3.04) == (
        "sent 10  acked 8  rejected 1  alerts 2  elapsed 3.0s"
    )
    s = cli.sim_summary(tally, users=2, rate_hz=1.0, duration_s=4.0, elapsed_s=4.0)
    assert (s["users"], s["sent"], s["acked"], s["acked_per_s"], s["alerts"]) == (2, 10, 8, 2.0, 2)
    assert "malformed" not in s
    json.dumps(s)


def _closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_main_unreachable_service_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """A refused connection gives 'cannot reach <address>' and exit code 3."""
    address = f"127.0.0.1:{_closed_port()}"
    assert cli.main(["--address", address, "--timeout", "5", "status"]) == 3
    assert f"cannot reach {address}" in capsys.readouterr().err


def test_main_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable input file is an input error (exit 1), reported before any RPC."""
    assert cli.main(["--address", "127.0.0.1:1", "batch", str(tmp_path / "nope.csv")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_main_file_without_readings_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file with only bad lines reports each of them and exits 1 without calling the service."""
    path = tmp_path / "bad.csv"
    path.write_text("oops\n\n# c\n1,2,3\n")
    assert cli.main(["--address", "127.0.0.1:1", "zones", "--age", "30", str(path)]) == 1
    err = capsys.readouterr().err
    assert "line 1" in err and "line 4" in err and "no readings" in err
