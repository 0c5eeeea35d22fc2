"""The asyncio (grpc.aio) load generator of the benchmark; run it in its own process, away from
the server under test.

  python -m heartrate_serve.loadtest.loadgen --target 127.0.0.1:P --scenario unary:16 \
      [--duration 10] [--warmup 2] [--prefix bench] [--json-out result.json]

Scenarios (kind:concurrency, see common.SCENARIO_KINDS):
  unary:N         SubmitHeartRate with N calls in flight
  stream:N        N bidi StreamHeartRate streams, each writes its next reading when the previous
                  ack has arrived
  streams1hz:N    N bidi streams, each sending one reading per second (starts spread over 1 s);
                  afterwards every user's stored count is read back (GetHeartRateStatus) to count
                  lost readings (sent - stored)
  batch:N         SubmitHeartRateBatch of 1 000 readings, N calls in flight (readings/s)
  status:N        GetHeartRateStatus(recent_count=60) with N in flight, users seeded first
  zones:N         CalculateExerciseZones over 100 k columnar readings, N in flight
  zones-stored:N  CalculateExerciseZones over a stored_range of 100 k readings written first

Every scenario uses its own user ids (prefix, scenario, a random run id) and strictly increasing
millisecond timestamps per user, so no reading is a duplicate. Only operations that finish inside
the measured window (after the warm-up) count for throughput and latency; errors count over the
whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from heartrate_serve.cli.workouts import workout_bpm
from heartrate_serve.loadtest.common import ScenarioSpec, parse_scenario, summarize_latencies
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc

STREAMS_PER_CHANNEL = 100
BATCH_SIZE = 1_000
ZONE_READINGS = 100_000
STATUS_RECENT = 60
RPC_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Distinct channels get distinct TCP connections (no subchannel sharing).
    ("grpc.use_local_subchannel_pool", 1),
]


def now_ms() -> int:
    """The wall clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


def channels_for(concurrency: int, per_channel: int = STREAMS_PER_CHANNEL) -> int:
    """How many channels (HTTP/2 connections) to spread `concurrency` calls or streams over."""
    return max(1, math.ceil(concurrency / per_channel))


@dataclass
class Recorder:
    """Latencies and units of operations finishing inside [window_start, window_end]."""

    window_start: float
    window_end: float
    latencies_ms: list[float] = field(default_factory=list)
    units: int = 0
    ops: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def ok(self, start: float, end: float, units: int = 1) -> None:
        """Records a successful operation that ran from start to end (perf_counter seconds)."""
        if self.window_start <= end <= self.window_end:
            self.latencies_ms.append((end - start) * 1000)
            self.units += units
            self.ops += 1

    def error(self, what: object) -> None:
        """Counts a failed operation (keeps a few messages as samples)."""
        self.errors += 1
        if len(self.error_samples) < 5:
            at = time.perf_counter() - self.window_start
            self.error_samples.append(f"{str(what)[:300]} (at {at:+.1f} s from the window start)")


def _rpc_error(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details()}"


async def _stream_error(call: grpc.aio.StreamStreamCall, error: Exception) -> str:
    """What ended a stream: its status when it has one (a write after the end raises
    InvalidStateError, not the status)."""
    if isinstance(error, grpc.aio.AioRpcError):
        return _rpc_error(error)
    try:
        code = await asyncio.wait_for(call.code(), 5)
        return f"{code.name}: {await call.details()}"
    except Exception:  # noqa: BLE001 - best effort: report the original error
        return repr(error)


@dataclass(frozen=True)
class Security:
    """How the generator's channels connect: TLS trusting `tls_ca` (PEM bytes), and a bearer
    token sent with every call. Empty: plaintext, no token."""

    tls_ca: bytes | None = None
    token: str | None = None

    def channel(self, target: str) -> grpc.aio.Channel:
        """A new channel to target (its own TCP connection)."""
        if self.tls_ca is None:
            if self.token:
                raise ValueError("a token needs TLS (--tls-ca)")
            return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        creds = grpc.ssl_channel_credentials(root_certificates=self.tls_ca)
        if self.token:
            creds = grpc.composite_channel_credentials(
                creds, grpc.access_token_call_credentials(self.token)
            )
        return grpc.aio.secure_channel(target, creds, options=CHANNEL_OPTIONS)


class Scenario:
    """One scenario run against one target."""

    def __init__(
        self,
        spec: ScenarioSpec,
        target: str,
        duration: float,
        warmup: float,
        prefix: str,
        security: Security | None = None,
        run_id: str | None = None,
        alert_every: int = 0,
    ) -> None:
        """run_id: fixed user ids (`<run_id>-u<i>`, for a watcher that knows them in advance);
        alert_every > 0 (streams1hz): readings at 70 bpm with one at 175 every alert_every
        readings (an alert raised, and cleared 3 readings later), and each reading's
        acknowledgement time kept (self.acks)."""
        self.spec = spec
        self.target = target
        self.duration = duration
        self.warmup = warmup
        self.run_id = run_id or f"{prefix}-{spec.kind}{spec.concurrency}-{secrets.token_hex(3)}"
        self.alert_every = alert_every
        # user -> (ts_ms, acknowledged at (Unix ms), bpm) of each acknowledged reading
        self.acks: dict[str, list[tuple[int, int, int]]] = {}
        sec = security or Security()
        self.channels = [sec.channel(target) for _ in range(channels_for(spec.concurrency))]
        self.stubs = [pb_grpc.HeartRateMonitorStub(c) for c in self.channels]
        self.extra: dict[str, Any] = {}
        self.bpm = workout_bpm(3600, 1.0, seed=7)

    def user(self, i: int) -> str:
        """The user id of worker i."""
        return f"{self.run_id}-u{i}"

    def stub(self, i: int) -> pb_grpc.HeartRateMonitorStub:
        """The stub worker i uses (workers spread over the channels in blocks)."""
        return self.stubs[(i * len(self.stubs)) // max(1, self.spec.concurrency)]

    async def close(self) -> None:
        """Closes every channel."""
        await asyncio.gather(*(c.close() for c in self.channels))

    async def run(self) -> dict[str, Any]:
        """Sets up, runs the workers for warmup + duration, and returns the result."""
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in self.channels))
        await self.setup()
        t0 = time.perf_counter()
        rec = Recorder(t0 + self.warmup, t0 + self.warmup + self.duration)
        stop_at = rec.window_end
        worker = self.worker_fn()
        cpu0 = _cpu_s()
        await asyncio.gather(*(worker(i, rec, stop_at) for i in range(self.spec.concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = _cpu_s() - cpu0
        await self.after(rec)
        lat = summarize_latencies(rec.latencies_ms)
        return {
            "scenario": self.spec.name,
            "kind": self.spec.kind,
            "concurrency": self.spec.concurrency,
            "unit": self.spec.unit,
            "target": self.target,
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "elapsed_s": round(elapsed, 3),
            "throughput": rec.units / self.duration,
            "ops": rec.ops,
            "units": rec.units,
            "errors": rec.errors,
            "error_samples": rec.error_samples,
            "latency_ms": asdict(lat),
            "channels": len(self.channels),
            "loadgen_cpu_s": round(cpu, 3),
            "loadgen_cpu_share": round(cpu / elapsed, 3) if elapsed else None,
            **self.extra,
        }

    async def setup(self) -> None:
        """Writes what the scenario reads (status and zones-stored)."""
        kind = self.spec.kind
        if kind == "status":
            base = now_ms() - 3_600_000
            await asyncio.gather(
                *(
                    self._write_batch(self.stub(i), self.user(i), base, 1000, 100)
                    for i in range(self.spec.concurrency)
                )
            )
        elif kind == "zones-stored":
            base = now_ms() - ZONE_READINGS * 1000 - 60_000
            self.extra["zones_range"] = (base, base + (ZONE_READINGS - 1) * 1000)
            for chunk in range(0, ZONE_READINGS, 10_000):
                await self._write_batch(
                    self.stubs[0], self.user(0), base + chunk * 1000, 1000, 10_000
                )

    async def _write_batch(
        self, stub: pb_grpc.HeartRateMonitorStub, user: str, base: int, step: int, n: int
    ) -> None:
        req = pb.HeartRateBatchRequest(
            user_id=user,
            bpm=np.resize(self.bpm, n).tolist(),
            timestamps_ms=(base + np.arange(n, dtype=np.int64) * step).tolist(),
        )
        resp = await stub.SubmitHeartRateBatch(req, timeout=RPC_TIMEOUT_S)
        if resp.accepted != n:
            raise RuntimeError(f"setup batch for {user}: accepted {resp.accepted} of {n}: {resp}")

    async def after(self, rec: Recorder) -> None:
        """Post-run checks (lost readings of streams1hz)."""
        if self.spec.kind != "streams1hz":
            return
        sent: dict[int, int] = self.extra.pop("_sent")
        sem = asyncio.Semaphore(64)

        async def stored(i: int) -> int:
            async with sem:
                resp = await self.stub(i).GetHeartRateStatus(
                    pb.StatusRequest(user_id=self.user(i), recent_count=1000),
                    timeout=RPC_TIMEOUT_S,
                )
                return int(resp.stats.count)

        counts = await asyncio.gather(*(stored(i) for i in range(self.spec.concurrency)))
        total_sent = sum(sent.values())
        total_stored = sum(counts)
        self.extra.update(
            sent=total_sent,
            acked_ok=self.extra.pop("_acked", 0),
            stored=total_stored,
            lost=total_sent - total_stored,
            send_lag_ms=asdict(summarize_latencies(self.extra.pop("_lags"))),
        )

    def worker_fn(self) -> Callable[[int, Recorder, float], Awaitable[None]]:
        """The worker coroutine function of this scenario's kind."""
        return {
            "unary": self._unary,
            "stream": self._stream,
            "streams1hz": self._stream_1hz,
            "batch": self._batch,
            "status": self._status,
            "zones": self._zones,
            "zones-stored": self._zones_stored,
        }[self.spec.kind]

    async def _unary(self, i: int, rec: Recorder, stop_at: float) -> None:
        stub, user, bpm = self.stub(i), self.user(i), self.bpm
        base = now_ms() - 3_600_000
        n = 0
        while time.perf_counter() < stop_at:
            req = pb.HeartRateRequest(
                bpm=int(bpm[n % len(bpm)]), user_id=user, timestamp_ms=base + n
            )
            n += 1
            start = time.perf_counter()
            try:
                resp = await stub.SubmitHeartRate(req, timeout=RPC_TIMEOUT_S)
            except grpc.aio.AioRpcError as e:
                rec.error(_rpc_error(e))
                continue
            if resp.success and not resp.duplicate:
                rec.ok(start, time.perf_counter())
            else:
                rec.error(resp.error or "duplicate")

    async def _stream(self, i: int, rec: Recorder, stop_at: float) -> None:
        stub, user, bpm = self.stub(i), self.user(i), self.bpm
        base = now_ms() - 3_600_000
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
            rec.error(await _stream_error(call, e))
            return
        await self._close_stream(call, rec)

    async def _stream_1hz(self, i: int, rec: Recorder, stop_at: float) -> None:
        stub, user, bpm = self.stub(i), self.user(i), self.bpm
        sent = self.extra.setdefault("_sent", {})
        lags: list[float] = self.extra.setdefault("_lags", [])
        sent[i] = 0
        start_at = time.perf_counter() + i / self.spec.concurrency  # spread over the first second
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
                if self.alert_every:
                    value = 175 if n % self.alert_every == self.alert_every - 1 else 70
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
                    self.extra["_acked"] = self.extra.get("_acked", 0) + 1
                    rec.ok(start, time.perf_counter())
                    if self.alert_every:
                        ack = (req.timestamp_ms, now_ms(), req.bpm)
                        self.acks.setdefault(user, []).append(ack)
                else:
                    rec.error(resp.error or "duplicate")
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
            rec.error(await _stream_error(call, e))
            return
        await self._close_stream(call, rec)

    async def _close_stream(self, call: grpc.aio.StreamStreamCall, rec: Recorder) -> None:
        """Half-closes a stream and reads its end; a failure here is an error "at close" (every
        reading was already acknowledged)."""
        try:
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:
                rec.error("unexpected extra answer")
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
            rec.error(f"at close: {await _stream_error(call, e)}")
            self.extra["close_errors"] = self.extra.get("close_errors", 0) + 1

    async def _batch(self, i: int, rec: Recorder, stop_at: float) -> None:
        stub, user = self.stub(i), self.user(i)
        base = now_ms() - 20 * 86_400_000  # 100 ms apart: room for 17 M readings per user
        bpm = np.resize(self.bpm, BATCH_SIZE).tolist()
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
                rec.error(_rpc_error(e))
                continue
            if resp.accepted == BATCH_SIZE:
                rec.ok(start, time.perf_counter(), BATCH_SIZE)
            else:
                rec.error(f"accepted {resp.accepted} rejected {resp.rejected} dup {resp.duplicate}")

    async def _status(self, i: int, rec: Recorder, stop_at: float) -> None:
        stub = self.stub(i)
        req = pb.StatusRequest(user_id=self.user(i), recent_count=STATUS_RECENT)
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                resp = await stub.GetHeartRateStatus(req, timeout=RPC_TIMEOUT_S)
            except grpc.aio.AioRpcError as e:
                rec.error(_rpc_error(e))
                continue
            if len(resp.recent_measurements) == STATUS_RECENT:
                rec.ok(start, time.perf_counter())
            else:
                rec.error(f"{len(resp.recent_measurements)} recent readings")

    async def _zones(self, i: int, rec: Recorder, stop_at: float) -> None:
        base = now_ms() - ZONE_READINGS * 1000
        req = pb.ExerciseZoneRequest(
            user_id=self.user(i),
            age=35,
            bpm=np.resize(self.bpm, ZONE_READINGS).tolist(),
            timestamps_ms=(base + np.arange(ZONE_READINGS, dtype=np.int64) * 1000).tolist(),
        )
        await self._zone_loop(self.stub(i), req, rec, stop_at)

    async def _zones_stored(self, i: int, rec: Recorder, stop_at: float) -> None:
        lo, hi = self.extra["zones_range"]
        req = pb.ExerciseZoneRequest(
            user_id=self.user(0),
            age=35,
            stored_range=pb.StoredRange(from_timestamp_ms=lo, to_timestamp_ms=hi),
        )
        await self._zone_loop(self.stub(i), req, rec, stop_at)

    async def _zone_loop(
        self,
        stub: pb_grpc.HeartRateMonitorStub,
        req: pb.ExerciseZoneRequest,
        rec: Recorder,
        stop_at: float,
    ) -> None:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                resp = await stub.CalculateExerciseZones(req, timeout=RPC_TIMEOUT_S)
            except grpc.aio.AioRpcError as e:
                rec.error(_rpc_error(e))
                continue
            if resp.reading_count == ZONE_READINGS:
                rec.ok(start, time.perf_counter(), ZONE_READINGS)
            else:
                rec.error(f"reading_count {resp.reading_count}")


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def run_scenario(
    spec: ScenarioSpec,
    target: str,
    duration: float,
    warmup: float,
    prefix: str,
    security: Security | None = None,
    run_id: str | None = None,
    alert_every: int = 0,
    acks_out: str | None = None,
) -> dict[str, Any]:
    """Runs one scenario and returns its result dict (acks_out: the acknowledgement times of
    an alert_every run, as JSON {user: [[ts_ms, acked_ms], ...]})."""
    scenario = Scenario(spec, target, duration, warmup, prefix, security, run_id, alert_every)
    try:
        result = await scenario.run()
    finally:
        await scenario.close()
    if acks_out:
        Path(acks_out).write_text(json.dumps(scenario.acks))
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints the result as JSON (and writes it with --json-out)."""
    parser = argparse.ArgumentParser(description="asyncio gRPC load generator (see module doc)")
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--scenario", required=True, type=parse_scenario, help="kind:concurrency")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--prefix", default=f"lg{os.getpid()}", help="user id prefix")
    parser.add_argument("--json-out", help="write the result here")
    parser.add_argument("--run-id", help="fixed user id prefix: users are <run-id>-u<i>")
    parser.add_argument("--alert-every", type=int, default=0, help="streams1hz: alert pattern")
    parser.add_argument("--acks-out", help="streams1hz with --alert-every: ack times (JSON)")
    parser.add_argument("--tls-ca", type=Path, help="connect over TLS, trusting this PEM CA")
    parser.add_argument("--token-file", type=Path, help="send this bearer token (needs --tls-ca)")
    args = parser.parse_args(argv)
    security = Security(
        args.tls_ca.read_bytes() if args.tls_ca else None,
        args.token_file.read_text().strip() if args.token_file else None,
    )
    result = asyncio.run(
        run_scenario(
            args.scenario,
            args.target,
            args.duration,
            args.warmup,
            args.prefix,
            security,
            args.run_id,
            args.alert_every,
            args.acks_out,
        )
    )
    text = json.dumps(result, indent=2)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
