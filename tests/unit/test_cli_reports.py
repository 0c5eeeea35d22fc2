"""The `heartrate` client's reports: status, zones, batch and profile as text and JSON."""

from __future__ import annotations

import json

from heartrate_serve.cli import reports as cli_reports
from heartrate_serve.cli.inputs import Reading
from heartrate_serve.proto import heartrate_service_pb2 as pb

T0_S = 1_700_000_000
T0_MS = T0_S * 1000


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
    lines = cli_reports.status_lines(_status())
    assert lines[0] == "alert: HIGH since 2023-11-14T22:13:20.000Z"
    assert "normal 50-150 bpm" in lines[1] and "valid 40-180 bpm" in lines[1]
    assert lines[2] == "stats: 2 readings, average 160.5 bpm, min 150, max 171"
    assert "2023-11-14T22:13:21.000Z" in lines[5] and "171" in lines[5] and "yes" in lines[5]
    assert "2023-11-14T22:13:20.000Z" in lines[6] and lines[6].rstrip().endswith("150")


def test_status_lines_without_alert_readings_or_thresholds() -> None:
    """An old-style empty status prints no alert and no readings."""
    assert cli_reports.status_lines(pb.StatusResponse()) == ["alert: none", "stats: no readings"]
    d = cli_reports.status_dict(pb.StatusResponse())
    assert d["alert"] is None and d["thresholds"] is None and d["recent"] == []


def test_status_dict() -> None:
    """status JSON has the alert, its start in ms, thresholds, stats and recent readings."""
    d = cli_reports.status_dict(_status())
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
    lines = cli_reports.zones_lines(_zones())
    assert lines[0] == "HRmax 190 bpm, model percent, 121 readings"
    assert "95-113" in lines[2] and "1:00" in lines[2] and "50.0%" in lines[2]
    assert "114+" in lines[3] and "25.0%" in lines[3]
    assert lines[4].lstrip().startswith("below") and "25.0%" in lines[4]
    assert "60 s / 30 s / 0 s" in lines[5]
    assert "total 120 s" in lines[6] and "no data 15.0 s" in lines[6] and "121.2" in lines[6]
    assert lines[7] == "TRIMP: Banister 2.5, Edwards 4.0"


def test_zones_with_no_data() -> None:
    """An empty zone answer prints without dividing by zero."""
    lines = cli_reports.zones_lines(pb.ExerciseZoneResponse())
    assert any("total 0 s" in line for line in lines)


def test_zones_dict() -> None:
    """zones JSON lists zones (open top zone: upper None), legacy seconds, totals, TRIMPs."""
    d = cli_reports.zones_dict(_zones())
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
    lines = cli_reports.batch_lines(_batch(), readings)
    assert lines[0] == "accepted 2, rejected 1, duplicate 1; alert LOW active"
    assert lines[1] == "  #1 61 bpm: rejected: too old (TIMESTAMP_TOO_OLD)"
    assert lines[2] == "  #3 45 bpm: stored ALERT LOW"
    d = cli_reports.batch_dict(_batch())
    assert d["results"][0]["reject_reason"] == "TIMESTAMP_TOO_OLD" and "bpm" not in d["results"][0]
    assert cli_reports.batch_lines(pb.HeartRateBatchResponse(accepted=3)) == [
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
    d = cli_reports.profile_dict(p)
    assert (d["sex"], d["hr_max_formula"], d["zone_model"]) == ("female", "tanaka", None)
    lines = cli_reports.profile_lines(p)
    assert "user_id: ann" in lines and "age: 41" in lines and "sex: female" in lines
    assert "max_hr_bpm: default" in lines and "custom_zone_lower_bpm: 100,120" in lines
    assert "user_id: default user" in cli_reports.profile_lines(pb.UserProfile())
