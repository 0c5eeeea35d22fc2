"""Rounds and zone groups far above the 4 MiB replica gRPC limit: split into parts or passed by
reference, never refused by a transport (no INTERNAL, no error at all)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from tests.support.load import (
    batch_request,
    big_channel,
    new_user,
    now_ms,
    rpc_errors,
    zone_request,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
Stub = pb_grpc.HeartRateMonitorStub

BATCHES = 32
BATCH_READINGS = 100_000  # the API's maximum per batch
UNARY_WORKERS = 20
UNARY_PER_WORKER = 10  # 200 unary calls alongside the batches
ZONE_REQUESTS = 4
ZONE_READINGS = 400_000  # int64 ts + int32 bpm: 4.8 MB per job as arrays, 3 MB on the wire
CALL_TIMEOUT_S = 240.0


@pytest_asyncio.fixture(loop_scope="session")
async def big_stub(service: Any) -> AsyncIterator[Stub]:
    """A stub on a channel that sends and receives messages up to 64 MiB."""
    async with big_channel(service.address) as channel:
        yield pb_grpc.HeartRateMonitorStub(channel)


def _stored_range_request(user: str, age: int = 40) -> pb.ExerciseZoneRequest:
    return pb.ExerciseZoneRequest(
        user_id=user,
        age=age,
        stored_range=pb.StoredRange(from_timestamp_ms=0, to_timestamp_ms=now_ms() + 60_000),
    )


@pytest.mark.timeout(600)
async def test_32_concurrent_100k_batches_with_unary_calls_alongside(
    big_stub: Stub, service: Any
) -> None:
    """32 concurrent 100 000-reading batches (tens of MB per round) and 200 unary calls all
    succeed, accepted counts add up, and every reading is stored."""
    users = [new_user("tl-batch") for _ in range(BATCHES)]
    requests = [batch_request(u, BATCH_READINGS, seed=i) for i, u in enumerate(users)]
    assert sum(r.ByteSize() for r in requests) > 20_000_000  # far above one 4 MiB message

    unary_users = [new_user("tl-unary") for _ in range(UNARY_WORKERS)]
    unary_t0 = now_ms() - 120_000

    async def unary(worker: int) -> list[pb.HeartRateResponse]:
        answers = []
        for k in range(UNARY_PER_WORKER):
            request = pb.HeartRateRequest(
                bpm=70 + k, timestamp_ms=unary_t0 + k * 1_000, user_id=unary_users[worker]
            )
            answers.append(await big_stub.SubmitHeartRate(request, timeout=CALL_TIMEOUT_S))
        return answers

    started = time.monotonic()
    results = await asyncio.gather(
        *(big_stub.SubmitHeartRateBatch(r, timeout=CALL_TIMEOUT_S) for r in requests),
        *(unary(w) for w in range(UNARY_WORKERS)),
        return_exceptions=True,
    )
    elapsed = time.monotonic() - started
    errors = rpc_errors(results)
    assert not errors, f"{len(errors)} calls failed after {elapsed:.0f} s: {errors[:5]}"

    batch_answers: list[pb.HeartRateBatchResponse] = results[:BATCHES]  # type: ignore[assignment]
    assert [(a.accepted, a.rejected, a.duplicate) for a in batch_answers] == [
        (BATCH_READINGS, 0, 0)
    ] * BATCHES
    assert sum(a.accepted for a in batch_answers) == BATCHES * BATCH_READINGS
    assert all(len(a.results) == 0 for a in batch_answers)  # no rejected or alerting reading

    unary_answers = [a for r in results[BATCHES:] for a in r]  # type: ignore[union-attr]
    assert len(unary_answers) == UNARY_WORKERS * UNARY_PER_WORKER
    bad = [a for a in unary_answers if not a.success or a.duplicate or a.error]
    assert not bad, bad[:3]

    # Stored: every unary reading, and each batch user's newest readings and whole range.
    for u in unary_users:
        status = await big_stub.GetHeartRateStatus(pb.StatusRequest(user_id=u, recent_count=100))
        assert sorted(m.bpm for m in status.recent_measurements) == list(
            range(70, 70 + UNARY_PER_WORKER)
        )
    limit = asyncio.Semaphore(4)

    async def check_stored(i: int) -> None:
        async with limit:
            status = await big_stub.GetHeartRateStatus(
                pb.StatusRequest(user_id=users[i], recent_count=1000), timeout=CALL_TIMEOUT_S
            )
            newest = [m.timestamp_ms for m in status.recent_measurements]
            assert newest == sorted(requests[i].timestamps_ms, reverse=True)[:1000]
            assert status.stats.count == 1000
            zones = await big_stub.CalculateExerciseZones(
                _stored_range_request(users[i]), timeout=CALL_TIMEOUT_S
            )
            assert zones.reading_count == BATCH_READINGS, users[i]

    await asyncio.gather(*(check_stored(i) for i in range(BATCHES)))


@pytest.mark.timeout(300)
async def test_4_concurrent_400k_columnar_zone_requests(big_stub: Stub) -> None:
    """4 concurrent columnar zone requests of 400 000 readings each (a 19 MB zone group) all
    succeed with their reading_count and the same result as each alone."""
    requests = [zone_request(ZONE_READINGS, seed=i) for i in range(ZONE_REQUESTS)]
    results = await asyncio.gather(
        *(big_stub.CalculateExerciseZones(r, timeout=CALL_TIMEOUT_S) for r in requests),
        return_exceptions=True,
    )
    errors = rpc_errors(results)
    assert not errors, errors
    answers: list[pb.ExerciseZoneResponse] = results  # type: ignore[assignment]
    assert [a.reading_count for a in answers] == [ZONE_READINGS] * ZONE_REQUESTS
    for a in answers:
        assert a.total_duration > 0 and len(a.zones) == 5 and a.hr_max_bpm == 180
    alone = await big_stub.CalculateExerciseZones(requests[0], timeout=CALL_TIMEOUT_S)
    assert alone == answers[0]


@pytest.mark.timeout(300)
async def test_single_zone_request_above_4_mib_on_the_wire(big_stub: Stub) -> None:
    """One columnar zone request larger than 4 MiB on the wire (700 000 readings) succeeds."""
    request = zone_request(700_000, seed=9)
    assert request.ByteSize() > 4 << 20
    answer = await big_stub.CalculateExerciseZones(request, timeout=CALL_TIMEOUT_S)
    assert answer.reading_count == 700_000


@pytest.mark.timeout(300)
async def test_stored_range_over_200k_readings_goes_by_reference(big_stub: Stub) -> None:
    """A stored_range zone request over 200 000 stored readings of one user (one job larger than
    a part) succeeds with the exact reading_count and matches the same readings sent."""
    user = new_user("tl-range")
    end = now_ms() - 1_000
    first = batch_request(user, BATCH_READINGS, end_ms=end - 1_800_000, span_ms=1_700_000, seed=1)
    second = batch_request(user, BATCH_READINGS, end_ms=end, span_ms=1_700_000, seed=2)
    for request in (first, second):
        answer = await big_stub.SubmitHeartRateBatch(request, timeout=CALL_TIMEOUT_S)
        assert (answer.accepted, answer.rejected, answer.duplicate) == (BATCH_READINGS, 0, 0)

    stored = await big_stub.CalculateExerciseZones(
        _stored_range_request(user), timeout=CALL_TIMEOUT_S
    )
    assert stored.reading_count == 2 * BATCH_READINGS
    sent = await big_stub.CalculateExerciseZones(
        pb.ExerciseZoneRequest(
            age=40,
            bpm=np.concatenate([first.bpm, second.bpm]).tolist(),
            timestamps_ms=np.concatenate([first.timestamps_ms, second.timestamps_ms]).tolist(),
        ),
        timeout=CALL_TIMEOUT_S,
    )
    assert stored == sent
