"""HeartRateService: every RPC over in-process ports and an in-memory store, and part failures."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from heartrate_serve.core.batches import ValidationOutput, ZoneJob
from heartrate_serve.core.errors import (
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    StoreUnavailable,
)
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.core.zones import SessionAnalysis
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service.local_ports import LocalValidator, LocalZones
from heartrate_serve.service.pipeline import split_by_weight
from heartrate_serve.service.service import HeartRateService
from heartrate_serve.service.zone_rounds import ZoneRounds
from heartrate_serve.store.store import WriteResult
from tests.support.store_fake import FakeStore

NOW = 1_700_000_000_000  # the service clock in every test, Unix ms
FAIL_BPM = 99  # a valid bpm the failing fake ports refuse to handle
GUARD_S = 5.0  # a failure guard only; every wait is ended by an event


class PartFailingValidator(LocalValidator):
    """The local validator with small parts; a part holding FAIL_BPM raises."""

    def __init__(self, per_call: int) -> None:
        super().__init__(ValidationRules())
        self.max_readings_per_call = per_call
        self.parts: list[list[int]] = []

    async def validate(
        self,
        bpm: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        now_ms: int,
        normal_low: NDArray[np.int32],
        normal_high: NDArray[np.int32],
    ) -> ValidationOutput:
        self.parts.append(bpm.tolist())
        if FAIL_BPM in bpm.tolist():
            raise DependencyUnavailable("Validator failed on this part of the work")
        return await super().validate(bpm, ts_ms, now_ms, normal_low, normal_high)


class PartFailingZones(LocalZones):
    """The local zone port with small parts; a part with a job holding FAIL_BPM raises."""

    def __init__(self, per_call: int) -> None:
        self.max_readings_per_call = per_call
        self.parts: list[int] = []  # jobs per call

    async def analyse(self, jobs: Sequence[ZoneJob]) -> list[SessionAnalysis | InvalidRequest]:
        self.parts.append(len(jobs))
        if any(FAIL_BPM in job.bpm.tolist() for job in jobs):
            raise DependencyUnavailable("ZoneCalculator failed on this part of the work")
        return await super().analyse(jobs)


def _service(
    store: FakeStore | None = None,
    validator: LocalValidator | None = None,
    zones: LocalZones | None = None,
) -> HeartRateService:
    return HeartRateService(
        store or FakeStore(),
        validator or LocalValidator(ValidationRules()),
        zones or LocalZones(),
        clock_ms=lambda: NOW,
    )


def _req(bpm: int, ts_ms: int = NOW - 1000, user: str = "u1") -> pb.HeartRateRequest:
    return pb.HeartRateRequest(bpm=bpm, timestamp_ms=ts_ms, user_id=user)


async def _stream(reqs: Sequence[pb.HeartRateRequest]) -> AsyncIterator[pb.HeartRateRequest]:
    for r in reqs:
        yield r


async def _answers(
    svc: HeartRateService, reqs: Sequence[pb.HeartRateRequest]
) -> list[pb.HeartRateResponse]:
    async with asyncio.timeout(GUARD_S):
        return [r async for r in svc.StreamHeartRate(_stream(reqs))]


def _measurements(
    bpm: Sequence[int], start_ms: int = NOW - 60_000
) -> list[pb.HeartRateMeasurement]:
    return [
        pb.HeartRateMeasurement(bpm=b, timestamp_ms=start_ms + 1000 * i) for i, b in enumerate(bpm)
    ]


# --- SubmitHeartRate ----------------------------------------------------------------------------


async def test_submit_in_range_is_stored() -> None:
    """A normal reading answers success and lands in the store under its user and timestamp."""
    store = FakeStore()
    resp = await _service(store).SubmitHeartRate(_req(70, NOW - 5000))
    assert resp.success and not resp.error and not resp.duplicate
    assert (resp.timestamp_ms, resp.alert_triggered, resp.reject_reason) == (NOW - 5000, False, 0)
    assert store.stored("u1") == {NOW - 5000: 70}


@pytest.mark.parametrize(
    ("bpm", "alert", "alert_type"),
    [
        (40, True, pb.LOW_HEART_RATE),
        (49, True, pb.LOW_HEART_RATE),
        (50, False, pb.NONE),
        (100, False, pb.NONE),
        (150, False, pb.NONE),
        (151, True, pb.HIGH_HEART_RATE),
        (180, True, pb.HIGH_HEART_RATE),
    ],
)
async def test_submit_classifies_against_normal_band(
    bpm: int, alert: bool, alert_type: int
) -> None:
    """Valid readings outside 50-150 are stored and flagged LOW/HIGH."""
    resp = await _service().SubmitHeartRate(_req(bpm))
    assert resp.success
    assert (resp.alert_triggered, resp.alert_type) == (alert, alert_type)


@pytest.mark.parametrize("bpm", [0, 1, 39, 181, 250, -5])
async def test_submit_out_of_range_is_rejected_with_reason(bpm: int) -> None:
    """Outside 40-180: success=false, BPM_OUT_OF_RANGE, the replaced service's error text and the
    precise one (naming the range) in error_detail; not stored."""
    store = FakeStore()
    resp = await _service(store).SubmitHeartRate(_req(bpm))
    assert not resp.success
    assert resp.reject_reason == pb.REJECT_REASON_BPM_OUT_OF_RANGE
    assert resp.error == "Heart rate out of typical range for an adult"
    assert "40-180" in resp.error_detail and str(bpm) in resp.error_detail
    assert store.readings == {} and store.writes == []


@pytest.mark.parametrize(
    ("ts_ms", "reason"),
    [
        (NOW - 31 * 86_400_000, pb.REJECT_REASON_TIMESTAMP_TOO_OLD),
        (946_684_799_000, pb.REJECT_REASON_TIMESTAMP_TOO_OLD),
        (NOW + 10 * 60_000, pb.REJECT_REASON_TIMESTAMP_IN_FUTURE),
        (NOW + 5 * 60_000, 0),
        (NOW - 29 * 86_400_000, 0),
    ],
)
async def test_submit_timestamp_limits(ts_ms: int, reason: int) -> None:
    """Timestamps beyond retention or more than 5 minutes ahead are rejected with their reason."""
    resp = await _service().SubmitHeartRate(_req(70, ts_ms))
    assert (resp.success, resp.reject_reason) == (reason == 0, reason)


async def test_submit_same_reading_twice_is_a_duplicate() -> None:
    """A second reading of the same user and timestamp answers success with duplicate=true."""
    store = FakeStore()
    svc = _service(store)
    first = await svc.SubmitHeartRate(_req(70, NOW - 1000))
    again = await svc.SubmitHeartRate(_req(75, NOW - 1000))
    assert (first.success, first.duplicate) == (True, False)
    assert (again.success, again.duplicate) == (True, True)
    assert store.stored("u1") == {NOW - 1000: 70}


async def test_submit_without_timestamp_gets_unique_server_stamps() -> None:
    """Readings sent without a timestamp are stamped NOW, NOW+1, ... and are not duplicates."""
    store = FakeStore()
    svc = _service(store)
    answers = [await svc.SubmitHeartRate(pb.HeartRateRequest(bpm=70, user_id="u1")) for _ in "ab"]
    assert [a.timestamp_ms for a in answers] == [NOW, NOW + 1]
    assert not any(a.duplicate for a in answers)


async def test_submit_empty_user_is_the_default_user() -> None:
    """user_id "" is stored as the user "default"."""
    store = FakeStore()
    await _service(store).SubmitHeartRate(_req(70, user=""))
    assert list(store.readings) == ["default"]


@pytest.mark.parametrize("user", ["bad user", "x" * 129, "é", "a/b"])
async def test_submit_bad_user_id_raises_invalid_request(user: str) -> None:
    """A malformed user_id raises InvalidRequest naming user_id."""
    with pytest.raises(InvalidRequest) as info:
        await _service().SubmitHeartRate(_req(70, user=user))
    assert info.value.field == "user_id" and "user_id" in str(info.value)


async def test_submit_raises_store_unavailable_when_write_fails() -> None:
    """A store that refuses the write makes SubmitHeartRate raise StoreUnavailable."""
    store = FakeStore()
    store.writes_down = True
    with pytest.raises(StoreUnavailable):
        await _service(store).SubmitHeartRate(_req(70))


async def test_submit_raises_store_unavailable_when_profiles_unreadable() -> None:
    """A store that cannot read profiles (bands) fails the reading with StoreUnavailable."""
    store = FakeStore()
    store.reads_down = True
    with pytest.raises(StoreUnavailable):
        await _service(store).SubmitHeartRate(_req(70))


async def test_rejected_reading_is_answered_even_when_store_is_down() -> None:
    """A rejected reading needs no write, so it is answered normally with the store down."""
    store = FakeStore()
    store.writes_down = True
    resp = await _service(store).SubmitHeartRate(_req(250))
    assert resp.reject_reason == pb.REJECT_REASON_BPM_OUT_OF_RANGE


# --- StreamHeartRate ----------------------------------------------------------------------------


async def test_stream_answers_in_order() -> None:
    """Each reading of a stream gets its own answer, in the order sent."""
    store = FakeStore()
    bpms = [70, 200, 160, 45, 30, 100, 120, 181, 90, 60]
    reqs = [_req(b, NOW - 10_000 + i) for i, b in enumerate(bpms)]
    answers = await _answers(_service(store), reqs)
    assert [a.timestamp_ms for a in answers] == [r.timestamp_ms for r in reqs]
    assert [a.success for a in answers] == [40 <= b <= 180 for b in bpms]
    assert sorted(store.stored("u1").values()) == sorted(b for b in bpms if 40 <= b <= 180)


async def test_stream_bad_user_id_is_answered_per_reading() -> None:
    """A reading with a bad user_id answers INVALID_USER_ID; the others are stored."""
    store = FakeStore()
    reqs = [_req(70, NOW - 3), _req(71, NOW - 2, user="bad user!"), _req(72, NOW - 1)]
    answers = await _answers(_service(store), reqs)
    assert [a.success for a in answers] == [True, False, True]
    assert answers[1].reject_reason == pb.REJECT_REASON_INVALID_USER_ID
    assert "user_id" in answers[1].error
    assert store.stored("u1") == {NOW - 3: 70, NOW - 1: 72}


async def test_stream_store_down_answers_each_reading_and_goes_on() -> None:
    """With Redis down each reading answers STORE_UNAVAILABLE; once it is back, readings store."""
    store = FakeStore()
    store.writes_down = True
    svc = _service(store)
    first_two_answered = asyncio.Event()

    async def requests() -> AsyncIterator[pb.HeartRateRequest]:
        yield _req(70, NOW - 3)
        yield _req(71, NOW - 2)
        await first_two_answered.wait()
        yield _req(72, NOW - 1)

    answers: list[pb.HeartRateResponse] = []
    async with asyncio.timeout(GUARD_S):
        async for a in svc.StreamHeartRate(requests()):
            answers.append(a)
            if len(answers) == 2:
                store.writes_down = False
                first_two_answered.set()
    reasons = [a.reject_reason for a in answers]
    assert reasons == [pb.REJECT_REASON_STORE_UNAVAILABLE] * 2 + [0]
    assert all("Redis" in a.error for a in answers[:2])
    assert store.stored("u1") == {NOW - 1: 72}


async def test_stream_profile_read_failure_answers_store_unavailable() -> None:
    """A store that cannot read bands answers STORE_UNAVAILABLE per reading (not an error)."""
    store = FakeStore()
    store.reads_down = True
    answers = await _answers(_service(store), [_req(70, NOW - 2), _req(71, NOW - 1)])
    assert [a.reject_reason for a in answers] == [pb.REJECT_REASON_STORE_UNAVAILABLE] * 2


async def test_stream_with_no_readings_ends_with_no_answers() -> None:
    """An empty stream ends with no answers."""
    assert await _answers(_service(), []) == []


# --- SubmitHeartRateBatch -----------------------------------------------------------------------


async def test_batch_counts_and_results() -> None:
    """accepted / rejected / duplicate counts; results only for rejected and alerting readings."""
    store = FakeStore()
    svc = _service(store)
    await svc.SubmitHeartRate(_req(80, NOW - 4000))  # makes the batch's first reading a duplicate
    ts = [NOW - 4000, NOW - 3000, NOW - 2000, NOW - 1000, NOW]
    resp = await svc.SubmitHeartRateBatch(
        pb.HeartRateBatchRequest(user_id="u1", bpm=[80, 70, 200, 160, 75], timestamps_ms=ts)
    )
    assert (resp.accepted, resp.rejected, resp.duplicate) == (3, 1, 1)
    got = [(r.index, r.success, r.reject_reason, r.alert_type) for r in resp.results]
    assert got == [
        (2, False, pb.REJECT_REASON_BPM_OUT_OF_RANGE, pb.NONE),
        (3, True, 0, pb.HIGH_HEART_RATE),
    ]
    assert "40-180" in resp.results[0].error  # a new RPC: the precise text
    assert (resp.alert_active, resp.alert_type) == (True, pb.HIGH_HEART_RATE)
    assert store.stored("u1") == {NOW - 4000: 80, NOW - 3000: 70, NOW - 1000: 160, NOW: 75}


async def test_one_round_of_mixed_callers_answers_each_its_own() -> None:
    """Unary calls, a stream and a batch in one round: valid, rejected, duplicate readings and
    several users are split back to the right caller (the round is masked as a whole)."""
    store = FakeStore()
    svc = _service(store)
    await svc.SubmitHeartRate(_req(80, NOW - 9000, "a"))  # makes a's NOW - 9000 a duplicate
    batch = pb.HeartRateBatchRequest(
        user_id="b", bpm=[70, 30, 160, 75], timestamps_ms=[NOW - 4000, NOW - 3000, NOW - 2000, NOW]
    )
    async with asyncio.timeout(GUARD_S):
        dup, low, ok_a, got_batch, streamed, ok_c = await asyncio.gather(
            svc.SubmitHeartRate(_req(80, NOW - 9000, "a")),
            svc.SubmitHeartRate(_req(20, NOW - 8000, "a")),
            svc.SubmitHeartRate(_req(65, NOW - 7000, "a")),
            svc.SubmitHeartRateBatch(batch),
            _answers(svc, [_req(190, NOW - 500, "c"), _req(45, NOW - 400, "c")]),
            svc.SubmitHeartRate(_req(150, NOW - 6000, "c")),
        )
    assert (dup.success, dup.duplicate) == (True, True)
    assert (low.success, low.reject_reason) == (False, pb.REJECT_REASON_BPM_OUT_OF_RANGE)
    assert (ok_a.success, ok_a.duplicate, ok_a.timestamp_ms) == (True, False, NOW - 7000)
    assert (got_batch.accepted, got_batch.rejected, got_batch.duplicate) == (3, 1, 0)
    assert [(r.index, r.success) for r in got_batch.results] == [(1, False), (2, True)]
    assert [(r.success, r.alert_type) for r in streamed] == [
        (False, pb.NONE),
        (True, pb.LOW_HEART_RATE),
    ]
    assert (ok_c.success, ok_c.alert_type) == (True, pb.NONE)
    assert store.stored("a") == {NOW - 9000: 80, NOW - 7000: 65}
    assert store.stored("b") == {NOW - 4000: 70, NOW - 2000: 160, NOW: 75}
    assert store.stored("c") == {NOW - 400: 45, NOW - 6000: 150}
    assert max(len(set(users)) for users in store.writes) == 3  # a round of all three users


async def test_batch_in_seconds_is_converted_to_ms() -> None:
    """A batch with timestamps in seconds is stored at those seconds times 1000."""
    store = FakeStore()
    s = NOW // 1000
    resp = await _service(store).SubmitHeartRateBatch(
        pb.HeartRateBatchRequest(user_id="u1", bpm=[70, 71], timestamps=[s - 2, s - 1])
    )
    assert resp.accepted == 2
    assert store.stored("u1") == {(s - 2) * 1000: 70, (s - 1) * 1000: 71}


async def test_batch_all_rejected_reports_stored_alert_state() -> None:
    """With nothing written, the alert fields come from the user's stored alert state."""
    svc = _service()
    await svc.SubmitHeartRate(_req(170, NOW - 5000))  # raises a HIGH alert (sustain 0)
    resp = await svc.SubmitHeartRateBatch(
        pb.HeartRateBatchRequest(user_id="u1", bpm=[250], timestamps_ms=[NOW])
    )
    assert (resp.accepted, resp.rejected) == (0, 1)
    assert (resp.alert_active, resp.alert_type) == (True, pb.HIGH_HEART_RATE)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.HeartRateBatchRequest(user_id="u1"), "bpm"),
        (
            pb.HeartRateBatchRequest(user_id="u1", bpm=[70, 71], timestamps_ms=[NOW]),
            "timestamps_ms",
        ),
        (pb.HeartRateBatchRequest(user_id="u1", bpm=[70], timestamps=[1, 2]), "timestamps"),
        (pb.HeartRateBatchRequest(user_id="no spaces", bpm=[70], timestamps_ms=[NOW]), "user_id"),
    ],
)
async def test_batch_bad_request_raises_invalid_request(
    request_: pb.HeartRateBatchRequest, field: str
) -> None:
    """A malformed batch raises InvalidRequest naming the field."""
    with pytest.raises(InvalidRequest) as info:
        await _service().SubmitHeartRateBatch(request_)
    assert info.value.field == field


async def test_batch_raises_store_unavailable_when_write_fails() -> None:
    """A store that refuses the write makes SubmitHeartRateBatch raise StoreUnavailable."""
    store = FakeStore()
    store.writes_down = True
    with pytest.raises(StoreUnavailable):
        await _service(store).SubmitHeartRateBatch(
            pb.HeartRateBatchRequest(user_id="u1", bpm=[70], timestamps_ms=[NOW])
        )


# --- GetHeartRateStatus -------------------------------------------------------------------------


async def test_status_shows_newest_readings_first_with_stats() -> None:
    """recent_count newest readings, newest first, with their statistics and default thresholds."""
    svc = _service()
    for i, b in enumerate([60, 70, 80, 160]):
        await svc.SubmitHeartRate(_req(b, NOW - 4000 + 1000 * i))
    resp = await svc.GetHeartRateStatus(pb.StatusRequest(user_id="u1", recent_count=3))
    assert [m.bpm for m in resp.recent_measurements] == [160, 80, 70]
    assert [m.timestamp_ms for m in resp.recent_measurements] == [
        NOW - 1000,
        NOW - 2000,
        NOW - 3000,
    ]
    assert [m.triggered_alert for m in resp.recent_measurements] == [True, False, False]
    assert resp.recent_measurements[0].timestamp == (NOW - 1000) // 1000
    assert (resp.stats.count, resp.stats.min_bpm, resp.stats.max_bpm) == (3, 70, 160)
    assert resp.stats.average_bpm == pytest.approx(310 / 3)
    assert (resp.alert_active, resp.alert_type) == (True, pb.HIGH_HEART_RATE)
    t = resp.thresholds
    assert (t.valid_min_bpm, t.valid_max_bpm, t.normal_low_bpm, t.normal_high_bpm) == (
        40,
        180,
        50,
        150,
    )
    assert (t.alert_sustain_seconds, t.alert_clear_readings) == (0, 3)


async def test_status_of_unknown_user_is_empty() -> None:
    """A user with no readings has no measurements, count 0 and no alert."""
    resp = await _service().GetHeartRateStatus(pb.StatusRequest(user_id="nobody"))
    assert len(resp.recent_measurements) == 0
    assert (resp.stats.count, resp.alert_active) == (0, False)


async def test_status_default_recent_count_is_ten() -> None:
    """recent_count 0 means the 10 newest readings."""
    svc = _service()
    await svc.SubmitHeartRateBatch(
        pb.HeartRateBatchRequest(
            user_id="u1", bpm=[70] * 15, timestamps_ms=[NOW - 20_000 + i for i in range(15)]
        )
    )
    resp = await svc.GetHeartRateStatus(pb.StatusRequest(user_id="u1"))
    assert len(resp.recent_measurements) == 10


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.StatusRequest(user_id="u1", recent_count=-1), "recent_count"),
        (pb.StatusRequest(user_id="bad user"), "user_id"),
    ],
)
async def test_status_bad_request_raises_invalid_request(
    request_: pb.StatusRequest, field: str
) -> None:
    """A negative recent_count or malformed user_id raises InvalidRequest naming it."""
    with pytest.raises(InvalidRequest) as info:
        await _service().GetHeartRateStatus(request_)
    assert info.value.field == field


async def test_profile_band_applies_to_thresholds_and_classification() -> None:
    """A profile's normal band shows in the thresholds and classifies later readings."""
    svc = _service()
    profile = pb.UserProfile(user_id="u1", normal_low_bpm=55, normal_high_bpm=140)
    await svc.SetUserProfile(pb.SetUserProfileRequest(profile=profile))
    resp = await svc.SubmitHeartRate(_req(145))
    assert (resp.alert_triggered, resp.alert_type) == (True, pb.HIGH_HEART_RATE)
    status = await svc.GetHeartRateStatus(pb.StatusRequest(user_id="u1"))
    assert (status.thresholds.normal_low_bpm, status.thresholds.normal_high_bpm) == (55, 140)


# --- CalculateExerciseZones ---------------------------------------------------------------------


async def test_zones_from_sent_measurements() -> None:
    """Sent readings: HRmax from age (Fox), time in zones and averages."""
    resp = await _service().CalculateExerciseZones(
        pb.ExerciseZoneRequest(user_id="u1", age=30, measurements=_measurements([120] * 61))
    )
    assert (resp.hr_max_bpm, resp.reading_count, resp.total_duration) == (190, 61, 60)
    assert resp.average_heart_rate == pytest.approx(120.0)
    assert (resp.zone1_time, resp.zone2_time, resp.zone3_time) == (0, 60, 0)
    assert resp.zone_model == pb.ZONE_MODEL_PERCENT_HRMAX


async def test_zones_from_columnar_readings() -> None:
    """Columnar bpm/timestamps_ms give the same analysis as measurements."""
    ts = [NOW - 60_000 + 1000 * i for i in range(61)]
    resp = await _service().CalculateExerciseZones(
        pb.ExerciseZoneRequest(user_id="u1", age=30, bpm=[120] * 61, timestamps_ms=ts)
    )
    assert (resp.hr_max_bpm, resp.reading_count, resp.total_duration) == (190, 61, 60)


async def test_zones_use_profile_age_when_request_has_none() -> None:
    """Request age 0: the user's profile age is used."""
    svc = _service()
    await svc.SetUserProfile(pb.SetUserProfileRequest(profile=pb.UserProfile(user_id="u1", age=40)))
    resp = await svc.CalculateExerciseZones(
        pb.ExerciseZoneRequest(user_id="u1", measurements=_measurements([120] * 5))
    )
    assert resp.hr_max_bpm == 180


async def test_zones_from_stored_range() -> None:
    """A stored_range analyses the user's stored readings in that range."""
    svc = _service()
    ts = [NOW - 60_000 + 1000 * i for i in range(61)]
    await svc.SubmitHeartRateBatch(
        pb.HeartRateBatchRequest(user_id="u1", bpm=[120] * 61, timestamps_ms=ts)
    )
    rng = pb.StoredRange(from_timestamp_ms=ts[0], to_timestamp_ms=ts[-1])
    resp = await svc.CalculateExerciseZones(
        pb.ExerciseZoneRequest(user_id="u1", age=30, stored_range=rng)
    )
    assert (resp.reading_count, resp.total_duration) == (61, 60)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ExerciseZoneRequest(age=0, measurements=_measurements([120] * 5)), "age"),
        (pb.ExerciseZoneRequest(age=-1, measurements=_measurements([120] * 5)), "age"),
        (pb.ExerciseZoneRequest(age=-30, measurements=_measurements([120] * 5)), "age"),
        (pb.ExerciseZoneRequest(age=121, measurements=_measurements([120] * 5)), "age"),
        (pb.ExerciseZoneRequest(age=30), "measurements"),
        (pb.ExerciseZoneRequest(age=30, bpm=[120, 121], timestamps_ms=[NOW]), "timestamps_ms"),
        (
            pb.ExerciseZoneRequest(
                age=30, stored_range=pb.StoredRange(from_timestamp_ms=NOW, to_timestamp_ms=NOW - 1)
            ),
            "stored_range",
        ),
        (
            pb.ExerciseZoneRequest(
                age=30, stored_range=pb.StoredRange(from_timestamp_ms=1, to_timestamp_ms=2)
            ),
            "stored_range",
        ),
        (pb.ExerciseZoneRequest(user_id="bad user", age=30), "user_id"),
    ],
)
async def test_zones_bad_request_raises_invalid_request(
    request_: pb.ExerciseZoneRequest, field: str
) -> None:
    """A bad zone request (age <= 0, no readings, bad range) raises InvalidRequest naming it
    (in its field; the message too, except for the replaced service's exact texts)."""
    with pytest.raises(InvalidRequest) as info:
        await _service().CalculateExerciseZones(request_)
    assert info.value.field == field
    assert field in str(info.value) or info.value.exact
    assert field in info.value.detail


@pytest.mark.parametrize(
    ("request_", "text", "detail"),
    [
        (
            pb.ExerciseZoneRequest(age=0, measurements=_measurements([120] * 5)),
            "Age must be a positive integer",
            "age must be 1-120 years (or give max_hr_bpm)",
        ),
        (
            pb.ExerciseZoneRequest(age=-7, measurements=_measurements([120] * 5)),
            "Age must be a positive integer",
            "age must be 1-120 years (or give max_hr_bpm)",
        ),
        (
            pb.ExerciseZoneRequest(age=30),
            "No measurements provided",
            "measurements (or bpm/timestamps) must not be empty",
        ),
        (
            pb.ExerciseZoneRequest(age=121, measurements=_measurements([120] * 5)),
            "age must be 1-120 years (or give max_hr_bpm)",
            "age must be 1-120 years (or give max_hr_bpm)",
        ),
    ],
)
async def test_zones_keep_the_replaced_services_texts(
    request_: pb.ExerciseZoneRequest, text: str, detail: str
) -> None:
    """age <= 0 and no readings: the replaced service's details word for word, the precise
    explanation in .detail (the rich error details); a new case (age > 120) keeps its text."""
    with pytest.raises(InvalidRequest) as info:
        await _service().CalculateExerciseZones(request_)
    assert (str(info.value), info.value.detail) == (text, detail)


async def test_bad_zone_request_does_not_fail_its_round() -> None:
    """A bad request answered with InvalidRequest leaves the requests of its round answered."""
    svc = _service()
    good = pb.ExerciseZoneRequest(age=30, measurements=_measurements([120] * 5))
    bad = pb.ExerciseZoneRequest(age=-1, measurements=_measurements([120] * 5))
    results = await asyncio.gather(
        svc.CalculateExerciseZones(good),
        svc.CalculateExerciseZones(bad),
        svc.CalculateExerciseZones(good),
        return_exceptions=True,
    )
    assert isinstance(results[1], InvalidRequest)
    assert all(isinstance(r, pb.ExerciseZoneResponse) for r in (results[0], results[2]))


# --- profiles -----------------------------------------------------------------------------------


async def test_set_then_get_profile() -> None:
    """SetUserProfile stores the profile; GetUserProfile returns it."""
    svc = _service()
    profile = pb.UserProfile(
        user_id="u1", age=35, sex=pb.SEX_FEMALE, resting_bpm=55, max_hr_bpm=185
    )
    set_resp = await svc.SetUserProfile(pb.SetUserProfileRequest(profile=profile))
    got = await svc.GetUserProfile(pb.GetUserProfileRequest(user_id="u1"))
    assert set_resp.profile == profile
    assert got.profile == profile


async def test_get_missing_profile_raises_not_found() -> None:
    """GetUserProfile for a user without a profile raises NotFound."""
    with pytest.raises(NotFound, match="nobody"):
        await _service().GetUserProfile(pb.GetUserProfileRequest(user_id="nobody"))


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        (pb.UserProfile(user_id="u1", age=500), "age"),
        (pb.UserProfile(user_id="u1", resting_bpm=10), "resting_bpm"),
        (pb.UserProfile(user_id="u1", normal_low_bpm=150, normal_high_bpm=100), "normal_low_bpm"),
        (pb.UserProfile(user_id="bad user"), "user_id"),
    ],
)
async def test_set_bad_profile_raises_invalid_request(profile: pb.UserProfile, field: str) -> None:
    """An invalid profile raises InvalidRequest naming the field and is not stored."""
    store = FakeStore()
    with pytest.raises(InvalidRequest) as info:
        await _service(store).SetUserProfile(pb.SetUserProfileRequest(profile=profile))
    assert info.value.field == field
    assert store.profiles == {}


# --- a validator part that fails ----------------------------------------------------------------


async def test_failing_validator_part_fails_only_its_unary_callers() -> None:
    """Unary callers in the failed part get DependencyUnavailable; the others are stored."""
    store = FakeStore()
    validator = PartFailingValidator(per_call=3)
    svc = _service(store, validator)
    bpms = [70, 71, 72, FAIL_BPM, 73, 74]
    results = await asyncio.gather(
        *(svc.SubmitHeartRate(_req(b, user=f"u{i}")) for i, b in enumerate(bpms)),
        return_exceptions=True,
    )
    assert validator.parts == [[70, 71, 72], [FAIL_BPM, 73, 74]]
    assert all(isinstance(r, pb.HeartRateResponse) and r.success for r in results[:3])
    assert all(isinstance(r, DependencyUnavailable) for r in results[3:])
    assert sorted(store.readings) == ["u0", "u1", "u2"]


@pytest.mark.parametrize(
    ("sizes", "bad_caller", "failed"),
    [
        ([2, 2, 1], 2, {1, 2}),
        ([2, 2, 1], 0, {0}),
        ([1, 1, 1, 1], 3, {3}),
        ([1, 1, 1, 1], 1, {0, 1, 2}),
        ([5, 1], 1, {1}),
        ([5, 1], 0, {0}),
        ([1, 2, 3], 1, {0, 1}),
        ([1, 2, 3], 2, {2}),
        ([3, 3, 3], 1, {1}),
    ],
)
async def test_failing_validator_part_fails_only_its_batch_callers(
    sizes: list[int], bad_caller: int, failed: set[int]
) -> None:
    """Parts of <= 3 readings are cut by caller; a failed part fails only the callers in it."""
    store = FakeStore()
    svc = _service(store, PartFailingValidator(per_call=3))

    def batch(i: int, n: int) -> pb.HeartRateBatchRequest:
        bpm = [70 + k for k in range(n)]
        if i == bad_caller:
            bpm[-1] = FAIL_BPM
        return pb.HeartRateBatchRequest(
            user_id=f"u{i}", bpm=bpm, timestamps_ms=[NOW - 10 + k for k in range(n)]
        )

    results = await asyncio.gather(
        *(svc.SubmitHeartRateBatch(batch(i, n)) for i, n in enumerate(sizes)),
        return_exceptions=True,
    )
    assert {i for i, r in enumerate(results) if isinstance(r, DependencyUnavailable)} == failed
    for i, (r, n) in enumerate(zip(results, sizes, strict=True)):
        if i not in failed:
            assert isinstance(r, pb.HeartRateBatchResponse) and r.accepted == n
    assert set(store.readings) == {f"u{i}" for i in range(len(sizes))} - {f"u{i}" for i in failed}


async def test_failing_validator_part_in_stream_answers_service_unavailable() -> None:
    """Stream readings in the failed part answer SERVICE_UNAVAILABLE; the stream goes on."""
    store = FakeStore()
    svc = _service(store, PartFailingValidator(per_call=3))
    first_round_answered = asyncio.Event()
    bpms = [70, 71, 72, 73, FAIL_BPM, 74]

    async def requests() -> AsyncIterator[pb.HeartRateRequest]:
        for i, b in enumerate(bpms):
            yield _req(b, NOW - 100 + i)
        await first_round_answered.wait()
        yield _req(75, NOW - 1)

    answers: list[pb.HeartRateResponse] = []
    async with asyncio.timeout(GUARD_S):
        async for a in svc.StreamHeartRate(requests()):
            answers.append(a)
            if len(answers) == len(bpms):
                first_round_answered.set()
    unavailable = pb.REJECT_REASON_SERVICE_UNAVAILABLE
    assert [a.reject_reason for a in answers] == [0, 0, 0, unavailable, unavailable, unavailable, 0]
    assert all(a.error for a in answers[3:6])
    assert store.stored("u1") == {NOW - 100: 70, NOW - 99: 71, NOW - 98: 72, NOW - 1: 75}


# --- a zone part that fails ---------------------------------------------------------------------


def _job(bpm: Sequence[int]) -> ZoneJob:
    ts = np.arange(len(bpm), dtype=np.int64) * 1000 + NOW - 60_000
    return ZoneJob(ts, np.asarray(bpm, dtype=np.int32), {"age": 30})


async def test_zone_rounds_fail_only_the_failed_parts_jobs() -> None:
    """ZoneRounds answers each job of a failed part with its error, the rest with analyses."""
    zones = PartFailingZones(per_call=10)
    jobs = [_job([120] * 5), _job([120] * 5), _job([120, FAIL_BPM, 120, 120, 120]), _job([120] * 5)]
    out = await ZoneRounds(zones).analyse(jobs)
    assert zones.parts == [2, 2]
    assert [type(r).__name__ for r in out] == [
        "SessionAnalysis",
        "SessionAnalysis",
        "DependencyUnavailable",
        "DependencyUnavailable",
    ]


async def test_zone_rounds_keep_a_jobs_invalid_request_in_place() -> None:
    """A job's own InvalidRequest is its result; the other jobs of its part are analysed."""
    bad = ZoneJob(np.arange(3, dtype=np.int64), np.full(3, 120, np.int32), {"age": -1})
    out = await ZoneRounds(LocalZones()).analyse([_job([120] * 3), bad, _job([120] * 3)])
    assert isinstance(out[0], SessionAnalysis) and isinstance(out[2], SessionAnalysis)
    assert isinstance(out[1], InvalidRequest) and out[1].field == "age"


async def test_zone_rounds_send_a_big_job_alone() -> None:
    """A job larger than max_readings_per_call is a part of its own."""
    zones = PartFailingZones(per_call=4)
    out = await ZoneRounds(zones).analyse([_job([120] * 2), _job([120] * 9), _job([120] * 2)])
    assert zones.parts == [1, 1, 1]
    assert all(isinstance(r, SessionAnalysis) for r in out)


async def test_failing_zone_part_fails_only_its_callers() -> None:
    """CalculateExerciseZones callers in the failed part get DependencyUnavailable."""
    zones = PartFailingZones(per_call=10)
    svc = _service(zones=zones)
    bpms = [[120] * 5, [121] * 5, [120, FAIL_BPM, 120, 120, 120], [122] * 5]
    results = await asyncio.gather(
        *(
            svc.CalculateExerciseZones(
                pb.ExerciseZoneRequest(age=30, measurements=_measurements(b))
            )
            for b in bpms
        ),
        return_exceptions=True,
    )
    assert zones.parts == [2, 2]
    assert all(isinstance(r, pb.ExerciseZoneResponse) for r in results[:2])
    assert all(isinstance(r, DependencyUnavailable) for r in results[2:])
    assert isinstance(results[1], pb.ExerciseZoneResponse)
    assert results[1].average_heart_rate == pytest.approx(121.0)


# --- splitting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "limit", "groups"),
    [
        ([], 3, []),
        ([1], 3, [[0]]),
        ([1, 1, 1], 3, [[0, 1, 2]]),
        ([1, 1, 1, 1], 3, [[0, 1, 2], [3]]),
        ([2, 2, 1], 3, [[0], [1, 2]]),
        ([5, 1], 3, [[0], [1]]),
        ([1, 5, 1], 3, [[0], [1], [2]]),
        ([3, 3], 3, [[0], [1]]),
        ([0, 3, 0], 3, [[0, 1, 2]]),
    ],
)
def test_split_by_weight(weights: list[int], limit: int, groups: list[list[int]]) -> None:
    """Consecutive items grouped up to limit; an item over limit is a group of its own."""
    assert split_by_weight(weights, limit) == groups


# --- health -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("down", "expected"), [(False, 1), (True, 2)])
async def test_health_follows_the_store(down: bool, expected: int) -> None:
    """SERVING (1) with the store up, NOT_SERVING (2) with it down; unknown names are None."""
    store = FakeStore()
    store.writes_down = down
    svc = _service(store)
    assert await svc.health_status("heartrate.HeartRateMonitor") == expected
    assert await svc.health_status("no.such.Service") is None


# --- imports ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module", ["heartrate_serve.loadtest.baseline_server", "heartrate_serve.service.service"]
)
def test_module_does_not_import_ray(module: str) -> None:
    """The service core and the plain baseline run without importing Ray."""
    code = (
        f"import {module}, sys; "
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')); "
        "assert not bad, bad"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


# --- overload: shed, not queued -----------------------------------------------------------------


class HeldStore(FakeStore):
    """A FakeStore whose writes wait for `release` (a Redis that has fallen behind)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.writing = asyncio.Event()

    async def write_batch(self, *args: Any, **kwargs: Any) -> WriteResult:
        self.writing.set()
        await self.release.wait()
        return await super().write_batch(*args, **kwargs)


async def test_readings_beyond_the_queue_bound_are_shed_with_a_clear_answer() -> None:
    """With the store behind and max_queued_readings waiting, a unary call raises Overloaded
    (RESOURCE_EXHAUSTED) and a stream reading is answered REJECT_REASON_OVERLOADED; neither is
    stored, the stream goes on, and the queued readings are stored once the store catches up."""
    from heartrate_serve.core.errors import Overloaded
    from heartrate_serve.service.tunables import IngressTunables

    store = HeldStore()
    svc = HeartRateService(
        store, LocalValidator(ValidationRules()), LocalZones(),
        IngressTunables(max_queued_readings=1), clock_ms=lambda: NOW,
    )  # fmt: skip
    writing = asyncio.create_task(svc.SubmitHeartRate(_req(70, NOW - 10)))
    await asyncio.wait_for(store.writing.wait(), GUARD_S)
    behind = asyncio.create_task(svc.SubmitHeartRate(_req(71, NOW - 9)))  # the second open round
    for _ in range(50):
        await asyncio.sleep(0)
    queued = asyncio.create_task(svc.SubmitHeartRate(_req(72, NOW - 8)))  # waits: the bound
    for _ in range(50):
        await asyncio.sleep(0)
    assert svc.pipeline.commit.queued_weight == 1
    with pytest.raises(Overloaded, match="max_queued_readings 1"):
        await svc.SubmitHeartRate(_req(73, NOW - 7))
    answers = [a async for a in svc.StreamHeartRate(_stream([_req(74, NOW - 6)]))]
    assert [a.reject_reason for a in answers] == [pb.REJECT_REASON_OVERLOADED]
    assert "retry later" in answers[0].error and not answers[0].success
    store.release.set()
    async with asyncio.timeout(GUARD_S):
        assert all(r.success for r in await asyncio.gather(writing, behind, queued))
    assert store.stored("u1") == {NOW - 10: 70, NOW - 9: 71, NOW - 8: 72}


async def test_streams_beyond_max_open_streams_are_refused_before_reading() -> None:
    """max_open_streams open on the replica: the next stream raises Overloaded before reading
    anything; when one closes, a new stream is served."""
    from heartrate_serve.core.errors import Overloaded
    from heartrate_serve.service.tunables import IngressTunables

    svc = HeartRateService(
        FakeStore(), LocalValidator(ValidationRules()), LocalZones(),
        IngressTunables(max_open_streams=2), clock_ms=lambda: NOW,
    )  # fmt: skip
    hold = asyncio.Event()
    opened = [asyncio.Event(), asyncio.Event()]

    async def held(i: int) -> AsyncIterator[pb.HeartRateRequest]:
        yield _req(70 + i, NOW - 100 + i)
        await hold.wait()

    async def run(i: int) -> list[pb.HeartRateResponse]:
        out = []
        async for a in svc.StreamHeartRate(held(i)):
            out.append(a)
            opened[i].set()
        return out

    streams = [asyncio.create_task(run(i)) for i in range(2)]
    async with asyncio.timeout(GUARD_S):
        await asyncio.gather(*(e.wait() for e in opened))
    read: list[int] = []

    async def counted() -> AsyncIterator[pb.HeartRateRequest]:
        read.append(1)
        yield _req(80, NOW - 1)

    with pytest.raises(Overloaded, match="2 streams and watches are open.*max_open_streams 2"):
        await _answers(svc, [])  # nothing read
    with pytest.raises(Overloaded):
        [a async for a in svc.StreamHeartRate(counted())]
    assert read == []
    hold.set()
    async with asyncio.timeout(GUARD_S):
        assert [len(a) for a in await asyncio.gather(*streams)] == [1, 1]
    assert [a.success for a in await _answers(svc, [_req(81, NOW - 2)])] == [True]
