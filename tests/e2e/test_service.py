"""Every RPC through the real Serve gRPC port, with a real Redis behind it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
Stub = pb_grpc.HeartRateMonitorStub


def user() -> str:
    """A fresh user id, so tests never see each other's data."""
    return f"u-{uuid.uuid4().hex[:12]}"


def now_s() -> int:
    return int(time.time())


async def test_submit_in_range_reading_is_stored(stub: Stub) -> None:
    """A normal reading is answered success and appears in the user's status."""
    u = user()
    resp = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=72, timestamp=now_s(), user_id=u))
    assert resp.success and not resp.error and not resp.alert_triggered
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u, recent_count=5))
    assert [m.bpm for m in status.recent_measurements] == [72]


@pytest.mark.parametrize("bpm", [39, 181, 0, -5, 1000])
async def test_out_of_range_reading_is_success_false_not_an_rpc_error(stub: Stub, bpm: int) -> None:
    """Out-of-range bpm: success=false with a non-empty error, nothing stored."""
    u = user()
    resp = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=bpm, timestamp=now_s(), user_id=u))
    assert not resp.success and resp.error
    assert resp.reject_reason == pb.REJECT_REASON_BPM_OUT_OF_RANGE
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u))
    assert len(status.recent_measurements) == 0


@pytest.mark.parametrize(
    "bpm, alert", [(45, pb.LOW_HEART_RATE), (160, pb.HIGH_HEART_RATE), (40, pb.LOW_HEART_RATE)]
)
async def test_out_of_band_reading_is_stored_and_alerts(stub: Stub, bpm: int, alert: int) -> None:
    """In range but outside 50-150: stored, alert_triggered with its type, alert state active."""
    u = user()
    resp = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=bpm, timestamp=now_s(), user_id=u))
    assert resp.success and resp.alert_triggered and resp.alert_type == alert
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u))
    assert status.alert_active and status.alert_type == alert
    assert status.recent_measurements[0].triggered_alert
    assert status.alert_since > 0


async def test_resubmitted_reading_is_a_duplicate(stub: Stub) -> None:
    """The same (user, timestamp) twice: second answer duplicate=true, one reading stored."""
    u, t = user(), now_s() - 10
    first = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=80, timestamp=t, user_id=u))
    again = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=80, timestamp=t, user_id=u))
    assert first.success and not first.duplicate
    assert again.success and again.duplicate
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u))
    assert len(status.recent_measurements) == 1


async def test_timestamp_zero_means_now(stub: Stub) -> None:
    """An unset timestamp is stamped with the server clock."""
    before = int(time.time() * 1000)
    resp = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=70, user_id=user()))
    assert resp.success and before - 1000 <= resp.timestamp_ms <= int(time.time() * 1000) + 1000


async def test_invalid_user_id_is_invalid_argument(stub: Stub) -> None:
    """A bad user_id is INVALID_ARGUMENT naming the field."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=70, user_id="bad user!"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id" in (err.value.details() or "")


async def _requests(u: str, bpms: list[int], t0: int) -> AsyncIterator[pb.HeartRateRequest]:
    for i, bpm in enumerate(bpms):
        yield pb.HeartRateRequest(bpm=bpm, timestamp_ms=t0 + i * 100, user_id=u)


async def test_stream_of_1000_readings_answers_each_in_order(stub: Stub) -> None:
    """A 1 000-message bidi stream: 1 000 answers in order, every reading stored."""
    u, t0 = user(), int(time.time() * 1000) - 200_000
    bpms = [60 + (i % 80) for i in range(1000)]
    answers = [r async for r in stub.StreamHeartRate(_requests(u, bpms, t0))]
    assert len(answers) == 1000
    assert [a.timestamp_ms for a in answers] == [t0 + i * 100 for i in range(1000)]
    assert all(a.success for a in answers)
    assert [a.alert_triggered for a in answers] == [b > 150 for b in bpms]
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u, recent_count=1000))
    assert len(status.recent_measurements) == 1000


async def test_invalid_readings_mid_stream_are_answered_and_stream_goes_on(stub: Stub) -> None:
    """Bad readings inside a stream get per-reading errors; the rest are stored."""
    u, t0 = user(), int(time.time() * 1000) - 10_000
    bpms = [70, 300, 75, 10, 80]
    answers = [r async for r in stub.StreamHeartRate(_requests(u, bpms, t0))]
    assert [a.success for a in answers] == [True, False, True, False, True]
    assert all(a.error for a in answers if not a.success)
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u))
    assert sorted(m.bpm for m in status.recent_measurements) == [70, 75, 80]


async def test_bad_user_id_mid_stream_is_a_per_reading_error(stub: Stub) -> None:
    """A bad user_id inside a stream is answered with an error; the stream continues."""

    async def reqs() -> AsyncIterator[pb.HeartRateRequest]:
        yield pb.HeartRateRequest(bpm=70, user_id="no spaces allowed")
        yield pb.HeartRateRequest(bpm=70, user_id=user())

    answers = [r async for r in stub.StreamHeartRate(reqs())]
    assert [a.success for a in answers] == [False, True]
    assert answers[0].reject_reason == pb.REJECT_REASON_INVALID_USER_ID


async def test_client_cancel_leaves_service_healthy(stub: Stub) -> None:
    """Cancelling a stream mid-way does not disturb the service; stored readings stay."""
    u, t0 = user(), int(time.time() * 1000) - 50_000
    call = stub.StreamHeartRate(_requests(u, [70] * 200, t0))
    got = 0
    async for _ in call:
        got += 1
        if got == 10:
            call.cancel()
            break
    resp = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=71, user_id=u))
    assert resp.success
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u, recent_count=1000))
    assert len(status.recent_measurements) >= 11


async def test_alert_hysteresis_in_status(stub: Stub) -> None:
    """HIGH is raised once and cleared only after 3 consecutive normal readings."""
    u, t = user(), now_s() - 100
    for i, bpm in enumerate([160, 165, 80, 80]):
        await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=bpm, timestamp=t + i, user_id=u))
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u))
    assert status.alert_active and status.alert_type == pb.HIGH_HEART_RATE
    assert status.alert_since == t
    await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=80, timestamp=t + 4, user_id=u))
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u))
    assert not status.alert_active and status.alert_type == pb.NONE


async def test_status_stats_and_thresholds(stub: Stub) -> None:
    """Status reports count/min/max/mean of the recent readings and the thresholds in force."""
    u, t = user(), now_s() - 100
    for i, bpm in enumerate([60, 70, 80, 90]):
        await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=bpm, timestamp=t + i, user_id=u))
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u, recent_count=3))
    assert [m.bpm for m in status.recent_measurements] == [90, 80, 70]
    assert (status.stats.min_bpm, status.stats.max_bpm, status.stats.count) == (70, 90, 3)
    assert status.stats.average_bpm == pytest.approx(80.0)
    th = status.thresholds
    assert (th.valid_min_bpm, th.valid_max_bpm, th.normal_low_bpm, th.normal_high_bpm) == (
        40,
        180,
        50,
        150,
    )


async def test_two_users_do_not_see_each_others_data(stub: Stub) -> None:
    """Readings and alert state are per user."""
    a, b = user(), user()
    await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=170, timestamp=now_s(), user_id=a))
    await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=65, timestamp=now_s(), user_id=b))
    sa = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=a))
    sb = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=b))
    assert [m.bpm for m in sa.recent_measurements] == [170] and sa.alert_active
    assert [m.bpm for m in sb.recent_measurements] == [65] and not sb.alert_active


async def test_batch_counts_and_results(stub: Stub) -> None:
    """Batch ingest: accepted/rejected/duplicate counts; results only for rejected/alerting."""
    u, t = user(), now_s() - 1000
    req = pb.HeartRateBatchRequest(
        user_id=u, bpm=[70, 200, 160, 75, 70], timestamps=[t, t + 1, t + 2, t + 3, t]
    )
    resp = await stub.SubmitHeartRateBatch(req)
    assert (resp.accepted, resp.rejected, resp.duplicate) == (3, 1, 1)
    by_index = {r.index: r for r in resp.results}
    assert set(by_index) == {1, 2}
    assert not by_index[1].success and by_index[1].error
    assert by_index[2].alert_triggered and by_index[2].alert_type == pb.HIGH_HEART_RATE


async def test_batch_length_mismatch_is_invalid_argument(stub: Stub) -> None:
    """bpm and timestamps of different lengths: INVALID_ARGUMENT naming timestamps."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitHeartRateBatch(
            pb.HeartRateBatchRequest(user_id=user(), bpm=[70, 71], timestamps=[now_s()])
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "timestamps" in (err.value.details() or "")


async def test_zones_hand_checked_vector(stub: Stub) -> None:
    """Vector 1 of the issue: 10 s below zone 1 and 10 s in each zone; legacy fields agree."""
    readings = [(0, 100), (10, 110), (20, 126), (30, 150), (40, 170), (50, 85)]
    base = 1_700_000_000
    req = pb.ExerciseZoneRequest(
        age=40,
        measurements=[pb.HeartRateMeasurement(bpm=b, timestamp=base + t) for t, b in readings],
        session_end_timestamp=base + 60,
    )
    resp = await stub.CalculateExerciseZones(req)
    assert [z.seconds for z in resp.zones] == [10, 10, 10, 10, 10]
    assert [z.lower_bpm for z in resp.zones] == [90, 108, 126, 144, 162]
    assert (resp.zone1_time, resp.zone2_time, resp.zone3_time) == (10, 10, 20)
    assert resp.total_duration == 60 and resp.below_zones_seconds == 10
    assert resp.edwards_trimp == pytest.approx(2.5)
    assert resp.hr_max_bpm == 180


@pytest.mark.parametrize(
    "req",
    [
        pb.ExerciseZoneRequest(age=0, measurements=[pb.HeartRateMeasurement(bpm=100, timestamp=1)]),
        pb.ExerciseZoneRequest(
            age=-3, measurements=[pb.HeartRateMeasurement(bpm=100, timestamp=1)]
        ),
        pb.ExerciseZoneRequest(age=30),
    ],
)
async def test_zones_invalid_requests(stub: Stub, req: pb.ExerciseZoneRequest) -> None:
    """age <= 0 or no measurements: INVALID_ARGUMENT, as the original service."""
    req.user_id = user()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CalculateExerciseZones(req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_zones_from_stored_range_with_profile(stub: Stub) -> None:
    """Zones over stored readings use the profile's age (and its measured max)."""
    u, t = user(), now_s() - 600
    await stub.SetUserProfile(
        pb.SetUserProfileRequest(profile=pb.UserProfile(user_id=u, age=40, max_hr_bpm=200))
    )
    await stub.SubmitHeartRateBatch(
        pb.HeartRateBatchRequest(user_id=u, bpm=[120, 120, 150], timestamps=[t, t + 10, t + 20])
    )
    rng = pb.StoredRange(from_timestamp_ms=t * 1000, to_timestamp_ms=(t + 20) * 1000)
    resp = await stub.CalculateExerciseZones(pb.ExerciseZoneRequest(user_id=u, stored_range=rng))
    assert resp.hr_max_bpm == 200 and resp.reading_count == 3
    assert resp.total_duration == 20


async def test_profile_round_trip_and_not_found(stub: Stub) -> None:
    """SetUserProfile then GetUserProfile returns it; an unknown user is NOT_FOUND."""
    u = user()
    prof = pb.UserProfile(user_id=u, age=35, sex=pb.SEX_FEMALE, resting_bpm=55, normal_high_bpm=140)
    set_resp = await stub.SetUserProfile(pb.SetUserProfileRequest(profile=prof))
    assert set_resp.profile == prof
    got = await stub.GetUserProfile(pb.GetUserProfileRequest(user_id=u))
    assert got.profile == prof
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetUserProfile(pb.GetUserProfileRequest(user_id=user()))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_profile_band_drives_alerts(stub: Stub) -> None:
    """A personal normal band (high 140) makes 145 bpm alert for that user only."""
    u = user()
    await stub.SetUserProfile(
        pb.SetUserProfileRequest(profile=pb.UserProfile(user_id=u, normal_high_bpm=140))
    )
    mine = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=145, user_id=u))
    other = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=145, user_id=user()))
    assert mine.alert_triggered and not other.alert_triggered


async def test_bad_profile_is_invalid_argument_naming_field(stub: Stub) -> None:
    """An impossible profile value is rejected, naming its field."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SetUserProfile(
            pb.SetUserProfileRequest(profile=pb.UserProfile(user_id=user(), age=500))
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "age" in (err.value.details() or "")


async def test_health_check_serving_and_unknown_service(service: object, stub: Stub) -> None:
    """grpc.health.v1: SERVING for '' and the service name, NOT_FOUND for another name."""
    address = service.address  # type: ignore[attr-defined]
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "heartrate.HeartRateMonitor"):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health.Check(health_pb2.HealthCheckRequest(service="nope.Service"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_watch_streams_serving(service: object) -> None:
    """Watch sends the current status first."""
    address = service.address  # type: ignore[attr-defined]
    async with grpc.aio.insecure_channel(address) as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        first = await asyncio.wait_for(call.read(), timeout=10)
        call.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
