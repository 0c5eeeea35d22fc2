"""Benchmark of ReadingStore against its own embedded Redis: batch throughput, single-write
latency, and the capacity inputs (loadtest/bench_capacity.py: bytes per reading after compaction,
compaction throughput, time to read back one compacted day).

Run: .venv/bin/python -m heartrate_serve.loadtest.bench_store [--readings 1000000] [--fsync ...]
     [--no-capacity]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.alerts import AlertRules
from heartrate_serve.loadtest import bench_capacity
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.store.store import ReadingStore

T0_MS = 1_700_000_000_000
RETENTION_MS = 30 * 86_400_000


def _classify(bpm: NDArray[np.int32]) -> NDArray[np.uint8]:
    """NORMAL 50-150 bpm, LOW below, HIGH above (the default bands)."""
    return np.where(bpm < 50, 1, np.where(bpm > 150, 2, 0)).astype(np.uint8)


async def bench_batches(
    store: ReadingStore,
    total: int,
    batch: int,
    n_users: int,
    concurrency: int,
    users_of: int | None = None,
    start_ms: int = T0_MS,
) -> float:
    """Writes `total` new readings, `batch` per call, over `n_users` users; returns readings/s.
    Fresh users per run (no reading a duplicate of an earlier run's), or those of the run with
    concurrency `users_of`, continuing at start_ms."""
    rng = np.random.default_rng(0)
    users = [f"bench-c{users_of or concurrency}-user-{i}" for i in range(n_users)]
    user_of = [users[i % n_users] for i in range(batch)]
    per_user = batch // n_users  # each batch advances every user by this many readings
    n_batches = total // batch
    queue: asyncio.Queue[int] = asyncio.Queue()
    for b in range(n_batches):
        queue.put_nowait(b)

    async def worker() -> None:
        while not queue.empty():
            b = queue.get_nowait()
            step = np.arange(batch, dtype=np.int64) // n_users + b * per_user
            ts = start_ms + step * 1000  # one reading per user per second
            bpm = rng.integers(40, 181, batch).astype(np.int32)
            now = int(ts[-1])
            await store.write_batch(user_of, ts, bpm, _classify(bpm), now)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n_batches * batch / (time.perf_counter() - start)


async def bench_single(store: ReadingStore, n: int) -> NDArray[np.float64]:
    """Latencies (ms) of n sequential single-reading write_batch calls."""
    out = np.empty(n)
    bpm = np.array([72], np.int32)
    cls = np.zeros(1, np.uint8)
    for i in range(n):
        ts = np.array([T0_MS + i * 1000], np.int64)
        start = time.perf_counter()
        await store.write_batch(["single-user"], ts, bpm, cls, int(ts[0]))
        out[i] = (time.perf_counter() - start) * 1000
    return out


async def bench_recent(store: ReadingStore, n: int, count: int) -> NDArray[np.float64]:
    """Latencies (ms) of n sequential recent(user, count) reads."""
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        await store.recent(f"bench-c1-user-{i % 100}", count)
        out[i] = (time.perf_counter() - start) * 1000
    return out


async def run(args: argparse.Namespace, url: str) -> list[tuple[str, str]]:
    """Runs every benchmark against the Redis at `url`; returns the table rows."""
    store = ReadingStore(url, retention_ms=RETENTION_MS, alert_rules=AlertRules())
    try:
        await store.write_batch([], np.zeros(0, np.int64), np.zeros(0, np.int32),
                                np.zeros(0, np.uint8), T0_MS)  # fmt: skip
        rows: list[tuple[str, str]] = []
        for conc in sorted({1, args.concurrency}):
            rate = await bench_batches(store, args.readings, args.batch, args.users, conc)
            label = f"batch write, {args.batch}/batch, {args.users} users, {conc} in flight"
            rows.append((label, f"{rate:,.0f} readings/s"))
        # Steady state: the same users once their history is compacted (each write then also
        # checks and trims the user's chunks).
        compactor = await store.compactor()
        stats = await compactor.sweep(T0_MS + 86_400_000)
        later = T0_MS + 86_400_000 - 3_600_000  # past every chunk written above
        rate = await bench_batches(store, args.readings, args.batch, args.users, args.concurrency,
                                   users_of=args.concurrency, start_ms=later)  # fmt: skip
        rows.append((f"same, {args.concurrency} in flight, users with compacted history "
                     f"({stats.chunks_written} chunks)", f"{rate:,.0f} readings/s"))  # fmt: skip
        single = await bench_single(store, args.single)
        p50, p99 = np.percentile(single, [50, 99])
        rows.append((f"single-reading write_batch ({args.single} sequential)",
                     f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"))  # fmt: skip
        reads = await bench_recent(store, args.single, 100)
        p50, p99 = np.percentile(reads, [50, 99])
        rows.append((f"recent(user, 100) ({args.single} sequential)",
                     f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"))  # fmt: skip
        return rows
    finally:
        await store.aclose()


def main() -> None:
    """Starts a private embedded Redis in a temporary directory, benchmarks, prints a table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--readings", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8, help="batches in flight (2nd run)")
    p.add_argument("--single", type=int, default=2_000)
    p.add_argument("--fsync", default="everysec", choices=("everysec", "always", "no"))
    p.add_argument("--no-capacity", action="store_true", help="skip bench_capacity (~75 s)")
    args = p.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-store-") as tmp,
        EmbeddedRedis(Path(tmp), fsync=args.fsync) as server,
    ):
        rows = asyncio.run(run(args, server.url))
    print(f"\nReadingStore on embedded Redis 6.2 (appendfsync {args.fsync}), one asyncio client\n")
    print("| benchmark | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if not args.no_capacity:
        bench_capacity.main([])


if __name__ == "__main__":
    main()
