"""`make soak`: steady streaming load for minutes with faults injected on a schedule (issue 12).

Starts its own service (`make run`'s launcher, embedded Redis). `--devices` devices each stream
`--rate` readings/s through the project's resending client (cli/resending.py), and a zone
analyst asks for a stored-range CalculateExerciseZones every `--zones-every` s. Every
`--fault-every` s one fault is injected, in turn: kill -9 of the HeartRateIngress replica, of
the Validator replica, of the ZoneCalculator replica, of the embedded Redis (the launcher
restarts it). Every 10 s a line shows readings sent / acknowledged, resends, retries by cause and
the service's RSS; at the end the readings stored are counted per device (stored-range zone
requests) and compared with those acknowledged.

    make soak                      # 10 minutes
    make soak SOAK_MINUTES=3
    .venv/bin/python -m heartrate_serve.loadtest.soak --minutes 2 --devices 20 --fault-every 30

Exit status 1 when an acknowledged reading is not stored, or a device gave up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import psutil

from heartrate_serve.cli.resending import (
    AsyncResendingStream,
    RetryPolicy,
    StreamStats,
)
from heartrate_serve.loadtest.service import own_service, sample_tree, tree
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc

FAULTS = ("HeartRateIngress", "Validator", "ZoneCalculator", "redis")
REPORT_EVERY_S = 10.0
DEVICE_RETRY_S = 180.0  # a device gives up only after this long without progress
_CAUSE = re.compile(r"\((\w+):")


@dataclass
class SoakReport:
    """A soak's figures (JSON-friendly)."""

    minutes: float
    devices: int
    rate_per_device: float
    faults: list[dict[str, object]] = field(default_factory=list)
    sent: int = 0
    acknowledged: int = 0
    rejected: int = 0
    resent: int = 0
    reconnects: int = 0
    stored: int = 0
    lost: int = 0
    devices_gave_up: int = 0
    retries_by_cause: dict[str, int] = field(default_factory=dict)
    zone_calls: dict[str, int] = field(default_factory=dict)
    rss_mib: list[tuple[int, int]] = field(default_factory=list)  # (second, MiB)


def _processes(launcher_pid: int, fault: str) -> list[psutil.Process]:
    """The processes of one fault target in the launcher's tree."""
    found = []
    for p in tree([launcher_pid]):
        try:
            if fault == "redis":
                if p.name() == "redis-server":
                    found.append(p)
            elif re.search(
                rf"ServeReplica:heartrate:{fault}(?![A-Za-z0-9_])", " ".join(p.cmdline())
            ):
                found.append(p)
        except psutil.Error:
            continue
    return found


def _kill(launcher_pid: int, fault: str) -> int:
    """SIGKILLs the target's processes; how many."""
    procs = _processes(launcher_pid, fault)
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            continue
    return len(procs)


async def soak(
    address: str,
    launcher_pid: int,
    *,
    minutes: float,
    devices: int,
    rate: float,
    fault_every_s: float,
    zones_every_s: float,
) -> SoakReport:
    """Runs the soak against a running service (launcher_pid: its launcher, for faults and RSS)."""
    report = SoakReport(minutes=minutes, devices=devices, rate_per_device=rate)
    stats = StreamStats()
    causes: Counter[str] = Counter()
    zone_codes: Counter[str] = Counter()
    run = uuid.uuid4().hex[:6]
    users = [f"soak-{run}-{i}" for i in range(devices)]
    first_ms = int(time.time() * 1000)
    stop = asyncio.Event()
    started = time.monotonic()
    retry = RetryPolicy(max_seconds=DEVICE_RETRY_S)

    def on_retry(what: str, _delay: float) -> None:
        found = _CAUSE.search(what)
        causes[found.group(1) if found else "other"] += 1

    channel = grpc.aio.insecure_channel(address, options=[("grpc.max_reconnect_backoff_ms", 2000)])
    stub = pb_grpc.HeartRateMonitorStub(channel)

    async def device(i: int) -> None:
        period = 1.0 / rate

        async def readings() -> AsyncIterator[pb.HeartRateRequest]:
            k = 0
            while not stop.is_set():
                k += 1
                # Timestamps of this device only: ms resolution, one identity per reading.
                ts = max(int(time.time() * 1000), first_ms + k)
                yield pb.HeartRateRequest(user_id=users[i], bpm=60 + k % 80, timestamp_ms=ts)
                await asyncio.sleep(period)

        stream = AsyncResendingStream(
            lambda requests: stub.StreamHeartRate(requests),
            readings(),
            retry=retry,
            stats=stats,
            on_retry=on_retry,
            window=64,
        )
        try:
            async for _ in stream:
                pass
        except grpc.RpcError:
            report.devices_gave_up += 1

    async def analyst() -> None:
        k = 0
        while not stop.is_set():
            await asyncio.sleep(zones_every_s)
            k += 1
            req = pb.ExerciseZoneRequest(
                user_id=users[k % devices],
                age=40,
                stored_range=pb.StoredRange(
                    from_timestamp_ms=first_ms, to_timestamp_ms=int(time.time() * 1000)
                ),
            )
            try:
                await stub.CalculateExerciseZones(req, timeout=30)
                zone_codes["OK"] += 1
            except grpc.aio.AioRpcError as error:
                zone_codes[error.code().name] += 1

    async def faults() -> None:
        n = 0
        while True:
            await asyncio.sleep(fault_every_s)
            if stop.is_set():
                return
            target = FAULTS[n % len(FAULTS)]
            n += 1
            killed = await asyncio.to_thread(_kill, launcher_pid, target)
            at = round(time.monotonic() - started)
            report.faults.append({"at_s": at, "kill -9": target, "processes": killed})
            print(f"[{at:>4} s] kill -9 {target} ({killed} process(es))", flush=True)

    async def reporter() -> None:
        while not stop.is_set():
            rss = (await asyncio.to_thread(sample_tree, [launcher_pid])).rss_bytes >> 20
            at = round(time.monotonic() - started)
            report.rss_mib.append((at, rss))
            print(
                f"[{at:>4} s] sent {stats.sent} acked {stats.acknowledged} resent {stats.resent} "
                f"reconnects {stats.reconnects} retries {dict(causes)} zones {dict(zone_codes)} "
                f"RSS {rss} MiB",
                flush=True,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REPORT_EVERY_S)

    tasks = [asyncio.create_task(device(i)) for i in range(devices)]
    helpers = [asyncio.create_task(t()) for t in (analyst, faults, reporter)]
    await asyncio.sleep(minutes * 60)
    stop.set()
    await asyncio.gather(*tasks)  # every reading taken gets its final answer
    for h in helpers:
        h.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)
    report.stored = await _stored(stub, users, first_ms)
    await channel.close()
    report.sent, report.acknowledged = stats.sent, stats.acknowledged
    report.rejected, report.resent, report.reconnects = (
        stats.rejected,
        stats.resent,
        stats.reconnects,
    )
    report.lost = max(0, report.acknowledged - report.stored)
    report.retries_by_cause = dict(causes)
    report.zone_calls = dict(zone_codes)
    return report


async def _stored(stub: pb_grpc.HeartRateMonitorStub, users: list[str], first_ms: int) -> int:
    """Readings stored for the soak's users (stored-range zone requests: reading_count)."""
    total = 0
    for user in users:
        req = pb.ExerciseZoneRequest(
            user_id=user,
            age=40,
            stored_range=pb.StoredRange(
                from_timestamp_ms=first_ms, to_timestamp_ms=int(time.time() * 1000) + 600_000
            ),
        )
        for _ in range(30):
            try:
                total += (await stub.CalculateExerciseZones(req, timeout=30)).reading_count
                break
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    break  # no stored readings
                await asyncio.sleep(1)
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Streaming load with faults (issue 12).")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5.0, help="readings/s per device")
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("--zones-every", type=float, default=2.0, help="seconds between zones")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    with own_service("soak-") as svc:
        assert svc.process is not None
        report = asyncio.run(
            soak(
                svc.address,
                svc.process.pid,
                minutes=args.minutes,
                devices=args.devices,
                rate=args.rate,
                fault_every_s=args.fault_every,
                zones_every_s=args.zones_every,
            )
        )
    text = json.dumps(asdict(report))
    if args.json:
        args.json.write_text(text)
    summary = {k: v for k, v in asdict(report).items() if k != "rss_mib"}
    peak = max((m for _, m in report.rss_mib), default=0)
    print(json.dumps({**summary, "peak_rss_mib": peak}, indent=2))
    raise SystemExit(1 if report.lost or report.devices_gave_up else 0)


if __name__ == "__main__":
    main()
