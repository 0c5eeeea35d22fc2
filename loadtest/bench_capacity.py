"""Capacity inputs: Redis memory per reading after compaction, compaction and read-back speed.

Run: .venv/bin/python -m heartrate_serve.loadtest.bench_capacity [--users 3] [--days 7]
(bench_store runs it at its end). Starts a private embedded Redis; for each kind of
data, writes `days` of readings for `users` users (as a device backfill: batches of 20 000), runs
one compaction sweep, and reads Redis INFO used_memory and MEMORY USAGE of the keys. The data ends
half a chunk plus the grace after a chunk boundary, so the hot part is at its average size in
steady streaming (between `grace` and one chunk plus `grace` of readings).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.alerts import AlertRules
from heartrate_serve.loadtest.bench_codec import classes, wander
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.store.compaction import Compactor
from heartrate_serve.store.keys import CHUNK_MS, CHUNKS_KEY, READINGS_KEY, chunk_start
from heartrate_serve.store.store import ReadingStore

DAY_MS = 86_400_000
RETENTION_MS = 30 * DAY_MS
GRACE_MS = 120_000  # Settings.compact_grace_s default
T0_MS = chunk_start(1_750_000_000_000)
WRITE_BATCH = 20_000
Series = tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.uint8]]


def _series(ts: NDArray[np.int64], bpm: NDArray[np.int32]) -> Series:
    return ts, bpm, classes(bpm)


def _grid(rng: np.random.Generator, n: int, period_ms: int) -> NDArray[np.int64]:
    return np.arange(n, dtype=np.int64) * period_ms + rng.integers(-150, 151, n)


# Kind of data -> generator of n_seconds of it (timestamps from 0, ascending, unique).
KINDS: dict[str, Callable[[np.random.Generator, int], Series]] = {
    "1 Hz, ±150 ms jitter, bpm wandering ±3/s": lambda rng, s: _series(
        _grid(rng, s, 1000), wander(rng, s)
    ),
    "irregular: intervals 1000 ±150 ms": lambda rng, s: _series(
        np.cumsum(1000 + rng.integers(-150, 151, s)).astype(np.int64), wander(rng, s)
    ),
    "every 5 s, ±150 ms jitter": lambda rng, s: _series(
        _grid(rng, s // 5, 5000), wander(rng, s)[::5].copy()
    ),
    "1 Hz, random bpm 40..200 (worst case)": lambda rng, s: _series(
        _grid(rng, s, 1000), rng.integers(40, 201, s).astype(np.int32)
    ),
}


@dataclass
class Figures:
    """What one kind of data costs."""

    readings: int
    bytes_per_reading: float  # INFO used_memory growth / readings: everything, hot part included
    bytes_per_compacted: float  # MEMORY USAGE of the chunks keys / compacted readings
    hot_per_user: float  # readings left in the hot part per user
    compaction_per_s: float  # readings moved per second by one sweep
    read_day_ms: float  # median time of range() over one compacted day


async def measure(url: str, kind: str, users: int, days: int, seed: int) -> Figures:
    """Writes, compacts and reads back `days` of `kind` for `users` users on an empty Redis."""
    store = ReadingStore(url, retention_ms=RETENTION_MS, alert_rules=AlertRules())
    try:
        client = await store.client()
        await client.raw.flushall()
        base = int((await client.raw.info("memory"))["used_memory"])
        rng = np.random.default_rng(seed)
        end = T0_MS + days * DAY_MS + CHUNK_MS // 2 + GRACE_MS
        total = 0
        for u in range(users):
            ts, bpm, cls = KINDS[kind](rng, days * 86_400 + (CHUNK_MS // 2 + GRACE_MS) // 1000)
            ts = ts + (end - 1000 - int(ts[-1]))  # last reading 1 s before `end`
            for lo in range(0, len(ts), WRITE_BATCH):
                part = slice(lo, lo + WRITE_BATCH)
                user = [f"cap-{u}"] * len(ts[part])
                await store.write_batch(user, ts[part], bpm[part], cls[part], end)
            total += len(ts)
        compactor = Compactor(client, retention_ms=RETENTION_MS, grace_ms=GRACE_MS)
        start = time.perf_counter()
        stats = await compactor.sweep(end)
        sweep_s = time.perf_counter() - start
        used = int((await client.raw.info("memory"))["used_memory"]) - base
        hot = chunks = 0
        for u in range(users):
            hot += int(await client.raw.zcard(READINGS_KEY.format(user=f"cap-{u}")))
            chunks += int(
                await client.raw.memory_usage(CHUNKS_KEY.format(user=f"cap-{u}"), samples=0) or 0
            )
        day = T0_MS + DAY_MS  # the second day: compacted whole
        reads = []
        for _ in range(5):
            start = time.perf_counter()
            got = await store.range("cap-0", day, day + DAY_MS - 1)
            reads.append((time.perf_counter() - start) * 1000)
        assert len(got) > 0
        return Figures(
            total,
            used / total,
            chunks / max(total - hot, 1),
            hot / users,
            stats.readings_moved / sweep_s,
            statistics.median(reads),
        )
    finally:
        await store.aclose()


async def run(url: str, users: int, days: int) -> list[tuple[str, Figures]]:
    """Every kind of data in turn; the first with `users` users, the others with one."""
    rows = []
    for i, kind in enumerate(KINDS):
        rows.append((kind, await measure(url, kind, users if i == 0 else 1, days, seed=i)))
    return rows


def main(argv: list[str] | None = None) -> None:
    """Prints the capacity inputs as a markdown table (argv: None = the command line)."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--users", type=int, default=3)
    p.add_argument("--days", type=int, default=7)
    args = p.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp,
        EmbeddedRedis(Path(tmp)) as server,
    ):
        rows = asyncio.run(run(server.url, args.users, args.days))
    print(f"\nCompacted storage, {args.days} days per user, chunks of {CHUNK_MS // 60_000} min, "
          f"embedded Redis 6.2\n")  # fmt: skip
    print("| data | readings | Redis B/reading (all) | B/compacted reading | hot readings/user "
          "| compaction readings/s | read one day, ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for kind, f in rows:
        print(f"| {kind} | {f.readings:,} | {f.bytes_per_reading:.2f} | "
              f"{f.bytes_per_compacted:.2f} | {f.hot_per_user:,.0f} | "
              f"{f.compaction_per_s:,.0f} | {f.read_day_ms:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
