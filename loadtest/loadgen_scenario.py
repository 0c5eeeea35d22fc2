"""One load generator scenario against one target: its channels and user ids, the data it
needs written first (setup), its workers run for warm-up + duration (the coroutines are in
loadgen_workers.py), the checks afterwards (lost readings of streams1hz) and the result dict.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from heartrate_serve.cli.workouts import workout_bpm
from heartrate_serve.loadtest.common import ScenarioSpec, summarize_latencies
from heartrate_serve.loadtest.loadgen_channels import RPC_TIMEOUT_S, Security, channels_for
from heartrate_serve.loadtest.loadgen_recording import Recorder, cpu_s, now_ms
from heartrate_serve.loadtest.loadgen_workers import WORKERS, ZONE_READINGS
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc

# zones-stored waits this long after writing its 100 000 readings (28 h of them) so that the
# server's compaction (every COMPACT_INTERVAL_S, 30 s by default) has moved the closed chunks into
# blobs on both sides: the measured reads are then those of stored history, not of readings
# written seconds ago. Without the wait the state depended on when a sweep fell (measured
# 2026-12-01: the same 100 000-reading zone call took ~200 ms before a sweep and ~20-35 ms after,
# on the service and on the plain baseline alike).
COMPACTION_WAIT_S = 35.0


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
        cpu0 = cpu_s()
        await asyncio.gather(*(worker(i, rec, stop_at) for i in range(self.spec.concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = cpu_s() - cpu0
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
            await asyncio.sleep(COMPACTION_WAIT_S)

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
        """The worker coroutine function of this scenario's kind (loadgen_workers.WORKERS),
        bound to this scenario."""
        return functools.partial(WORKERS[self.spec.kind], self)
