"""WatchAlerts through the real Serve gRPC port: live events, replay after after_event_id,
argument errors, and `heartrate watch`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from tests.support.service import Service

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
Stub = pb_grpc.HeartRateMonitorStub
GUARD_S = 20.0  # a failure guard: every wait ends with an event first


def user() -> str:
    return f"w-{uuid.uuid4().hex[:12]}"


def now_ms() -> int:
    return int(time.time() * 1000)


async def submit(stub: Stub, u: str, bpms: list[int], start_ms: int) -> list[float]:
    """Submits readings 1 s apart; the monotonic time of each acknowledgement."""
    acked = []
    for i, bpm in enumerate(bpms):
        req = pb.HeartRateRequest(user_id=u, bpm=bpm, timestamp_ms=start_ms + 1000 * i)
        resp = await stub.SubmitHeartRate(req)
        assert resp.success, resp
        acked.append(time.monotonic())
    return acked


async def opened(stub: Stub, users: list[str], after: str = "") -> AsyncIterator[pb.AlertEvent]:
    """A watch whose server side is open: waits until the call's headers arrived."""
    call = stub.WatchAlerts(pb.WatchAlertsRequest(user_ids=users, after_event_id=after))
    await asyncio.sleep(0.5)  # the replica subscribes and registers the watch
    return call  # type: ignore[return-value]


async def test_raise_and_clear_arrive_live_in_order(stub: Stub) -> None:
    u = user()
    call = await opened(stub, [u])
    t0 = now_ms() - 60_000
    acked = await submit(stub, u, [165, 70, 71, 72], t0)
    events = []
    async with asyncio.timeout(GUARD_S):
        async for event in call:
            events.append((event, time.monotonic()))
            if len(events) == 2:
                break
    (raised, t_raised), (cleared, t_cleared) = events
    assert (raised.user_id, raised.alert_type, raised.active, raised.at_ms, raised.bpm) == (
        u,
        pb.HIGH_HEART_RATE,
        True,
        t0,
        165,
    )
    assert (cleared.alert_type, cleared.active, cleared.at_ms, cleared.bpm) == (
        pb.HIGH_HEART_RATE,
        False,
        t0 + 3000,
        72,
    )
    assert raised.event_id.endswith(f":{u}") and raised.event_id != cleared.event_id
    # Seen after its acknowledgement (latency itself is measured by the bench).
    assert t_raised >= acked[0] - 0.05 and t_cleared >= acked[3] - 0.05
    call.cancel()


async def test_after_event_id_replays_what_a_reconnecting_app_missed(stub: Stub) -> None:
    u, v = user(), user()
    call = await opened(stub, [u, v])
    t0 = now_ms() - 60_000
    await submit(stub, u, [45], t0)  # raise LOW for u
    async with asyncio.timeout(GUARD_S):
        first = await anext(aiter(call))
    call.cancel()  # the app goes away
    await submit(stub, u, [70, 70, 70], t0 + 1000)  # clear u
    await submit(stub, v, [170], t0)  # raise v
    again = await opened(stub, [u, v], after=first.event_id)
    got = []
    async with asyncio.timeout(GUARD_S):
        async for event in again:
            got.append((event.user_id, event.alert_type, event.active))
            if len(got) == 2:
                break
    assert got == [(u, pb.LOW_HEART_RATE, False), (v, pb.HIGH_HEART_RATE, True)]
    await submit(stub, v, [70, 70, 70], t0 + 1000)  # and then live
    async with asyncio.timeout(GUARD_S):
        live = await anext(aiter(again))
    assert (live.user_id, live.active) == (v, False)
    again.cancel()


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.WatchAlertsRequest(), "user_ids"),
        (pb.WatchAlertsRequest(user_ids=["ok", "not ok"]), "user_ids"),
        (pb.WatchAlertsRequest(user_ids=[f"u{i}" for i in range(1001)]), "user_ids"),
        (pb.WatchAlertsRequest(user_ids=["ok"], after_event_id="nope"), "after_event_id"),
    ],
)
async def test_bad_watch_requests_are_invalid_argument(
    stub: Stub, request_: pb.WatchAlertsRequest, field: str
) -> None:
    call = stub.WatchAlerts(request_)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with asyncio.timeout(GUARD_S):
            await anext(aiter(call))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (info.value.details() or "")


async def test_cli_watch_prints_events(stub: Stub, service: Service) -> None:
    u = user()
    cli = subprocess.Popen(
        [sys.executable, "-m", "heartrate_serve.cli.main", "--address", service.address]
        + ["--json", "watch", "--users", u, "--count", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await asyncio.sleep(3)  # the CLI starts and opens its watch
        await submit(stub, u, [44, 70, 70, 70], now_ms() - 60_000)
        out, err = await asyncio.to_thread(cli.communicate, timeout=GUARD_S)
    finally:
        cli.kill()
    assert cli.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["user_id"], e["alert_type"], e["active"]) for e in lines] == [
        (u, "LOW_HEART_RATE", True),
        (u, "LOW_HEART_RATE", False),
    ]
