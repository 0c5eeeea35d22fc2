"""The deployment classes without Ray: `Deployment.func_or_class`, fake handles that call the real
Validator and ZoneCalculator objects in-process, and a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2

from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.deployments.ingress import IngressDeployment
from heartrate_serve.deployments.validator import ValidatorDeployment
from heartrate_serve.deployments.zone_calculator import ZoneCalculatorDeployment
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.service.tunables import IngressTunables
from tests.support.fakes import FakeContext, FakeHandle

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def ingress(redis_server: EmbeddedRedis) -> AsyncIterator[Any]:
    """A HeartRateIngress wired to in-process Validator and ZoneCalculator objects."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    validator = ValidatorDeployment.func_or_class()
    zones = ZoneCalculatorDeployment.func_or_class()
    obj = IngressDeployment.func_or_class(
        FakeHandle(validator), FakeHandle(zones), redis_url=redis_server.url
    )
    yield obj
    if obj._webhooks is not None:  # its webhook dispatcher must not outlive the test
        await obj._webhooks.aclose()
    await obj.service.aclose()


async def test_submit_maps_validation_and_alerts(ingress: Any) -> None:
    """The class answers in-range, out-of-range and out-of-band readings like the contract says."""
    ctx = FakeContext()
    t = int(time.time())
    ok = await ingress.SubmitHeartRate(pb.HeartRateRequest(bpm=70, timestamp=t, user_id="a"), ctx)
    bad = await ingress.SubmitHeartRate(pb.HeartRateRequest(bpm=20, timestamp=t, user_id="a"), ctx)
    high = await ingress.SubmitHeartRate(
        pb.HeartRateRequest(bpm=170, timestamp=t + 1, user_id="a"), ctx
    )
    assert ctx.code is None
    assert ok.success and not ok.alert_triggered
    assert not bad.success and "40-180" in bad.error_detail
    assert high.success and high.alert_type == pb.HIGH_HEART_RATE


async def test_invalid_user_id_sets_invalid_argument(ingress: Any) -> None:
    """A domain error becomes a status code through the one table, naming the field."""
    ctx = FakeContext()
    await ingress.SubmitHeartRate(pb.HeartRateRequest(bpm=70, user_id="a b"), ctx)
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT and "user_id" in ctx.details


async def test_concurrent_unary_calls_share_batches(ingress: Any) -> None:
    """Concurrent calls are group-committed: 50 calls, every reading stored once."""
    ctx = FakeContext()
    t = int(time.time() * 1000) - 60_000
    reqs = [pb.HeartRateRequest(bpm=60 + i, timestamp_ms=t + i, user_id="b") for i in range(50)]
    answers = await asyncio.gather(*(ingress.SubmitHeartRate(r, ctx) for r in reqs))
    assert all(a.success and not a.duplicate for a in answers)
    status = await ingress.GetHeartRateStatus(pb.StatusRequest(user_id="b", recent_count=100), ctx)
    assert len(status.recent_measurements) == 50


async def test_server_stamped_readings_in_one_millisecond_are_not_duplicates(ingress: Any) -> None:
    """Readings without a timestamp sent together all get stored."""
    ctx = FakeContext()
    reqs = [pb.HeartRateRequest(bpm=70, user_id="c") for _ in range(20)]
    answers = await asyncio.gather(*(ingress.SubmitHeartRate(r, ctx) for r in reqs))
    assert sum(a.duplicate for a in answers) == 0
    assert len({a.timestamp_ms for a in answers}) == 20


async def test_stream_method_answers_each_reading(ingress: Any) -> None:
    """StreamHeartRate (an async generator) answers every message in order."""
    t = int(time.time() * 1000) - 30_000

    async def reqs() -> AsyncIterator[pb.HeartRateRequest]:
        for i, bpm in enumerate([70, 300, 45]):
            yield pb.HeartRateRequest(bpm=bpm, timestamp_ms=t + i, user_id="d")

    out = [a async for a in ingress.StreamHeartRate(reqs(), FakeContext())]
    assert [(a.success, a.alert_type) for a in out] == [
        (True, pb.NONE),
        (False, pb.NONE),
        (True, pb.LOW_HEART_RATE),
    ]


async def test_zone_errors_from_the_calculator_are_invalid_argument(ingress: Any) -> None:
    """InvalidRequest raised inside the zone calculator reaches the client as INVALID_ARGUMENT."""
    ctx = FakeContext()
    req = pb.ExerciseZoneRequest(age=40, bpm=[100, 110], timestamps=[1, 2], max_gap_seconds=-1)
    await ingress.CalculateExerciseZones(req, ctx)
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT and "max_gap_seconds" in ctx.details


async def test_health_check_serving_and_unknown(ingress: Any) -> None:
    """Check is SERVING with Redis and the deployments up; an unknown name is NOT_FOUND."""
    ctx = FakeContext()
    resp = await ingress.Check(health_pb2.HealthCheckRequest(service=""), ctx)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    await ingress.Check(health_pb2.HealthCheckRequest(service="x.Y"), ctx)
    assert ctx.code == grpc.StatusCode.NOT_FOUND


async def test_reconfigure_applies_and_rejects_unknown_keys(ingress: Any) -> None:
    """user_config changes the alert rules at run time; a typo is refused."""
    ingress.reconfigure({"alert_clear_readings": 5})
    assert ingress.service._tun == IngressTunables(alert_clear_readings=5)
    with pytest.raises(ValueError, match="alert_clear_readinsg"):
        ingress.reconfigure({"alert_clear_readinsg": 5})
    ingress.reconfigure({})


async def test_validator_reconfigure_rejects_inconsistent_bands() -> None:
    """The validator refuses a normal band outside the valid band."""
    v = ValidatorDeployment.func_or_class()
    with pytest.raises(InvalidRequest):
        v.reconfigure({"normal_low_bpm": 30})


@pytest.mark.single_redis
async def test_unary_calls_end_at_request_timeout_but_streams_go_on(
    ingress: Any, redis_server: EmbeddedRedis
) -> None:
    """user_config request_timeout_s: a unary call stuck on a frozen Redis (SIGSTOP) answers
    DEADLINE_EXCEEDED after it, saying what to do; a stream open longer than it is not cut.
    serve_config.yaml's value is parsed into the same tunables."""
    import os
    import signal

    ingress.reconfigure({"request_timeout_s": 0.3})
    try:
        ctx = FakeContext()
        assert redis_server.pid is not None
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            await ingress.GetHeartRateStatus(pb.StatusRequest(user_id="frozen"), ctx)
            took = time.monotonic() - started
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        assert ctx.code == grpc.StatusCode.DEADLINE_EXCEEDED, (ctx.code, ctx.details)
        assert "request_timeout_s (0.3 s)" in ctx.details and "resend" in ctx.details
        assert 0.3 <= took < 1.5  # Redis's own 2 s socket timeout did not end it

        t = int(time.time() * 1000) - 30_000

        async def slow() -> AsyncIterator[pb.HeartRateRequest]:
            for i in range(3):
                yield pb.HeartRateRequest(bpm=70 + i, timestamp_ms=t + i, user_id="long")
                await asyncio.sleep(0.4)

        stream_ctx = FakeContext()
        out = [a async for a in ingress.StreamHeartRate(slow(), stream_ctx)]
        assert [a.success for a in out] == [True] * 3 and stream_ctx.code is None
    finally:
        ingress.reconfigure({})
