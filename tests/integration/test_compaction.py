"""Compaction on real Redis: exact reads, idempotency, late readings, retention, faults.

Tests using `store`/`raw_redis`/`redis_url` run on a single Redis and on a 3-master Redis Cluster
(conftest.py); @pytest.mark.single_redis tests kill a redis-server of their own. A sweep over
users on every cluster node: test_store_cluster.py."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from heartrate_serve.core.alerts import AlertRules
from heartrate_serve.core.errors import CorruptData
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.store.compaction import Compactor
from heartrate_serve.store.keys import (
    ALERT_KEY,
    CHUNK_MS,
    CHUNKS_KEY,
    PIN_KEY,
    READINGS_KEY,
    chunk_start,
)
from heartrate_serve.store.store import ReadingStore

RawRedis = aioredis.Redis | AsyncRedisCluster  # conftest.raw_redis: single or cluster
DAY_MS = 86_400_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % CHUNK_MS  # a chunk boundary
RETENTION_MS = 30 * DAY_MS
GRACE_MS = 120_000


def series(
    n: int, start: int = T0, seed: int = 0, step_ms: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n readings about step_ms apart with ±150 ms jitter, a wandering bpm and its class."""
    rng = np.random.default_rng(seed)
    ts = start + np.arange(n, dtype=np.int64) * step_ms + rng.integers(-150, 151, n)
    ts[0] = max(int(ts[0]), start)
    bpm = np.clip(70 + np.cumsum(rng.integers(-3, 4, n)), 35, 190).astype(np.int32)
    cls = np.where(bpm < 50, 1, np.where(bpm > 150, 2, 0)).astype(np.uint8)
    return ts, bpm, cls


async def put(store: ReadingStore, user: str, ts, bpm, cls, now_ms: int):  # type: ignore[no-untyped-def]
    return await store.write_batch([user] * len(ts), ts, bpm, cls, now_ms)


async def compact(store: ReadingStore, now_ms: int) -> Compactor:
    c = Compactor(await store.client(), retention_ms=RETENTION_MS, grace_ms=GRACE_MS)
    await c.sweep(now_ms)
    return c


def assert_same(got, ts, bpm, cls) -> None:  # type: ignore[no-untyped-def]
    order = np.argsort(ts)
    assert got.ts_ms.tolist() == np.asarray(ts)[order].tolist()
    assert got.bpm.tolist() == np.asarray(bpm)[order].tolist()
    assert got.classification.tolist() == np.asarray(cls)[order].tolist()


async def test_a_day_is_compacted_and_read_back_exactly(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    """24 h of 1 Hz readings: the closed chunks become blobs; reads are exact, hot or not."""
    ts, bpm, cls = series(86_400)
    now = int(ts[-1]) + 1000
    await put(store, "u1", ts, bpm, cls, now)
    state = await store.alert_state("u1")
    c = Compactor(await store.client(), retention_ms=RETENTION_MS, grace_ms=GRACE_MS)
    stats = await c.sweep(now)
    closed = DAY_MS // CHUNK_MS - 1
    assert stats.chunks_written == closed and stats.conflicts == 0
    hot = await raw_redis.zrange(READINGS_KEY.format(user="u1"), 0, 0, withscores=True)
    assert int(hot[0][1]) >= c.closed_before(now)  # only the open chunk is left hot
    assert await raw_redis.zcard(CHUNKS_KEY.format(user="u1")) == closed
    assert_same(await store.range("u1", 0, now), ts, bpm, cls)
    recent = await store.recent("u1", 5000)
    assert recent.ts_ms.tolist() == ts[::-1][:5000].tolist()
    assert recent.bpm.tolist() == bpm[::-1][:5000].tolist()
    # A window inside compacted chunks, ends inclusive, and a limit.
    lo, hi = int(ts[1234]), int(ts[40_000])
    assert_same(
        await store.range("u1", lo, hi), ts[1234:40_001], bpm[1234:40_001], cls[1234:40_001]
    )
    assert (await store.range("u1", lo, hi, limit=7)).ts_ms.tolist() == ts[1234:1241].tolist()
    assert await store.alert_state("u1") == state
    assert (await c.sweep(now)).chunks_written == 0  # idempotent: nothing left to do


async def test_old_readings_stay_duplicates_after_compaction(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    """A resubmitted old batch is all duplicates (found in the blobs) and changes nothing."""
    ts, bpm, cls = series(7200)
    now = int(ts[-1]) + 2 * CHUNK_MS
    await put(store, "u1", ts, bpm, cls, now)
    await compact(store, now)
    assert await raw_redis.exists(READINGS_KEY.format(user="u1")) == 0
    state = await store.alert_state("u1")
    again = await put(store, "u1", ts[::-1], bpm[::-1] + 1, cls[::-1], now)
    assert again.duplicate.all() and again.events["u1"] == (0, 0)
    assert await raw_redis.exists(READINGS_KEY.format(user="u1")) == 0
    assert await store.alert_state("u1") == state
    assert_same(await store.range("u1", 0, now), ts, bpm, cls)
    mixed_ts = np.array([ts[10], ts[10] + 1, ts[5000], ts[5000] - 1], np.int64)
    mixed = await put(store, "u1", mixed_ts, np.full(4, 80, np.int32), np.zeros(4, np.uint8), now)
    assert mixed.duplicate.tolist() == [True, False, True, False]


async def test_late_readings_into_a_compacted_chunk_are_stored_and_merged(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    """A late reading lands in the hot part, is readable at once, is merged on the next sweep."""
    ts, bpm, cls = series(CHUNK_MS // 1000)
    now = int(ts[-1]) + CHUNK_MS
    await put(store, "u1", ts, bpm, cls, now)
    await compact(store, now)
    late_ts = np.array([ts[100] + 1, ts[1000] + 3], np.int64)
    late = await put(store, "u1", late_ts, np.array([99, 98], np.int32), np.zeros(2, np.uint8), now)
    assert not late.duplicate.any()
    all_ts = np.r_[ts, late_ts]
    all_bpm, all_cls = np.r_[bpm, [99, 98]], np.r_[cls, [0, 0]]
    assert_same(await store.range("u1", 0, now), all_ts, all_bpm, all_cls)
    assert await raw_redis.zcard(READINGS_KEY.format(user="u1")) == 2
    await compact(store, now)
    assert await raw_redis.exists(READINGS_KEY.format(user="u1")) == 0
    assert await raw_redis.zcard(CHUNKS_KEY.format(user="u1")) == 1
    assert_same(await store.range("u1", 0, now), all_ts, all_bpm, all_cls)
    assert (await put(store, "u1", late_ts, bpm[:2], cls[:2], now)).duplicate.all()


async def test_backfilled_week_is_compacted_in_one_sweep(store: ReadingStore) -> None:
    """History sent at once (a device's buffer) is compacted by the next sweep, every chunk."""
    ts, bpm, cls = series(7 * 86_400 // 5, step_ms=5000)
    now = int(ts[-1]) + DAY_MS
    for lo in range(0, len(ts), 20_000):
        hi = lo + 20_000
        await put(store, "u1", ts[lo:hi], bpm[lo:hi], cls[lo:hi], now)
    await compact(store, now)
    client = await store.client()
    assert await client.raw.exists(READINGS_KEY.format(user="u1")) == 0
    assert_same(await store.range("u1", 0, now), ts, bpm, cls)


async def test_retention_drops_whole_chunks_and_filters_the_edge(store: ReadingStore) -> None:
    """A write trims chunks past retention; reads leave out the expired part of the edge chunk."""
    ts, bpm, cls = series(3 * CHUNK_MS // 1000)
    now = int(ts[-1]) + CHUNK_MS
    await put(store, "u1", ts, bpm, cls, now)
    await compact(store, now)
    later = T0 + RETENTION_MS + CHUNK_MS + CHUNK_MS // 2  # cut-off in the middle of chunk 2
    await put(store, "u1", np.array([later], np.int64), np.array([70], np.int32),
              np.zeros(1, np.uint8), later)  # fmt: skip
    client = await store.client()
    starts = [int(s) for _, s in await client.raw.zrange(CHUNKS_KEY.format(user="u1"), 0, -1,
                                                          withscores=True)]  # fmt: skip
    assert starts == [T0 + CHUNK_MS, T0 + 2 * CHUNK_MS]  # chunk 0 ended before the cut-off
    got = await store.range("u1", 0, later)
    keep = ts >= later - RETENTION_MS
    assert got.ts_ms.tolist() == [*ts[keep].tolist(), later]


async def test_compaction_commit_refuses_a_changed_chunk(store: ReadingStore) -> None:
    """compact.lua writes nothing when the hot members or the blob changed since they were read."""
    ts, bpm, cls = series(100)
    await put(store, "u1", ts, bpm, cls, int(ts[-1]))
    c = Compactor(await store.client(), retention_ms=RETENTION_MS, grace_ms=GRACE_MS)
    from heartrate_serve.store import compaction

    client = await store.client()
    sha = await client.load_script(compaction.COMPACT_SCRIPT)
    keys = [READINGS_KEY.format(user="u1"), CHUNKS_KEY.format(user="u1"), PIN_KEY.format(user="u1")]
    keys.append(ALERT_KEY.format(user="u1"))
    (reply,) = await client.evalsha_many(
        sha, compaction.COMPACT_SCRIPT, [(keys, [T0, CHUNK_MS, "0" * 40, "", b"x", RETENTION_MS])]
    )
    assert reply == 0
    assert await client.raw.zcard(keys[0]) == 100 and await client.raw.exists(keys[1]) == 0
    await client.raw.set(keys[2], 1, px=60_000)  # a write searching u1's chunks: hands off
    assert await c.compact_user("u1", int(ts[-1]) + 2 * CHUNK_MS) == 0
    await client.raw.delete(keys[2])
    assert await c.compact_user("u1", int(ts[-1]) + 2 * CHUNK_MS) == 1


async def test_corrupt_blob_is_reported_by_user_and_chunk(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    """A damaged blob fails reads of that chunk with CorruptData naming user and chunk; writes,
    other chunks, other users and the compactor go on."""
    ts, bpm, cls = series(7200)
    now = int(ts[-1]) + CHUNK_MS
    await put(store, "u1", ts, bpm, cls, now)
    await put(store, "u2", ts, bpm, cls, now)
    await compact(store, now)
    key = CHUNKS_KEY.format(user="u1")
    await raw_redis.zremrangebyscore(key, T0, T0)
    await raw_redis.zadd(key, {b"\x01garbage": T0})
    with pytest.raises(CorruptData, match=rf"'u1'.*{T0}"):
        await store.range("u1", 0, now)
    late = await put(store, "u1", np.array([ts[5] + 1], np.int64), bpm[:1], cls[:1], now)
    assert not late.duplicate.any()  # stored (hot) although its chunk cannot be searched
    second = await store.range("u1", T0 + CHUNK_MS, now)
    assert_same(second, ts[ts >= T0 + CHUNK_MS], bpm[ts >= T0 + CHUNK_MS], cls[ts >= T0 + CHUNK_MS])
    assert_same(await store.range("u2", 0, now), ts, bpm, cls)
    stats = await (await compact(store, now)).sweep(now)
    assert stats.corrupt == 1
    assert await raw_redis.zcard(READINGS_KEY.format(user="u1")) == 1  # kept, not lost


async def test_writes_during_compaction_lose_and_duplicate_nothing(store: ReadingStore) -> None:
    """Late and new readings written while sweeps run: every reading exactly once at the end."""
    users = [f"w{i}" for i in range(6)]
    ts, bpm, cls = series(4 * 3600)
    now = int(ts[-1]) + CHUNK_MS
    for u in users:
        await put(store, u, ts[::2], bpm[::2], cls[::2], now)
    c = Compactor(await store.client(), retention_ms=RETENTION_MS, grace_ms=GRACE_MS)
    rng = random.Random(1)

    async def writer() -> None:
        odd = list(range(1, len(ts), 2))
        rng.shuffle(odd)
        for lo in range(0, len(odd), 300):
            part = np.array(sorted(odd[lo : lo + 300]))
            for u in users:
                await put(store, u, ts[part], bpm[part], cls[part], now)

    async def sweeper() -> None:
        for _ in range(15):
            await c.sweep(now)
            await asyncio.sleep(0.005)  # sweeps back to back (production: every 30 s)

    await asyncio.gather(writer(), sweeper())
    await c.sweep(now)
    for u in users:
        assert_same(await store.range(u, 0, now), ts, bpm, cls)


async def test_cancelled_compaction_leaves_exact_data(store: ReadingStore) -> None:
    """A compactor stopped at any point (as by kill -9 of its process) leaves every reading once."""
    ts, bpm, cls = series(6 * 3600)
    now = int(ts[-1]) + CHUNK_MS
    users = [f"k{i}" for i in range(8)]
    for u in users:
        await put(store, u, ts, bpm, cls, now)
    c = Compactor(await store.client(), retention_ms=RETENTION_MS, grace_ms=GRACE_MS)
    for delay in (0.0, 0.002, 0.005, 0.01, 0.02, 0.05):
        task = asyncio.create_task(c.sweep(now))
        await asyncio.sleep(delay)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for u in users:
            assert_same(await store.range(u, 0, now), ts, bpm, cls)
    await c.sweep(now)
    for u in users:
        assert_same(await store.range(u, 0, now), ts, bpm, cls)


@pytest.mark.single_redis
@pytest.mark.parametrize("delay_s", [0.05, 0.2])
async def test_redis_killed_during_compaction_keeps_exact_data(
    tmp_path: Path, delay_s: float
) -> None:
    """kill -9 of Redis mid-sweep, restart on the same AOF: every reading exactly once."""
    server = EmbeddedRedis(tmp_path, fsync="always")
    url = server.start()
    store = ReadingStore(url, timeout_s=0.5, retention_ms=RETENTION_MS, alert_rules=AlertRules())
    ts, bpm, cls = series(12 * 3600)
    now = int(ts[-1]) + CHUNK_MS
    users = [f"r{i}" for i in range(10)]
    try:
        for u in users:
            await put(store, u, ts, bpm, cls, now)
        c = Compactor(await store.client(), retention_ms=RETENTION_MS, grace_ms=GRACE_MS)
        task = asyncio.create_task(c.sweep(now))
        await asyncio.sleep(delay_s)
        server.kill()
        results = await asyncio.gather(task, return_exceptions=True)
        assert not isinstance(results[0], AssertionError)
        server.start()
        for u in users:
            assert_same(await store.range(u, 0, now), ts, bpm, cls)
        await c.sweep(now)
        for u in users:
            assert_same(await store.range(u, 0, now), ts, bpm, cls)
    finally:
        await store.aclose()
        server.stop()


async def test_store_compacts_in_the_background(redis_url: str, store: ReadingStore) -> None:
    """compact_interval_s > 0: the store's own loop (wall clock) compacts closed chunks."""
    del store  # only for its FLUSHALL
    wall = int(time.time() * 1000)
    ts, bpm, cls = series(2 * CHUNK_MS // 1000, start=chunk_start(wall) - 3 * CHUNK_MS)
    bg = ReadingStore(redis_url, retention_ms=RETENTION_MS, alert_rules=AlertRules(),
                      compact_interval_s=0.2, compact_grace_ms=0)  # fmt: skip
    try:
        await put(bg, "bg", ts, bpm, cls, wall)
        client = await bg.client()
        deadline = time.monotonic() + 20
        while await client.raw.exists(READINGS_KEY.format(user="bg")):
            assert time.monotonic() < deadline, "the background loop did not compact"
            await asyncio.sleep(0.1)
        assert await client.raw.zcard(CHUNKS_KEY.format(user="bg")) == 2
        assert_same(await bg.range("bg", 0, wall), ts, bpm, cls)
    finally:
        await bg.aclose()


async def test_hot_part_shrinks_after_a_backfill_is_compacted(
    store: ReadingStore, raw_redis: aioredis.Redis
) -> None:
    """A two-day upload compacted down to its open chunk does not keep its largest hash table."""
    ts, bpm, cls = series(2 * 86_400)
    now = int(ts[-1]) + 1000  # the last chunk is still open: its readings stay hot
    await put(store, "u1", ts, bpm, cls, now)
    key = READINGS_KEY.format(user="u1")
    big = await raw_redis.memory_usage(key, samples=0)
    await compact(store, now)
    left = await raw_redis.zcard(key)
    assert 0 < left <= CHUNK_MS // 1000 + 200
    small = await raw_redis.memory_usage(key, samples=0)
    assert small < 200 * left  # ~110 B/reading; the 2-day table alone was ~1.3 MB (8 B/slot)
    assert big > 50 * small
    assert_same(await store.range("u1", 0, now), ts, bpm, cls)


async def test_only_a_user_that_moved_much_has_its_hot_part_rebuilt(
    store: ReadingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shrink decision counts each user's own moved readings: users compacted in the same
    sweep as a big backfill are not rebuilt for it (each rebuild is a script of O(readings left),
    up to ~300 ms that Redis serves no one else)."""
    rebuilt: list[tuple[str, int]] = []
    shrink = Compactor._shrink

    async def spy(self: Compactor, hot_key: str, max_left: int) -> None:
        rebuilt.append((hot_key, max_left))
        await shrink(self, hot_key, max_left)

    monkeypatch.setattr(Compactor, "_shrink", spy)
    ts, bpm, cls = series(86_400)  # one day at 1 Hz: 47 closed chunks and the open one
    now = int(ts[-1]) + 1000
    await put(store, "big", ts, bpm, cls, now)
    small = [f"small{i}" for i in range(16)]
    open_start = chunk_start(now - GRACE_MS)
    for i, user in enumerate(small):  # 20 readings in a closed chunk, 1 000 in the open one
        s_ts, s_bpm, s_cls = series(1020, start=open_start - 20_000, seed=i)
        await put(store, user, s_ts, s_bpm, s_cls, now)
    await compact(store, now)
    moved = int(np.sum(ts < open_start))
    assert rebuilt == [(READINGS_KEY.format(user="big"), moved // 4)]
