"""Under ordinary traffic (unary calls, a stream, zone requests) every deployment does its work:
Serve's own per-deployment request counters show the Validator validating every round and the
ZoneCalculator computing every zone request."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from heartrate_serve.loadtest.bench_report import parse_serve_latencies
from heartrate_serve.proto import heartrate_service_pb2 as pb

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
WAIT_S = 60.0
UNARY, STREAMED, ZONES = 40, 40, 3


def _calls(metrics_port: int) -> dict[str, float]:
    """Requests handled so far per deployment (Serve's counters, all replicas summed)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {name: m["calls"] for name, m in parse_serve_latencies(text).items()}


async def _counts_reach(metrics_port: int, want: dict[str, float]) -> dict[str, float]:
    """Polls the counters until every deployment reached its wanted count; fails after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = await asyncio.to_thread(_calls, metrics_port)
        if all(seen.get(name, 0) >= n for name, n in want.items()):
            return seen
        await asyncio.sleep(1.0)
    pytest.fail(f"Serve counters {seen} did not reach {want} within {WAIT_S:.0f} s")


async def test_validator_and_zone_calculator_serve_ordinary_traffic(
    service: Any, stub: Any
) -> None:
    """Each sequential reading is its own round, validated by one Validator call; each zone
    request is one ZoneCalculator call."""
    before = await asyncio.to_thread(_calls, service.metrics_port)
    user, now_s = f"work-{uuid.uuid4().hex[:8]}", int(time.time()) - 600
    for i in range(UNARY):
        resp = await stub.SubmitHeartRate(
            pb.HeartRateRequest(bpm=70, timestamp=now_s + i, user_id=user)
        )
        assert resp.success

    async def readings() -> AsyncIterator[pb.HeartRateRequest]:
        for i in range(STREAMED):
            yield pb.HeartRateRequest(bpm=80, timestamp=now_s + UNARY + i, user_id=user)

    call = stub.StreamHeartRate()
    answered = 0
    async for request in readings():  # one at a time: each waits for its answer
        await call.write(request)
        assert (await call.read()).success
        answered += 1
    await call.done_writing()
    assert answered == STREAMED
    for _ in range(ZONES):
        zones = await stub.CalculateExerciseZones(
            pb.ExerciseZoneRequest(age=40, bpm=[100, 120, 140], timestamps=[1, 11, 21])
        )
        assert zones.reading_count == 3
    want = {
        "Validator": before.get("Validator", 0) + UNARY + STREAMED,
        "ZoneCalculator": before.get("ZoneCalculator", 0) + ZONES,
    }
    await _counts_reach(service.metrics_port, want)
