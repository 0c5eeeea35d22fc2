"""Redis going away and coming back: clear errors, no crash, recovery without a restart."""

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
RECOVERY_TIMEOUT_S = 60.0


async def _health(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        return int(resp.status)


async def _until(predicate_coro: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate_coro():  # type: ignore[operator]
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"condition not met within {timeout_s} s")


async def test_redis_down_then_back(service: object, stub: pb_grpc.HeartRateMonitorStub) -> None:
    """Down (kill -9): UNAVAILABLE naming Redis, stream readings answered with errors,
    NOT_SERVING. Back: the same service stores readings again and reports SERVING, with no
    restart, and the reading acknowledged before the crash is there."""
    svc = service
    user = f"outage-{uuid.uuid4().hex[:8]}"
    ok = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=70, user_id=user))
    assert ok.success
    svc.redis.kill()  # type: ignore[attr-defined]
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=71, user_id=user), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Redis" in (err.value.details() or "")

        async def two() -> AsyncIterator[pb.HeartRateRequest]:
            for bpm in (72, 73):
                yield pb.HeartRateRequest(bpm=bpm, user_id=user)

        answers = [a async for a in stub.StreamHeartRate(two(), timeout=30)]
        assert [a.success for a in answers] == [False, False]
        assert all(a.reject_reason == pb.REJECT_REASON_STORE_UNAVAILABLE for a in answers)
        address = svc.address  # type: ignore[attr-defined]
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING

        async def down() -> bool:
            return await _health(address) == not_serving

        await _until(down, 15)
    finally:
        svc.redis.start()  # type: ignore[attr-defined]

    async def stored_again() -> bool:
        try:
            resp = await stub.SubmitHeartRate(pb.HeartRateRequest(bpm=74, user_id=user), timeout=5)
        except grpc.aio.AioRpcError:
            return False
        return resp.success

    await _until(stored_again, RECOVERY_TIMEOUT_S)
    serving = health_pb2.HealthCheckResponse.SERVING

    async def up() -> bool:
        return await _health(svc.address) == serving  # type: ignore[attr-defined]

    await _until(up, 15)
    # kill -9 with appendfsync everysec: the reading acknowledged before the crash survived.
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=user, recent_count=100))
    assert 70 in [m.bpm for m in status.recent_measurements]
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=user))
    assert sorted(m.bpm for m in status.recent_measurements) == [70, 74]
