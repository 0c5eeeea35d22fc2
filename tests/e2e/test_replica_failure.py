"""A Validator or ZoneCalculator replica killed (SIGKILL) under load: the callers of the failed
part get UNAVAILABLE / RESOURCE_EXHAUSTED with a message (never INTERNAL or UNKNOWN), stream
readings are answered one by one, and the service serves normally again by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from tests.support.load import (
    ReplicaWatch,
    batch_request,
    big_channel,
    instance_dir,
    new_user,
    now_ms,
    replica_processes,
    zone_request,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
Stub = pb_grpc.HeartRateMonitorStub

ALLOWED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
CALL_TIMEOUT_S = 90.0
LOAD_BEFORE_KILL_S = 2.0
KILLS = 3  # at most; each kill waits for the recovery before the next
RECOVERY_TIMEOUT_S = 60.0
UNARY_WORKERS = 6
BATCH_WORKERS = 1
BATCH_READINGS = 20_000
STREAMS = 3


@dataclass
class Calls:
    """What the callers saw: successes and failures (code, message, when)."""

    ok: int = 0
    failures: list[tuple[grpc.StatusCode, str, float]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # non-RPC exceptions: test or client bugs

    def record(self, error: BaseException) -> None:
        if isinstance(error, grpc.aio.AioRpcError):
            self.failures.append((error.code(), error.details() or "", time.monotonic()))
        else:
            self.other.append(f"{type(error).__name__}: {error}")

    def bad(self) -> list[str]:
        """Failures with a code other than UNAVAILABLE / RESOURCE_EXHAUSTED or no message."""
        bad = [(c, m) for c, m, _ in self.failures if c not in ALLOWED or not m]
        return [f"{code.name}: {msg!r}" for code, msg in bad] + self.other


def _summary(*calls: Calls) -> dict[str, int]:
    """Failures by code and message (ids and addresses cut), for the run's printout."""
    out: dict[str, int] = {}
    for c in calls:
        for code, msg, _ in c.failures:
            key = f"{code.name}: {msg[:140]}"
            out[key] = out.get(key, 0) + 1
    return out


async def _kill_replicas(instance: Any, deployment: str) -> list[int]:
    """SIGKILLs every replica process of deployment in this instance; their pids."""
    procs = replica_processes(instance, deployment)
    assert procs, f"no {deployment} replica process found under {instance}"
    for proc in procs:
        proc.kill()
    gone, alive = await asyncio.to_thread(psutil.wait_procs, procs, 10)
    assert not alive, f"{deployment} replicas still alive after SIGKILL: {alive}"
    return [p.pid for p in procs]


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int((await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)).status)


async def _recovered(
    channel: grpc.aio.Channel,
    instance: Any,
    deployment: str,
    killed: list[int],
    killed_at: float,
    probe: Any,
) -> None:
    """Waits until, at most RECOVERY_TIMEOUT_S after the kill, Health says SERVING, a new replica
    process of deployment runs and probe() (a call that needs the deployment) succeeds."""
    deadline = killed_at + RECOVERY_TIMEOUT_S
    last = "nothing tried"
    while time.monotonic() < deadline:
        try:
            serving = await _health(channel) == health_pb2.HealthCheckResponse.SERVING
            fresh = [p.pid for p in replica_processes(instance, deployment)]
            if serving and fresh and not set(fresh) & set(killed):
                await probe()
                return
            last = f"serving={serving} replicas={fresh} (killed {killed})"
        except grpc.aio.AioRpcError as error:
            last = f"{error.code().name}: {error.details()}"
        await asyncio.sleep(0.5)
    raise AssertionError(f"not serving again {RECOVERY_TIMEOUT_S} s after the kill: {last}")


async def _kill_under_load(
    channel: grpc.aio.Channel,
    instance: Any,
    deployment: str,
    probe: Any,
    failed: Any,
) -> list[float]:
    """Up to KILLS times (load keeps running): SIGKILL every replica of deployment, then wait
    until the service serves again; stops early once failed() says a caller saw a failure (a
    kill between two calls is absorbed by Serve, which holds new calls until a replica runs).
    Returns the seconds from each kill to serving again."""
    recoveries = []
    for _ in range(KILLS):
        await asyncio.sleep(LOAD_BEFORE_KILL_S)
        killed_at = time.monotonic()
        killed = await _kill_replicas(instance, deployment)
        await _recovered(channel, instance, deployment, killed, killed_at, probe)
        recoveries.append(time.monotonic() - killed_at)
        if failed():
            break
    await asyncio.sleep(LOAD_BEFORE_KILL_S)  # load on the recovered replica, still checked
    return recoveries


async def _stored(stub: Stub, user: str, lo: int, hi: int) -> int:
    """Readings stored for user with timestamps in [lo, hi] (0 when none)."""
    request = pb.ExerciseZoneRequest(
        user_id=user, age=40, stored_range=pb.StoredRange(from_timestamp_ms=lo, to_timestamp_ms=hi)
    )
    try:
        answer = await stub.CalculateExerciseZones(request, timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT and "no stored readings" in (
            error.details() or ""
        ):
            return 0
        raise
    return int(answer.reading_count)


async def _run_until(stop: asyncio.Event, call: Any, calls: Calls, pause_s: float) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        try:
            await call(i)
            calls.ok += 1
        except Exception as error:  # noqa: BLE001 - recorded and asserted on below
            calls.record(error)
            await asyncio.sleep(0.05)
        await asyncio.sleep(pause_s)


@pytest.mark.timeout(300)
async def test_validator_replica_killed_under_load(service: Any) -> None:
    """Validator replica SIGKILLed under unary, batch, stream and status load: failures are only
    UNAVAILABLE/RESOURCE_EXHAUSTED with a message, stream readings are answered (success or
    REJECT_REASON_SERVICE_UNAVAILABLE), nothing failed is stored, and the service recovers."""
    instance = instance_dir(service)
    t0 = now_ms() - 3_000_000
    unary_users = [new_user("kill-v-u") for _ in range(UNARY_WORKERS)]
    batch_users = [new_user("kill-v-b") for _ in range(BATCH_WORKERS)]
    stream_users = [new_user("kill-v-s") for _ in range(STREAMS)]
    stored_ok: dict[str, int] = dict.fromkeys(unary_users + stream_users, 0)
    # Each batch covers its own window of its user's time line: (user, from, to, answered ok).
    batch_windows: list[tuple[str, int, int, bool]] = []
    unary, batches, status = Calls(), Calls(), Calls()
    stream_answers: list[list[pb.HeartRateResponse]] = [[] for _ in range(STREAMS)]
    stream_sent = [0] * STREAMS
    stop = asyncio.Event()

    async with big_channel(service.address) as channel, ReplicaWatch(instance) as watch:
        stub = pb_grpc.HeartRateMonitorStub(channel)

        def unary_call(worker: int) -> Any:
            async def call(i: int) -> None:
                user = unary_users[worker]
                request = pb.HeartRateRequest(bpm=72, timestamp_ms=t0 + i * 10, user_id=user)
                answer = await stub.SubmitHeartRate(request, timeout=CALL_TIMEOUT_S)
                assert answer.success and not answer.duplicate, answer
                stored_ok[user] += 1

            return call

        def batch_call(worker: int) -> Any:
            # Larger parts keep the Validator busy, so a kill can land on calls in flight.
            async def call(i: int) -> None:
                user = batch_users[worker]
                end = t0 - i * BATCH_READINGS  # 1 ms apart, backwards from t0: never future
                request = batch_request(user, BATCH_READINGS, end_ms=end, span_ms=BATCH_READINGS)
                window = (user, end - BATCH_READINGS + 1, end)
                try:
                    answer = await stub.SubmitHeartRateBatch(request, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError:
                    batch_windows.append((*window, False))
                    raise
                batch_windows.append((*window, True))
                assert (answer.accepted, answer.rejected) == (BATCH_READINGS, 0), answer

            return call

        async def status_call(i: int) -> None:
            await stub.GetHeartRateStatus(
                pb.StatusRequest(user_id=unary_users[0]), timeout=CALL_TIMEOUT_S
            )

        async def stream(k: int) -> None:
            async def readings() -> AsyncIterator[pb.HeartRateRequest]:
                i = 0
                while not stop.is_set():
                    i += 1
                    stream_sent[k] += 1
                    yield pb.HeartRateRequest(
                        bpm=75, timestamp_ms=t0 + i * 10, user_id=stream_users[k]
                    )
                    await asyncio.sleep(0.01)

            call = stub.StreamHeartRate(readings(), timeout=CALL_TIMEOUT_S + 60)
            async for answer in call:
                stream_answers[k].append(answer)
                if answer.success:
                    stored_ok[stream_users[k]] += 1

        tasks = [
            *(
                asyncio.create_task(_run_until(stop, unary_call(w), unary, 0.0))
                for w in range(UNARY_WORKERS)
            ),
            *(
                asyncio.create_task(_run_until(stop, batch_call(w), batches, 0.5))
                for w in range(BATCH_WORKERS)
            ),
            asyncio.create_task(_run_until(stop, status_call, status, 0.02)),
        ]
        streams = [asyncio.create_task(stream(k)) for k in range(STREAMS)]

        async def probe() -> None:
            answer = await stub.SubmitHeartRate(
                pb.HeartRateRequest(bpm=70, user_id=new_user("kill-v-probe")), timeout=30
            )
            assert answer.success

        def failed() -> bool:
            rejected = any(not a.success for answers in stream_answers for a in answers)
            return rejected or any(c.failures for c in (unary, batches, status))

        try:
            recoveries = await _kill_under_load(channel, instance, "Validator", probe, failed)
        finally:
            stop.set()  # the load ends with the kills, whatever happened
            await asyncio.gather(*tasks)
            stream_results = await asyncio.gather(*streams, return_exceptions=True)

        stream_errors = [repr(r) for r in stream_results if isinstance(r, BaseException)]
        assert not stream_errors, f"a stream ended with an error: {stream_errors}"
        for name, calls in (("unary", unary), ("batch", batches), ("status", status)):
            assert calls.ok > 0 and calls.bad() == [], f"{name} failures: {calls.bad()[:5]}"
        for k, answers in enumerate(stream_answers):
            assert len(answers) == stream_sent[k], "every stream reading is answered"
            odd = [
                a
                for a in answers
                if not a.success
                and (a.reject_reason != pb.REJECT_REASON_SERVICE_UNAVAILABLE or not a.error)
            ]
            assert not odd, odd[:3]

        await watch.wait_for(
            lambda s: (
                watch.running("Validator", s) >= 1
                and watch.total("Validator", s) == watch.running("Validator", s)
            ),
            RECOVERY_TIMEOUT_S,
            "Validator replicas all RUNNING again",
        )

        # What was answered success is stored; what failed is not (nothing of a failed part).
        for user, ok in stored_ok.items():
            assert await _stored(stub, user, 0, now_ms()) == ok, user
        ok_windows = [w for w in batch_windows if w[3]]
        sample = ok_windows[:: max(1, len(ok_windows) // 8)]
        for user, lo, hi, ok in sample + [w for w in batch_windows if not w[3]]:
            assert await _stored(stub, user, lo, hi) == (BATCH_READINGS if ok else 0), (lo, ok)

    rejected = sum(not a.success for answers in stream_answers for a in answers)
    print(
        f"validator kills: recovered after {[round(r, 1) for r in recoveries]} s; "
        f"unary ok={unary.ok} failed={len(unary.failures)}; "
        f"batch ok={batches.ok} failed={len(batches.failures)}; "
        f"stream readings {sum(stream_sent)} rejected={rejected}; "
        f"status ok={status.ok} failed={len(status.failures)}; "
        f"failures {_summary(unary, batches, status)}"
    )


@pytest.mark.timeout(300)
async def test_zone_calculator_replica_killed_under_load(service: Any) -> None:
    """ZoneCalculator replica SIGKILLed under small, by-reference and stored_range zone requests:
    failures are only UNAVAILABLE/RESOURCE_EXHAUSTED with a message, successes have the right
    reading_count, and the service recovers."""
    instance = instance_dir(service)
    small, big = zone_request(1_000, seed=1), zone_request(300_000, seed=2)
    calls = Calls()
    stop = asyncio.Event()

    async with big_channel(service.address) as channel, ReplicaWatch(instance) as watch:
        stub = pb_grpc.HeartRateMonitorStub(channel)
        stored_user = new_user("kill-z")
        seeded = await stub.SubmitHeartRateBatch(
            batch_request(stored_user, 20_000), timeout=CALL_TIMEOUT_S
        )
        assert seeded.accepted == 20_000
        stored = pb.ExerciseZoneRequest(
            user_id=stored_user,
            age=40,
            stored_range=pb.StoredRange(from_timestamp_ms=0, to_timestamp_ms=now_ms()),
        )
        cases = [(small, 1_000), (big, 300_000), (stored, 20_000)]

        def zone_call(worker: int) -> Any:
            request, expected = cases[worker % len(cases)]

            async def call(i: int) -> None:
                answer = await stub.CalculateExerciseZones(request, timeout=CALL_TIMEOUT_S)
                assert answer.reading_count == expected

            return call

        tasks = [asyncio.create_task(_run_until(stop, zone_call(w), calls, 0.0)) for w in range(6)]

        async def probe() -> None:
            answer = await stub.CalculateExerciseZones(small, timeout=30)
            assert answer.reading_count == 1_000

        try:
            recoveries = await _kill_under_load(
                channel, instance, "ZoneCalculator", probe, lambda: bool(calls.failures)
            )
        finally:
            stop.set()  # the load ends with the kills, whatever happened
            await asyncio.gather(*tasks)
        assert calls.ok > 0 and calls.bad() == [], f"unexpected failures: {calls.bad()[:5]}"
        await watch.wait_for(
            lambda s: (
                watch.running("ZoneCalculator", s) >= 1
                and watch.total("ZoneCalculator", s) == watch.running("ZoneCalculator", s)
            ),
            RECOVERY_TIMEOUT_S,
            "ZoneCalculator replicas all RUNNING again",
        )
    print(
        f"zone calculator kills: recovered after {[round(r, 1) for r in recoveries]} s; "
        f"ok={calls.ok} failed={len(calls.failures)} {_summary(calls)}"
    )


@pytest.mark.timeout(300)
async def test_ingress_replica_killed_mid_stream_resending_client_stores_each_reading_once(
    service: Any,
) -> None:
    """The ingress replica SIGKILLed while a device streams through the project's resending
    client (cli/resending.py): the stream breaks, the client reconnects with backoff and resends
    what was not acknowledged; every reading gets one final answer, all acknowledged, and the
    store holds each exactly once. Health is SERVING again afterwards."""
    from heartrate_serve.cli.resending import AsyncResendingStream, RetryPolicy

    instance = instance_dir(service)
    user = new_user("ingress-kill")
    n, t0 = 1500, now_ms() - 3_600_000
    killed_after = 300
    answered = asyncio.Event()

    async def readings() -> AsyncIterator[pb.HeartRateRequest]:
        for i in range(n):
            yield pb.HeartRateRequest(user_id=user, bpm=60 + i % 60, timestamp_ms=t0 + i * 1000)
            await asyncio.sleep(0.004)

    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = pb_grpc.HeartRateMonitorStub(channel)
        stream = AsyncResendingStream(
            lambda requests: stub.StreamHeartRate(requests),
            readings(),
            retry=RetryPolicy(max_seconds=RECOVERY_TIMEOUT_S),
        )
        pairs: list[tuple[pb.HeartRateRequest, pb.HeartRateResponse]] = []
        killed: list[int] = []

        async def consume() -> None:
            async for pair in stream:
                pairs.append(pair)
                if len(pairs) == killed_after:
                    answered.set()

        consumer = asyncio.create_task(consume())
        await asyncio.wait_for(answered.wait(), CALL_TIMEOUT_S)
        killed = await _kill_replicas(instance, "HeartRateIngress")
        killed_at = time.monotonic()
        await asyncio.wait_for(consumer, RECOVERY_TIMEOUT_S + CALL_TIMEOUT_S)
        took = time.monotonic() - killed_at
        assert [p[0].timestamp_ms for p in pairs] == [t0 + i * 1000 for i in range(n)]
        assert all(answer.success for _, answer in pairs), [
            (a.reject_reason, a.error) for _, a in pairs if not a.success
        ][:5]
        stats = stream.stats
        assert stats.reconnects >= 1 and stats.acknowledged == n, stats
        assert await _stored(stub, user, t0, t0 + n * 1000) == n

        async def probe() -> None:
            await stub.GetHeartRateStatus(pb.StatusRequest(user_id=user), timeout=10)

        await _recovered(channel, instance, "HeartRateIngress", killed, killed_at, probe)
    print(f"ingress kill mid-stream: stream done {took:.1f} s after the kill; {stats}")
