"""The `heartrate` client's output: times, one reading's answer and running counts."""

from __future__ import annotations

import json

from heartrate_serve.cli import output as cli_output
from heartrate_serve.cli.inputs import Reading
from heartrate_serve.cli.output import Tally
from heartrate_serve.proto import heartrate_service_pb2 as pb

T0_S = 1_700_000_000
T0_MS = T0_S * 1000


def test_format_ts_and_duration() -> None:
    """Times print as ISO 8601 UTC with ms ('-' for none), durations as m:ss / h:mm:ss."""
    assert cli_output.format_ts_ms(T0_MS + 5) == "2023-11-14T22:13:20.005Z"
    assert cli_output.format_ts_ms(0) == "-"
    assert cli_output.format_duration(59.6) == "1:00"
    assert cli_output.format_duration(3725) == "1:02:05"


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
    assert cli_output.response_text(STORED) == "stored at 2023-11-14T22:13:20.000Z"
    assert cli_output.response_text(HIGH).endswith("stored at 2023-11-14T22:13:20.000Z ALERT HIGH")
    assert cli_output.response_text(DUPLICATE).startswith("duplicate")
    assert cli_output.response_text(REJECTED) == (
        "rejected: bpm 200 is outside 40-180 (BPM_OUT_OF_RANGE)"
    )
    assert cli_output.response_text(HIGH, Reading(170)) == (
        "170 bpm @ 2023-11-14T22:13:20.000Z: stored ALERT HIGH"
    )


def test_response_dict_is_one_json_object() -> None:
    """Answers become flat JSON objects with result, alert, error and reject reason."""
    assert cli_output.response_dict(HIGH, Reading(170)) == {
        "result": "stored", "bpm": 170, "timestamp_ms": T0_MS, "alert": "HIGH",
        "error": None, "reject_reason": None,
    }  # fmt: skip
    d = cli_output.response_dict(REJECTED)
    assert (d["result"], d["reject_reason"], d["alert"]) == ("rejected", "BPM_OUT_OF_RANGE", None)
    assert json.loads(json.dumps(d)) == d
    assert cli_output.response_dict(DUPLICATE)["result"] == "duplicate"


def test_unknown_reject_reason_from_a_newer_server() -> None:
    """An enum value this client does not know prints as its number instead of failing."""
    assert cli_output.reject_name(99) == "99" and cli_output.reject_name(0) is None
    assert (
        cli_output.alert_name(pb.LOW_HEART_RATE) == "LOW" and cli_output.alert_name(pb.NONE) is None
    )


def test_tally_counts_answers() -> None:
    """The stream summary counts accepted, rejected, alerts and duplicates separately."""
    tally = Tally(sent=5)
    for resp in (STORED, HIGH, DUPLICATE, REJECTED, HIGH):
        tally.add(resp)
    assert (tally.acked, tally.accepted, tally.rejected, tally.alerts, tally.duplicates) == (
        5, 3, 1, 2, 1,
    )  # fmt: skip
    assert tally.text().startswith("sent 5, acked 5, accepted 3, rejected 1, alerts 2")
