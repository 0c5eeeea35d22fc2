"""The replaced service's texts where it had the case, and the precise explanation next to them:
`error_detail` on readings, gRPC's rich error details (google.rpc.Status with a BadRequest field
violation in `grpc-status-details-bin`) on INVALID_ARGUMENT answers, through Serve and HAProxy."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e
MS = [pb.HeartRateMeasurement(bpm=120, timestamp=1_700_000_000 + i) for i in range(5)]


def _violation(error: grpc.RpcError) -> tuple[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no grpc-status-details-bin"
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.message == error.details()
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    v = bad.field_violations[0]
    return v.field, v.description


@pytest.mark.parametrize(
    ("request_", "details", "field", "precise"),
    [
        (
            pb.ExerciseZoneRequest(age=0, measurements=MS),
            "Age must be a positive integer",
            "age",
            "age must be 1-120 years (or give max_hr_bpm)",
        ),
        (
            pb.ExerciseZoneRequest(age=30),
            "No measurements provided",
            "measurements",
            "measurements (or bpm/timestamps) must not be empty",
        ),
        (
            pb.ExerciseZoneRequest(age=30, user_id="bad user", measurements=MS),
            "user_id must be 1-128 characters of [A-Za-z0-9._:@-]",
            "user_id",
            "user_id must be 1-128 characters of [A-Za-z0-9._:@-]",
        ),
    ],
)
def test_invalid_argument_carries_rich_details(
    service: Any, request_: pb.ExerciseZoneRequest, details: str, field: str, precise: str
) -> None:
    with grpc.insecure_channel(service.address) as channel:
        stub = pb_grpc.HeartRateMonitorStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.CalculateExerciseZones(request_, timeout=30)
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == details
    assert _violation(error) == (field, precise)


def test_out_of_range_reading_has_the_old_text_and_the_precise_detail(service: Any) -> None:
    now = int(time.time())
    with grpc.insecure_channel(service.address) as channel:
        stub = pb_grpc.HeartRateMonitorStub(channel)
        unary = stub.SubmitHeartRate(pb.HeartRateRequest(bpm=20, timestamp=now), timeout=30)
        streamed = list(
            stub.StreamHeartRate(iter([pb.HeartRateRequest(bpm=200, timestamp=now)]), timeout=30)
        )
    for answer, bpm in ((unary, 20), (streamed[0], 200)):
        assert not answer.success
        assert answer.error == "Heart rate out of typical range for an adult"
        assert answer.error_detail == f"bpm {bpm} is outside the valid range 40-180"
        assert answer.reject_reason == pb.REJECT_REASON_BPM_OUT_OF_RANGE
