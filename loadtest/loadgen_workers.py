"""The load generator's workers: one coroutine per scenario kind, run `concurrency` times by
loadgen_scenario.Scenario. Worker i sends as Scenario.user(i) over Scenario.stub(i) until
stop_at (perf_counter seconds) and records each operation in the Recorder.

  unary         SubmitHeartRate calls, one after the other
  stream        one bidi StreamHeartRate stream, the next reading once the previous ack is in
  streams1hz    one bidi stream, one reading per second (optionally the alert pattern)
  batch         SubmitHeartRateBatch calls of BATCH_SIZE readings
  status        GetHeartRateStatus(recent_count=STATUS_RECENT)
  zones         CalculateExerciseZones over ZONE_READINGS columnar readings
  zones-stored  CalculateExerciseZones over the stored_range Scenario.setup wrote
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
import numpy as np

from heartrate_serve.loadtest.loadgen_channels import RPC_TIMEOUT_S
from heartrate_serve.loadtest.loadgen_recording import Recorder, now_ms, rpc_error, stream_error
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from heartrate_serve.loadtest.loadgen_scenario import Scenario

BATCH_SIZE = 1_000
# Unary and stream readings start this long before now, 1 ms apart: live data, in the open chunk
# (store/keys.py CHUNK_MS), as a device sends it. Not hours old: compaction (store/compaction.py)
# would move those readings into a blob during the run, and every later write would then take
# the late-data path (a second pass that searches the blob), which is not what these scenarios
# measure.
LIVE_BASE_MS = 60_000
ZONE_READINGS = 100_000
STATUS_RECENT = 60


async def unary(sc: Scenario, i: int, rec: Recorder, stop_at: float) -> None:
    """SubmitHeartRate, one call in flight per worker."""
    stub, user, bpm = sc.stub(i), sc.user(i), sc.bpm
    base = now_ms() - LIVE_BASE_MS
    n = 0
    while time.perf_counter() < stop_at:
        req = pb.HeartRateRequest(bpm=int(bpm[n % len(bpm)]), user_id=user, timestamp_ms=base + n)
        n += 1
        start = time.perf_counter()
        try:
            resp = await stub.SubmitHeartRate(req, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            rec.error(rpc_error(e))
            continue
        if resp.success and not resp.duplicate:
            rec.ok(start, time.perf_counter())
        else:
            rec.error(resp.error or "duplicate")


async def stream(sc: Scenario, i: int, rec: Recorder, stop_at: float) -> None:
    """One bidi stream, writing its next reading when the previous ack has arrived."""
    stub, user, bpm = sc.stub(i), sc.user(i), sc.bpm
    base = now_ms() - LIVE_BASE_MS
    call = stub.StreamHeartRate()
    n = 0
    try:
        while time.perf_counter() < stop_at:
            req = pb.HeartRateRequest(
                bpm=int(bpm[n % len(bpm)]), user_id=user, timestamp_ms=base + n
            )
            n += 1
            start = time.perf_counter()
            await call.write(req)
            resp = await call.read()
            if resp is grpc.aio.EOF:
                rec.error("stream ended early")
                return
            if resp.success and not resp.duplicate:
                rec.ok(start, time.perf_counter())
            else:
                rec.error(resp.error or "duplicate")
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
        rec.error(await stream_error(call, e))
        return
    await close_stream(sc, call, rec)


async def stream_1hz(sc: Scenario, i: int, rec: Recorder, stop_at: float) -> None:
    """One bidi stream sending one reading per second (starts spread over the first second);
    counts what it sent and how late each send was (Scenario.after reads them)."""
    stub, user, bpm = sc.stub(i), sc.user(i), sc.bpm
    sent = sc.extra.setdefault("_sent", {})
    lags: list[float] = sc.extra.setdefault("_lags", [])
    sent[i] = 0
    start_at = time.perf_counter() + i / sc.spec.concurrency  # spread over the first second
    base = now_ms() - 60_000
    call = stub.StreamHeartRate()
    n = 0
    try:
        while True:
            due = start_at + n
            if due >= stop_at:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            value = int(bpm[n % len(bpm)])
            if sc.alert_every:
                value = 175 if n % sc.alert_every == sc.alert_every - 1 else 70
            req = pb.HeartRateRequest(bpm=value, user_id=user, timestamp_ms=base + n * 1000)
            n += 1
            start = time.perf_counter()
            if start >= rec.window_start:
                lags.append((start - due) * 1000)
            await call.write(req)
            sent[i] += 1
            resp = await call.read()
            if resp is grpc.aio.EOF:
                rec.error("stream ended early")
                return
            if resp.success and not resp.duplicate:
                sc.extra["_acked"] = sc.extra.get("_acked", 0) + 1
                rec.ok(start, time.perf_counter())
                if sc.alert_every:
                    ack = (req.timestamp_ms, now_ms(), req.bpm)
                    sc.acks.setdefault(user, []).append(ack)
            else:
                rec.error(resp.error or "duplicate")
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
        rec.error(await stream_error(call, e))
        return
    await close_stream(sc, call, rec)


async def close_stream(sc: Scenario, call: grpc.aio.StreamStreamCall, rec: Recorder) -> None:
    """Half-closes a stream and reads its end; a failure here is an error "at close" (every
    reading was already acknowledged)."""
    try:
        await call.done_writing()
        while await call.read() is not grpc.aio.EOF:
            rec.error("unexpected extra answer")
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
        rec.error(f"at close: {await stream_error(call, e)}")
        sc.extra["close_errors"] = sc.extra.get("close_errors", 0) + 1


async def batch(sc: Scenario, i: int, rec: Recorder, stop_at: float) -> None:
    """SubmitHeartRateBatch of BATCH_SIZE readings, one call in flight per worker."""
    stub, user = sc.stub(i), sc.user(i)
    base = now_ms() - 20 * 86_400_000  # 100 ms apart: room for 17 M readings per user
    bpm = np.resize(sc.bpm, BATCH_SIZE).tolist()
    offsets = np.arange(BATCH_SIZE, dtype=np.int64) * 100
    n = 0
    while time.perf_counter() < stop_at:
        req = pb.HeartRateBatchRequest(
            user_id=user, bpm=bpm, timestamps_ms=(base + n * 100 + offsets).tolist()
        )
        n += BATCH_SIZE
        start = time.perf_counter()
        try:
            resp = await stub.SubmitHeartRateBatch(req, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            rec.error(rpc_error(e))
            continue
        if resp.accepted == BATCH_SIZE:
            rec.ok(start, time.perf_counter(), BATCH_SIZE)
        else:
            rec.error(f"accepted {resp.accepted} rejected {resp.rejected} dup {resp.duplicate}")


async def status(sc: Scenario, i: int, rec: Recorder, stop_at: float) -> None:
    """GetHeartRateStatus of the user Scenario.setup seeded, one call in flight per worker."""
    stub = sc.stub(i)
    req = pb.StatusRequest(user_id=sc.user(i), recent_count=STATUS_RECENT)
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        try:
            resp = await stub.GetHeartRateStatus(req, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            rec.error(rpc_error(e))
            continue
        if len(resp.recent_measurements) == STATUS_RECENT:
            rec.ok(start, time.perf_counter())
        else:
            rec.error(f"{len(resp.recent_measurements)} recent readings")


async def zones(sc: Scenario, i: int, rec: Recorder, stop_at: float) -> None:
    """CalculateExerciseZones over ZONE_READINGS columnar readings sent with each call."""
    base = now_ms() - ZONE_READINGS * 1000
    req = pb.ExerciseZoneRequest(
        user_id=sc.user(i),
        age=35,
        bpm=np.resize(sc.bpm, ZONE_READINGS).tolist(),
        timestamps_ms=(base + np.arange(ZONE_READINGS, dtype=np.int64) * 1000).tolist(),
    )
    await zone_loop(sc.stub(i), req, rec, stop_at)


async def zones_stored(sc: Scenario, i: int, rec: Recorder, stop_at: float) -> None:
    """CalculateExerciseZones over the stored_range of user 0 (written by Scenario.setup)."""
    lo, hi = sc.extra["zones_range"]
    req = pb.ExerciseZoneRequest(
        user_id=sc.user(0),
        age=35,
        stored_range=pb.StoredRange(from_timestamp_ms=lo, to_timestamp_ms=hi),
    )
    await zone_loop(sc.stub(i), req, rec, stop_at)


async def zone_loop(
    stub: pb_grpc.HeartRateMonitorStub,
    req: pb.ExerciseZoneRequest,
    rec: Recorder,
    stop_at: float,
) -> None:
    """Sends req until stop_at; an answer counts ZONE_READINGS units."""
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        try:
            resp = await stub.CalculateExerciseZones(req, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            rec.error(rpc_error(e))
            continue
        if resp.reading_count == ZONE_READINGS:
            rec.ok(start, time.perf_counter(), ZONE_READINGS)
        else:
            rec.error(f"reading_count {resp.reading_count}")


Worker = Callable[["Scenario", int, Recorder, float], Awaitable[None]]

WORKERS: dict[str, Worker] = {
    "unary": unary,
    "stream": stream,
    "streams1hz": stream_1hz,
    "batch": batch,
    "status": status,
    "zones": zones,
    "zones-stored": zones_stored,
}
