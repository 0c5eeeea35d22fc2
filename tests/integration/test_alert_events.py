"""Alert events against real Redis (single and Cluster): store.lua's stream entries and
PUBLISH, the AlertHub's live fan-out, replay after a cursor, and catch-up after a lost
subscription or a full watcher queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from heartrate_serve.core.alert_feed import AlertRecord, Cursor, parse_cursor
from heartrate_serve.store import alert_hub
from heartrate_serve.store.store import ReadingStore

RawRedis = aioredis.Redis | AsyncRedisCluster
NOW_MS = 1_700_000_000_000
T0 = NOW_MS - 3_600_000
N, LOW, HIGH = 0, 1, 2
BPM = {N: 70, LOW: 45, HIGH: 160}


async def write(store: ReadingStore, user: str, ts: list[int], cls: list[int]) -> None:
    await store.write_batch(
        [user] * len(ts),
        np.array(ts, np.int64),
        np.array([BPM[c] + i % 3 for i, c in enumerate(cls)], np.int32),
        np.array(cls, np.uint8),
        NOW_MS,
    )


async def take(events: AsyncIterator[AlertRecord], n: int, timeout_s: float = 5.0) -> list:
    """The next n events (fails the test after timeout_s)."""

    async def collect() -> list[AlertRecord]:
        return [await anext(events) for _ in range(n)]

    return await asyncio.wait_for(collect(), timeout_s)


async def nothing_more(events: AsyncIterator[AlertRecord], wait_s: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(events), wait_s)


def summary(records: list[AlertRecord]) -> list[tuple[str, int, bool, int, int]]:
    return [(r.user_id, r.alert_type, r.active, r.at_ms, r.bpm) for r in records]


async def test_raise_and_clear_reach_a_live_watcher_in_order(store: ReadingStore) -> None:
    """One event per raise and clear, with the reading's ts and bpm, published to watchers."""
    watch = store.watch_alerts(["u1"], None)
    first = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.2)  # the watch is registered and subscribed
    await write(store, "u1", [T0, T0 + 1000, T0 + 2000, T0 + 3000, T0 + 4000], [N, HIGH, N, N, N])
    got = [await asyncio.wait_for(first, 5), *await take(watch, 1)]
    assert summary(got) == [("u1", HIGH, True, T0 + 1000, 161), ("u1", HIGH, False, T0 + 4000, 71)]
    assert got[0].stream_id < got[1].stream_id
    assert got[0].event_id == f"{got[0].stream_id[0]}-{got[0].stream_id[1]}:u1"
    await nothing_more(watch)
    await watch.aclose()


async def test_low_over_high_is_a_clear_then_a_raise(store: ReadingStore) -> None:
    watch = store.watch_alerts(["u2"], None)
    first = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.2)
    await write(store, "u2", [T0, T0 + 1000], [HIGH, LOW])
    got = [await asyncio.wait_for(first, 5), *await take(watch, 2)]
    assert summary(got) == [
        ("u2", HIGH, True, T0, 160),
        ("u2", HIGH, False, T0 + 1000, 46),
        ("u2", LOW, True, T0 + 1000, 46),
    ]
    await watch.aclose()


async def test_other_users_events_do_not_reach_a_watcher(store: ReadingStore) -> None:
    watch = store.watch_alerts(["mine"], None)
    first = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.2)
    await write(store, "other", [T0], [HIGH])
    await write(store, "mine", [T0], [LOW])
    (got,) = [await asyncio.wait_for(first, 5)]
    assert (got.user_id, got.alert_type) == ("mine", LOW)
    await nothing_more(watch)
    await watch.aclose()


async def test_replay_after_a_cursor_then_live(store: ReadingStore) -> None:
    """after_event_id: the cursor user's later events, the other users' from its ms on, then
    live; the cursor's own event is not sent again."""
    ts = [T0 + i * 1000 for i in range(8)]
    # Events of different users are ordered by stream id, whose unit is the server's
    # millisecond; within one millisecond there is no order across users (core/alert_feed.py).
    # The sleeps put each write in a later millisecond, so the order below is the defined one.
    await write(store, "a", ts[:4], [HIGH, N, N, N])  # raise a, clear a
    await asyncio.sleep(0.005)
    await write(store, "b", ts[:1], [LOW])  # raise b
    await asyncio.sleep(0.005)
    await write(store, "a", ts[4:5], [LOW])  # raise a (LOW)
    history = await take(store.watch_alerts(["a", "b"], Cursor((0, 0), "a")), 4)
    assert [(r.user_id, r.active) for r in history] == [
        ("a", True),
        ("a", False),
        ("b", True),
        ("a", True),
    ]
    cursor = parse_cursor(history[1].event_id)  # resume after a's clear
    watch = store.watch_alerts(["a", "b"], cursor)
    replayed = await take(watch, 2)
    assert [r.event_id for r in replayed] == [history[2].event_id, history[3].event_id]
    await write(store, "b", ts[1:4], [N, N, N])  # clear b: live
    (live,) = await take(watch, 1)
    assert (live.user_id, live.alert_type, live.active) == ("b", LOW, False)
    await nothing_more(watch)
    await watch.aclose()


async def test_a_watcher_misses_nothing_when_the_subscription_is_cut(
    store: ReadingStore, raw_redis: RawRedis, redis_mode: str
) -> None:
    """CLIENT KILL of the hub's pubsub connection while events happen: it subscribes again
    and the watcher catches up from the streams (in order, none twice)."""
    watch = store.watch_alerts(["c"], None)
    first = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.2)
    await write(store, "c", [T0], [HIGH])
    got = [await asyncio.wait_for(first, 5)]
    for i in range(1, 4):
        kill = {"target_nodes": AsyncRedisCluster.ALL_NODES} if redis_mode == "cluster" else {}
        await raw_redis.client_kill_filter(_type="pubsub", **kill)
        # raise LOW over HIGH / HIGH over LOW while the hub is (likely) not subscribed
        await write(store, "c", [T0 + i * 1000], [LOW if i % 2 else HIGH])
    got += await take(watch, 6, timeout_s=15)
    assert [(r.alert_type, r.active) for r in got] == [
        (HIGH, True),
        (HIGH, False),
        (LOW, True),
        (LOW, False),
        (HIGH, True),
        (HIGH, False),
        (LOW, True),
    ]
    assert [r.stream_id for r in got] == sorted({r.stream_id for r in got})
    await nothing_more(watch)
    await watch.aclose()


async def test_a_slow_watcher_catches_up_from_redis(
    store: ReadingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watcher whose queue overflows is not cut off: it reads what it missed, in order."""
    monkeypatch.setattr(alert_hub, "WATCH_QUEUE_EVENTS", 3)
    watch = store.watch_alerts(["d"], None)
    first = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.2)
    cls = [HIGH if i % 2 == 0 else LOW for i in range(20)]  # 1 raise + 19 (clear, raise)
    await write(store, "d", [T0 + i * 1000 for i in range(20)], cls)
    got = [await asyncio.wait_for(first, 5), *await take(watch, 38, timeout_s=10)]
    assert [r.at_ms for r in got] == [T0] + [T0 + i * 1000 for i in range(1, 20) for _ in (0, 1)]
    assert [r.stream_id for r in got] == sorted({r.stream_id for r in got})
    await nothing_more(watch)
    await watch.aclose()


async def test_events_are_kept_in_a_trimmed_stream_that_expires(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    await write(store, "e", [T0, T0 + 1000, T0 + 2000, T0 + 3000], [LOW, N, N, N])
    key = "hr:{e}:events"
    assert await raw_redis.xlen(key) == 2
    ttl_ms = await raw_redis.pttl(key)
    assert ttl_ms > 47 * 3600 * 1000  # max(retention, 48 h): retention here is 30 days
    entries = await raw_redis.xrange(key)
    assert entries[0][1] == {b"t": b"1", b"a": b"1", b"at": str(T0).encode(), b"bpm": b"45"}


async def test_readings_older_than_the_events_keep_time_make_no_event(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    """A device's old buffer moves the alert state but is not news: no stream entry, no message."""
    old = NOW_MS - 3 * 86_400_000
    await store.write_batch(
        ["f"] * 2,
        np.array([old, old + 1000], np.int64),
        np.array([170, 171], np.int32),
        np.array([HIGH, HIGH], np.uint8),
        NOW_MS,
    )
    assert (await store.alert_state("f")).active == HIGH
    assert await raw_redis.exists("hr:{f}:events") == 0


async def test_a_watcher_on_another_replica_gets_the_event(
    store: ReadingStore, redis_url: str
) -> None:
    """Two stores on one Redis stand for two ingress replicas: the event of a write through one
    reaches a watcher on the other (each holds its own subscription)."""
    from heartrate_serve.core.alerts import AlertRules

    other = ReadingStore(redis_url, retention_ms=30 * 86_400_000, alert_rules=AlertRules())
    try:
        watch = other.watch_alerts(["g"], None)
        first = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0.2)
        await write(store, "g", [T0], [LOW])
        got = await asyncio.wait_for(first, 5)
        assert (got.user_id, got.alert_type, got.active) == ("g", LOW, True)
        await watch.aclose()
    finally:
        await other.aclose()
