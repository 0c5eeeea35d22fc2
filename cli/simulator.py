"""`heartrate simulate`: many users streaming synthetic workouts in real time (grpc.aio)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.cli.channel import open_aio_channel, with_token
from heartrate_serve.cli.commands import resend_counts, retry_policy
from heartrate_serve.cli.exit_codes import EXIT_OK
from heartrate_serve.cli.inputs import now_ms
from heartrate_serve.cli.output import Json, Tally, emit
from heartrate_serve.cli.resending import AsyncResendingStream, StreamStats
from heartrate_serve.cli.workouts import workout_bpm
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc


def sim_user_ids(prefix: str, users: int) -> list[str]:
    """The simulated user ids: PREFIX1..PREFIXN."""
    return [f"{prefix}{i}" for i in range(1, users + 1)]


def sim_request(
    user_id: str, bpm: int, i: int, rate_hz: float, start_ms: int
) -> pb.HeartRateRequest:
    """Reading i of a simulated user, 1/rate s after the previous: ms when rate > 1, else s."""
    if rate_hz > 1:
        ts_ms = start_ms + round(i * 1000 / rate_hz)
        return pb.HeartRateRequest(bpm=bpm, timestamp_ms=ts_ms, user_id=user_id)
    return pb.HeartRateRequest(
        bpm=bpm, timestamp=start_ms // 1000 + round(i / rate_hz), user_id=user_id
    )


def progress_line(tally: Tally, elapsed_s: float, stats: StreamStats | None = None) -> str:
    """The simulator's progress line; resends and reconnections once there are any."""
    line = (
        f"sent {tally.sent}  acked {tally.acked}  rejected {tally.rejected}  "
        f"alerts {tally.alerts}  elapsed {elapsed_s:.1f}s"
    )
    if stats is not None and (stats.resent or stats.reconnects):
        line += f"  resent {stats.resent}  reconnects {stats.reconnects}"
    return line


def sim_summary(
    tally: Tally,
    users: int,
    rate_hz: float,
    duration_s: float,
    elapsed_s: float,
    stats: StreamStats | None = None,
) -> Json:
    """The simulator's final summary as a JSON-ready dict."""
    return {
        "users": users,
        "rate_hz": rate_hz,
        "duration_s": duration_s,
        **{k: v for k, v in asdict(tally).items() if k != "malformed"},
        **(resend_counts(stats) if stats is not None else {}),
        "elapsed_s": round(elapsed_s, 3),
        "acked_per_s": round(tally.acked / elapsed_s, 1) if elapsed_s > 0 else 0.0,
    }


async def paced_requests(
    user_id: str, bpms: NDArray[np.int32], rate_hz: float, t0: float, tally: Tally
) -> AsyncIterator[pb.HeartRateRequest]:
    """The user's readings, reading i sent at t0 + i/rate on the monotonic clock."""
    start_ms = now_ms()
    for i, bpm in enumerate(bpms.tolist()):
        delay = t0 + i / rate_hz - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tally.sent += 1
        yield sim_request(user_id, bpm, i, rate_hz, start_ms)


async def simulate_user(
    stub: Any,
    user_id: str,
    seed: int,
    args: argparse.Namespace,
    tally: Tally,
    t0: float,
    stats: StreamStats,
) -> None:
    """One simulated user: a whole synthetic workout over a resending bidi stream (reopened, with
    its unanswered readings resent, when it breaks; counted in the shared `stats`)."""
    bpms = workout_bpm(args.duration, args.rate, seed)
    requests = paced_requests(user_id, bpms, args.rate, t0, tally)
    deadline = t0 + args.duration + args.timeout

    def open_call(reqs: AsyncIterator[pb.HeartRateRequest]) -> Any:
        """One StreamHeartRate call, due by the workout's end plus --timeout."""
        return stub.StreamHeartRate(reqs, timeout=max(deadline - time.monotonic(), args.timeout))

    stream = AsyncResendingStream(open_call, requests, retry=retry_policy(args), stats=stats)
    async for _, resp in stream:
        tally.add(resp)


async def report_progress(
    tally: Tally, t0: float, out: TextIO, stats: StreamStats | None = None
) -> None:
    """Refreshes the progress line on `out` about once per second until cancelled."""
    end = "\r" if out.isatty() else "\n"
    try:
        while True:
            await asyncio.sleep(1.0)
            out.write(progress_line(tally, time.monotonic() - t0, stats) + end)
            out.flush()
    finally:
        if end == "\r":
            out.write("\n")


async def _run_users(
    stub: Any, args: argparse.Namespace, tally: Tally, t0: float, stats: StreamStats
) -> None:
    """All users' streams concurrently; the first failure cancels the others and is raised."""
    users = sim_user_ids(args.user_prefix, args.users)
    tasks = [
        asyncio.create_task(simulate_user(stub, u, args.seed + i, args, tally, t0, stats))
        for i, u in enumerate(users)
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_simulate(args: argparse.Namespace) -> int:
    """`simulate`: N concurrent real-time streams (grpc.aio), progress on stderr, a summary.

    Streams resend through transient failures without a warning per retry (there may be many
    users): the progress line and the summary count resends and reconnections instead."""
    tally, stats, t0 = Tally(), StreamStats(), time.monotonic()
    async with open_aio_channel(args) as channel:
        stub = with_token(
            pb_grpc.HeartRateMonitorStub(channel),  # type: ignore[no-untyped-call]
            getattr(args, "token", None),
        )
        progress = asyncio.create_task(report_progress(tally, t0, sys.stderr, stats))
        try:
            await _run_users(stub, args, tally, t0, stats)
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
    elapsed = time.monotonic() - t0
    summary = sim_summary(tally, args.users, args.rate, args.duration, elapsed, stats)
    emit(args.json, summary, ["summary: " + ", ".join(f"{k} {v}" for k, v in summary.items())])
    return EXIT_OK
