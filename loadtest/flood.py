"""A flood beyond capacity: what the service sheds, what it keeps, its peak memory, and how soon it
serves normally afterwards (issue 12).

For `--seconds`, `--unary` unary submitters (each with one call in flight, back to back),
`--batches` batch senders (each with one `--batch-readings`-reading SubmitHeartRateBatch in
flight) and `--streams` streams (a reading every 50 ms each) hit the service at once. Every
call's outcome is counted by status code; the whole service's process tree RSS is sampled every
0.25 s. Afterwards the time until a SubmitHeartRate and a batch of 1 000 succeed again is measured.

    .venv/bin/python -m heartrate_serve.loadtest.flood              # starts its own service
    .venv/bin/python -m heartrate_serve.loadtest.flood --address 127.0.0.1:50051 --pid <launcher>

Load problems must answer RESOURCE_EXHAUSTED, UNAVAILABLE or DEADLINE_EXCEEDED, never INTERNAL or
UNKNOWN; `bad_codes` in the summary lists any other failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field

import grpc
import numpy as np

from heartrate_serve.cli.resending import AIO_LOST_STATUS
from heartrate_serve.loadtest.service import own_service, sample_tree
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.service.convert import BATCH_MAX_READINGS

LOAD_CODES = {"OK", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED"}
CALL_TIMEOUT_S = 60.0
MAX_MESSAGE = 64 * 1024 * 1024
RECOVERY_TIMEOUT_S = 120.0


# What a call whose status grpc.aio lost counts as (see _Tally.failed): not a bad code.
LOST_STATUS = "LOST_STATUS"


@dataclass
class FloodResult:
    """What a flood saw (JSON-friendly)."""

    seconds: float
    calls: dict[str, dict[str, int]] = field(default_factory=dict)  # rpc -> code -> count
    stream_rejects: dict[str, int] = field(default_factory=dict)  # reject reason -> count
    readings_acknowledged: int = 0
    peak_rss_mib: int = 0
    rss_before_mib: int = 0
    rss_after_mib: int = 0
    drained_after_s: float = 0.0  # from the end of the flood until its last call ended
    recovered_after_s: float | None = None  # from then until a unary call and a batch succeed
    details: dict[str, str] = field(default_factory=dict)  # one example message per rpc/code

    @property
    def bad_codes(self) -> dict[str, int]:
        """Failures that are not load statuses: rpc/code -> count."""
        return {
            f"{rpc}/{code}": n
            for rpc, codes in self.calls.items()
            for code, n in codes.items()
            if code not in LOAD_CODES and code != LOST_STATUS
        }

    def summary(self) -> dict[str, object]:
        return {**asdict(self), "bad_codes": self.bad_codes}


class _Tally:
    def __init__(self, result: FloodResult) -> None:
        self.r = result
        self.codes: dict[str, Counter[str]] = {}

    def ok(self, rpc: str, readings: int) -> None:
        self.codes.setdefault(rpc, Counter())["OK"] += 1
        self.r.readings_acknowledged += readings

    def failed(self, rpc: str, error: grpc.aio.AioRpcError) -> None:
        name = error.code().name
        if error.code() == grpc.StatusCode.INTERNAL and error.details() == AIO_LOST_STATUS:
            # A stream the server ended (refused) while this client was still writing: grpc.aio
            # loses the server's status (grpc/grpc#36066); not an answer of the service.
            name = LOST_STATUS
        self.codes.setdefault(rpc, Counter())[name] += 1
        self.r.details.setdefault(f"{rpc}/{name}", (error.details() or "")[:200])


class _RssSampler:
    """Peak RSS of a process tree, sampled by a thread."""

    def __init__(self, pid: int | None, interval_s: float = 0.25) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return 0 if self.pid is None else sample_tree([self.pid]).rss_bytes

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> _RssSampler:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _batch(user: str, n: int, start_ms: int) -> pb.HeartRateBatchRequest:
    ts = start_ms + np.arange(n, dtype=np.int64) * 10
    bpm = 60 + (np.arange(n) % 90)
    return pb.HeartRateBatchRequest(user_id=user, bpm=bpm.tolist(), timestamps_ms=ts.tolist())


async def _until_stop(stop: asyncio.Event, work: object) -> None:
    while not stop.is_set():
        await work()  # type: ignore[operator]


async def flood(
    address: str,
    *,
    seconds: float = 20.0,
    unary: int = 1000,
    batches: int = 32,
    batch_readings: int = BATCH_MAX_READINGS,
    streams: int = 200,
    pid: int | None = None,
    channels: int = 4,
    metadata: list[tuple[str, str]] | None = None,
) -> FloodResult:
    """Floods the service at `address` (see the module docstring); pid: the launcher, for RSS."""
    result = FloodResult(seconds=seconds)
    tally = _Tally(result)
    opts = [
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
    ]
    chans = [grpc.aio.insecure_channel(address, options=opts) for _ in range(channels)]
    stubs = [pb_grpc.HeartRateMonitorStub(c) for c in chans]
    now_ms = int(time.time() * 1000)
    run = uuid.uuid4().hex[:6]
    # A few prebuilt batches (serialising 1M readings per call would load this client instead).
    prebuilt = [_batch(f"flood-{run}-b{i}", batch_readings, now_ms - 3_600_000) for i in range(4)]
    stop = asyncio.Event()
    counter = iter(range(10**12))

    async def one_unary(i: int) -> None:
        stub = stubs[i % len(stubs)]
        k = next(counter)
        req = pb.HeartRateRequest(user_id=f"flood-{run}-u{i}", bpm=70, timestamp_ms=now_ms - k)
        try:
            await stub.SubmitHeartRate(req, timeout=CALL_TIMEOUT_S, metadata=metadata)
            tally.ok("SubmitHeartRate", 1)
        except grpc.aio.AioRpcError as error:
            tally.failed("SubmitHeartRate", error)

    async def one_batch(i: int) -> None:
        stub = stubs[i % len(stubs)]
        req = prebuilt[i % len(prebuilt)]
        try:
            await stub.SubmitHeartRateBatch(req, timeout=CALL_TIMEOUT_S, metadata=metadata)
            tally.ok("SubmitHeartRateBatch", batch_readings)
        except grpc.aio.AioRpcError as error:
            tally.failed("SubmitHeartRateBatch", error)

    async def one_stream(i: int) -> None:
        stub = stubs[i % len(stubs)]

        async def readings() -> AsyncIterator[pb.HeartRateRequest]:
            k = 0
            while not stop.is_set():
                k += 1
                yield pb.HeartRateRequest(
                    user_id=f"flood-{run}-s{i}", bpm=72, timestamp_ms=now_ms - 10**7 + k
                )
                await asyncio.sleep(0.05)

        try:
            async for resp in stub.StreamHeartRate(readings(), metadata=metadata):
                if resp.success:
                    result.readings_acknowledged += 1
                else:
                    reason = pb.RejectReason.Name(resp.reject_reason)
                    result.stream_rejects[reason] = result.stream_rejects.get(reason, 0) + 1
            tally.codes.setdefault("StreamHeartRate", Counter())["OK"] += 1
        except grpc.aio.AioRpcError as error:
            tally.failed("StreamHeartRate", error)

    def unary_worker(i: int) -> object:
        return lambda: one_unary(i)

    def batch_worker(i: int) -> object:
        return lambda: one_batch(i)

    with _RssSampler(pid) as rss:
        result.rss_before_mib = rss.peak >> 20
        started = time.monotonic()
        tasks = [asyncio.create_task(_until_stop(stop, unary_worker(i))) for i in range(unary)]
        tasks += [asyncio.create_task(_until_stop(stop, batch_worker(i))) for i in range(batches)]
        tasks += [asyncio.create_task(one_stream(i)) for i in range(streams)]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        ended = time.monotonic()
        result.drained_after_s = round(ended - started - seconds, 1)
        result.recovered_after_s = await _recovered(stubs[0], run, metadata, ended)
        result.peak_rss_mib = rss.peak >> 20
        result.rss_after_mib = rss.now() >> 20
    result.calls = {rpc: dict(c) for rpc, c in tally.codes.items()}
    for c in chans:
        await c.close()
    return result


async def _recovered(
    stub: pb_grpc.HeartRateMonitorStub,
    run: str,
    metadata: list[tuple[str, str]] | None,
    since: float,
) -> float | None:
    """Seconds from `since` until a unary submit and a 1 000-reading batch both succeed."""
    user = f"flood-{run}-after"
    while time.monotonic() - since < RECOVERY_TIMEOUT_S:
        try:
            t = int(time.time() * 1000)
            one = await stub.SubmitHeartRate(
                pb.HeartRateRequest(user_id=user, bpm=70, timestamp_ms=t),
                timeout=5,
                metadata=metadata,
            )
            batch = await stub.SubmitHeartRateBatch(
                _batch(user, 1000, t - 100_000), timeout=5, metadata=metadata
            )
            if one.success and batch.accepted == 1000:
                return time.monotonic() - since
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.25)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A flood beyond capacity (issue 12).")
    parser.add_argument("--address", help="a running service (default: start one)")
    parser.add_argument("--pid", type=int, help="with --address: the launcher's pid, for RSS")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--unary", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--batch-readings", type=int, default=BATCH_MAX_READINGS)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    args = parser.parse_args(argv)
    kwargs = {
        "seconds": args.seconds,
        "unary": args.unary,
        "batches": args.batches,
        "batch_readings": args.batch_readings,
        "streams": args.streams,
    }
    if args.address:
        result = asyncio.run(flood(args.address, pid=args.pid, **kwargs))
    else:
        with own_service("flood-") as svc:
            assert svc.process is not None
            result = asyncio.run(flood(svc.address, pid=svc.process.pid, **kwargs))
    print(json.dumps(result.summary(), indent=None if args.json else 2))


if __name__ == "__main__":
    main()
