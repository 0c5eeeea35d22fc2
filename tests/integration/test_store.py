"""ReadingStore against real Redis: idempotency, ordering, alerts, retention, outages.

Tests using `store`/`raw_redis`/`redis_url` run on a single Redis and on a 3-master Redis Cluster
(conftest.py); @pytest.mark.single_redis tests kill or stop one redis-server of their own.
Cluster-only behaviour (slots spread over nodes, a dead master): test_store_cluster.py."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from heartrate_serve.core.alerts import AlertRules, AlertState
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis, free_port
from heartrate_serve.settings import Settings
from heartrate_serve.store.store import (
    ALERT_KEY,
    READINGS_KEY,
    ReadingStore,
    StoreUnavailable,
    WriteResult,
)

RawRedis = aioredis.Redis | AsyncRedisCluster  # conftest.raw_redis: single or cluster
NOW_MS = 1_700_000_000_000
T0 = NOW_MS - 3_600_000  # readings start an hour before "now"
N, LOW, HIGH = 0, 1, 2
RETENTION_MS = 30 * 86_400_000


async def write(
    store: ReadingStore,
    user: str | list[str],
    ts: list[int],
    cls: list[int],
    bpm: list[int] | None = None,
    now_ms: int = NOW_MS,
) -> WriteResult:
    """write_batch with plain lists; one user for all readings when `user` is a string."""
    users = [user] * len(ts) if isinstance(user, str) else user
    bpms = bpm if bpm is not None else [{N: 70, LOW: 45, HIGH: 160}[c] for c in cls]
    return await store.write_batch(
        users,
        np.array(ts, np.int64),
        np.array(bpms, np.int32),
        np.array(cls, np.uint8),
        now_ms,
    )


def _everywhere(raw: RawRedis) -> dict[str, object]:
    """Keyword arguments that send a keyless command to every primary of a cluster (redis-py
    sends KEYS, INFO and CONFIG RESETSTAT to one node by default); none for a single Redis."""
    if isinstance(raw, AsyncRedisCluster):
        return {"target_nodes": AsyncRedisCluster.PRIMARIES}
    return {}


async def all_keys(raw: RawRedis) -> list[str]:
    """Every key on the server or on every primary."""
    return sorted(k.decode() for k in await raw.keys("*", **_everywhere(raw)))


async def commands_run(raw: RawRedis) -> set[str]:
    """The cmdstat_* names of INFO commandstats, over every primary of a cluster."""
    stats = await raw.info("commandstats", **_everywhere(raw))
    if isinstance(raw, AsyncRedisCluster):  # {node name: that node's INFO}
        return {name for node in stats.values() for name in node}
    return set(stats)


def step(state: AlertState, ts: list[int], cls: list[int], rules: AlertRules) -> AlertState:
    """core's pure machine (imported here: it lives next to AlertState in core/alerts.py)."""
    from heartrate_serve.core.alerts import step_alerts

    return step_alerts(state, ts, cls, rules)[0]


async def test_write_then_read_recent_and_range(store: ReadingStore) -> None:
    """recent() is newest first and limited; range() is ascending and inclusive at both ends."""
    ts = [T0 + i * 1000 for i in range(10)]
    res = await write(store, "u1", ts[::-1], [N] * 10, bpm=list(range(60, 70))[::-1])
    assert not res.duplicate.any()
    recent = await store.recent("u1", 3)
    assert recent.ts_ms.tolist() == ts[9:6:-1]
    assert recent.bpm.tolist() == [69, 68, 67]
    assert recent.ts_ms.dtype == np.int64 and recent.bpm.dtype == np.int32
    assert recent.classification.dtype == np.uint8
    got = await store.range("u1", ts[2], ts[5])
    assert got.ts_ms.tolist() == ts[2:6]
    assert got.bpm.tolist() == [62, 63, 64, 65]
    assert (await store.range("u1", ts[2], ts[9], limit=2)).ts_ms.tolist() == ts[2:4]
    assert len((await store.recent("nobody", 5)).ts_ms) == 0
    assert len((await store.recent("u1", 0)).ts_ms) == 0


async def test_stored_reading_keeps_its_classification(store: ReadingStore) -> None:
    """Each stored reading carries the classification it was written with."""
    await write(store, "u1", [T0, T0 + 1, T0 + 2], [LOW, N, HIGH], bpm=[45, 80, 170])
    got = await store.range("u1", T0, T0 + 2)
    assert got.classification.tolist() == [LOW, N, HIGH]
    assert got.bpm.tolist() == [45, 80, 170]


async def test_resubmitted_batch_is_duplicate_and_changes_nothing(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    """Resubmitting a batch reports every reading duplicate, stores nothing twice, keeps state."""
    ts = [T0 + i * 1000 for i in range(6)]
    cls = [HIGH, HIGH, N, N, LOW, HIGH]
    first = await write(store, "u1", ts, cls)
    state = await store.alert_state("u1")
    again = await write(store, "u1", ts[::-1], [N] * 6, bpm=[99] * 6)
    assert not first.duplicate.any() and again.duplicate.all()
    assert await raw_redis.zcard(READINGS_KEY.format(user="u1")) == 6
    assert await store.alert_state("u1") == state
    assert again.alerts["u1"] == (state.active, state.since_ms)
    assert again.events["u1"] == (0, 0)
    assert (await store.range("u1", T0, ts[-1])).bpm.tolist() == [160, 160, 70, 70, 45, 160]


async def test_same_timestamp_twice_in_one_batch_first_wins(store: ReadingStore) -> None:
    """Within one batch the first reading (caller order) at a timestamp is stored, the rest dup."""
    res = await write(store, "u1", [T0, T0 + 5, T0], [N, N, HIGH], bpm=[70, 71, 150])
    assert res.duplicate.tolist() == [False, False, True]
    assert (await store.range("u1", T0, T0)).bpm.tolist() == [70]
    assert (await store.alert_state("u1")).active == 0


async def test_duplicates_found_when_window_holds_more_than_the_batch(
    store: ReadingStore,
) -> None:
    """A small batch spanning many stored readings still finds its duplicates (per-reading path)."""
    await write(store, "u1", [T0 + i * 1000 for i in range(20)], [N] * 20)
    res = await write(store, "u1", [T0 + 500, T0 + 7000, T0 + 19_000, T0 + 19_500], [N] * 4)
    assert res.duplicate.tolist() == [False, True, True, False]
    assert len((await store.range("u1", 0, NOW_MS)).ts_ms) == 22


async def test_late_readings_are_stored_without_changing_alert_state(store: ReadingStore) -> None:
    """Readings at or before last_ts_ms are stored, reported not duplicate, and change no state."""
    await write(store, "u1", [T0 + 10_000, T0 + 11_000], [HIGH, N])
    before = await store.alert_state("u1")
    assert before.active == HIGH and before.normal_count == 1
    res = await write(store, "u1", [T0, T0 + 1000, T0 + 2000, T0 + 10_500], [N, N, N, LOW])
    assert not res.duplicate.any()
    assert await store.alert_state("u1") == before
    assert res.events["u1"] == (0, 0)
    assert len((await store.range("u1", 0, NOW_MS)).ts_ms) == 6


async def test_hysteresis_sustain_and_clear(store: ReadingStore) -> None:
    """Raise after sustain_ms of HIGH, stay through < clear_readings NORMALs, clear after them."""
    store.set_alert_rules(AlertRules(sustain_ms=2000, clear_readings=2))
    r = await write(store, "u1", [T0, T0 + 1000], [HIGH, HIGH])
    assert r.alerts["u1"] == (0, 0)
    assert await store.alert_state("u1") == AlertState(0, 0, HIGH, T0, 0, T0 + 1000)
    r = await write(store, "u1", [T0 + 2000, T0 + 3000], [HIGH, N])
    assert r.alerts["u1"] == (HIGH, T0 + 2000) and r.events["u1"] == (1, 0)
    assert await store.alert_state("u1") == AlertState(HIGH, T0 + 2000, 0, 0, 1, T0 + 3000)
    r = await write(store, "u1", [T0 + 4000], [N])
    assert r.alerts["u1"] == (0, 0) and r.events["u1"] == (0, 1)
    assert await store.alert_state("u1") == AlertState(0, 0, 0, 0, 0, T0 + 4000)


async def test_switching_high_to_low_counts_a_clear_and_a_raise(store: ReadingStore) -> None:
    """LOW raised over an active HIGH reports one raise and one clear in the same batch."""
    await write(store, "u1", [T0], [HIGH])
    r = await write(store, "u1", [T0 + 1000], [LOW])
    assert r.alerts["u1"] == (LOW, T0 + 1000) and r.events["u1"] == (1, 1)


async def test_alert_state_of_unknown_user_is_all_zero(store: ReadingStore) -> None:
    """A user with no readings has the default AlertState."""
    assert await store.alert_state("nobody") == AlertState()


async def test_retention_trims_old_readings_on_later_write(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    """Readings older than now - retention vanish at the next write (ZREMRANGEBYSCORE, no scan)."""
    day = 86_400_000
    old_clock = T0 - 10 * day
    await write(
        store, "u1", [T0 - 40 * day, T0 - 31 * day, T0 - 2 * day], [N] * 3, now_ms=old_clock
    )
    assert len((await store.range("u1", 0, NOW_MS)).ts_ms) == 3  # written with an old clock
    await raw_redis.config_resetstat(**_everywhere(raw_redis))
    later = NOW_MS + RETENTION_MS - 5 * day  # T0 - 31 d and T0 - 40 d are now out of retention
    await store.write_batch(
        ["u1"], np.array([later], np.int64), np.array([70], np.int32), np.zeros(1, np.uint8), later
    )
    got = await store.range("u1", 0, later)
    assert got.ts_ms.tolist() == [T0 - 2 * day, later]
    stats = await commands_run(raw_redis)
    assert "cmdstat_zremrangebyscore" in stats
    assert not {"cmdstat_scan", "cmdstat_keys", "cmdstat_zscan"} & stats


async def test_retention_cutoff_is_exclusive(store: ReadingStore) -> None:
    """A reading exactly at now - retention is kept; one ms older is removed."""
    edge = NOW_MS - RETENTION_MS
    await write(store, "u1", [edge - 1, edge, NOW_MS], [N, N, N])
    assert (await store.range("u1", 0, NOW_MS)).ts_ms.tolist() == [edge, NOW_MS]


async def test_multi_user_batch_maps_results_to_caller_order(store: ReadingStore) -> None:
    """Duplicate flags come back in the caller's order for an interleaved multi-user batch."""
    await write(store, ["a", "b"], [T0 + 1, T0 + 2], [N, N])
    users = ["b", "a", "c", "a", "b", "c", "a"]
    ts = [T0 + 2, T0 + 9, T0 + 3, T0 + 1, T0 + 7, T0 + 3, T0 + 4]
    cls = [N, HIGH, LOW, N, N, N, N]
    res = await write(store, users, ts, cls)
    assert res.duplicate.tolist() == [True, False, False, True, False, True, False]
    assert res.alerts == {"a": (HIGH, T0 + 9), "b": (0, 0), "c": (LOW, T0 + 3)}
    assert (await store.range("c", 0, NOW_MS)).classification.tolist() == [LOW]


async def test_concurrent_writers_interleaved_on_one_user(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    """20 tasks x 50 interleaved readings of one user: each stored once, state as step_alerts."""
    rules = AlertRules()
    await write(store, "u1", [T0], [HIGH])  # active HIGH since T0 before the writers start
    ts = [T0 + (i + 1) * 1000 for i in range(1000)]
    # Mostly HIGH, two NORMALs (< clear_readings): whatever the arrival order, the final state
    # is HIGH since T0 with the newest reading HIGH, as for the readings applied in ts order.
    cls = [N if i in (300, 700) else HIGH for i in range(1000)]

    async def writer(k: int) -> list[bool]:
        mine = list(range(k, 1000, 20))
        flags: list[bool] = []
        for j in range(0, 50, 5):
            part = mine[j : j + 5]
            res = await write(store, "u1", [ts[i] for i in part], [cls[i] for i in part])
            flags += res.duplicate.tolist()
        return flags

    results = await asyncio.gather(*(writer(k) for k in range(20)))
    assert not any(f for flags in results for f in flags)
    assert await raw_redis.zcard(READINGS_KEY.format(user="u1")) == 1001
    expected = step(AlertState(), [T0, *ts], [HIGH, *cls], rules)
    assert expected == AlertState(HIGH, T0, 0, 0, 0, ts[-1])
    assert await store.alert_state("u1") == expected


async def test_concurrent_identical_batches_are_applied_exactly_once(store: ReadingStore) -> None:
    """20 tasks send the same 50 readings at once: one batch stores all, 19 are all duplicates."""
    rng = random.Random(7)
    ts = [T0 + i * 1000 for i in range(50)]
    cls = [rng.choice([N, N, LOW, HIGH]) for _ in ts]
    results = await asyncio.gather(*(write(store, "u1", ts, cls) for _ in range(20)))
    flags = [r.duplicate.tolist() for r in results]
    assert flags.count([False] * 50) == 1 and flags.count([True] * 50) == 19
    rules = AlertRules()
    assert await store.alert_state("u1") == step(AlertState(), ts, cls, rules)


@pytest.mark.parametrize("seed", range(12))
async def test_lua_machine_agrees_with_step_alerts(store: ReadingStore, seed: int) -> None:
    """Random multi-user batches (dups, late, runs): Lua state and events equal step_alerts'."""
    from heartrate_serve.core.alerts import step_alerts

    rng = random.Random(seed)
    rules = AlertRules(sustain_ms=rng.choice([0, 0, 1000, 3000]), clear_readings=rng.randint(1, 4))
    store.set_alert_rules(rules)
    users = ["a", "b", "c"]
    state = {u: AlertState() for u in users}
    seen: set[tuple[str, int]] = set()
    for _ in range(25):
        n = rng.randint(1, 30)
        us = [rng.choice(users) for _ in range(n)]
        # ~200 timestamps over the whole run: duplicates and late readings happen often.
        tss = [T0 + rng.randint(0, 200) * 500 for _ in range(n)]
        cls = [rng.choice([N, N, N, LOW, HIGH, HIGH]) for _ in range(n)]
        res = await write(store, us, tss, cls)
        expected_dup = []
        for u, t in zip(us, tss, strict=True):
            expected_dup.append((u, t) in seen)
            seen.add((u, t))
        assert res.duplicate.tolist() == expected_dup
        for u in set(us):
            mine = [i for i in range(n) if us[i] == u]
            new, events = step_alerts(
                state[u], [tss[i] for i in mine], [cls[i] for i in mine], rules
            )
            state[u] = new
            assert res.alerts[u] == (new.active, new.since_ms)
            raised = sum(e.kind == "raised" for e in events)
            assert res.events[u] == (raised, len(events) - raised)
    for u in users:
        assert await store.alert_state(u) == state[u]


async def test_batch_of_100k_readings_round_trips(store: ReadingStore) -> None:
    """100 000 shuffled readings of 100 users (20 EVALSHA chunks) are stored and read back."""
    rng = np.random.default_rng(1)
    users_n, per_user = 100, 1000
    user_idx = np.repeat(np.arange(users_n), per_user)
    ts = T0 + np.tile(np.arange(per_user, dtype=np.int64) * 1000, users_n)
    bpm = rng.integers(40, 181, len(ts)).astype(np.int32)
    cls = np.where(bpm < 50, LOW, np.where(bpm > 150, HIGH, N)).astype(np.uint8)
    perm = rng.permutation(len(ts))
    users = [f"user-{i}" for i in user_idx[perm].tolist()]
    res = await store.write_batch(users, ts[perm], bpm[perm], cls[perm], NOW_MS)
    assert res.duplicate.shape == (100_000,) and not res.duplicate.any()
    assert len(res.alerts) == users_n
    for u in (0, 57, 99):
        got = await store.range(f"user-{u}", 0, NOW_MS)
        sl = slice(u * per_user, (u + 1) * per_user)
        assert got.ts_ms.tolist() == ts[sl].tolist()
        assert got.bpm.tolist() == bpm[sl].tolist()
        assert got.classification.tolist() == cls[sl].tolist()
        expected = step(AlertState(), ts[sl].tolist(), cls[sl].tolist(), AlertRules())
        assert await store.alert_state(f"user-{u}") == expected
        assert res.alerts[f"user-{u}"] == (expected.active, expected.since_ms)
    again = await store.write_batch(
        users[:6000], ts[perm][:6000], bpm[perm][:6000], cls[perm][:6000], NOW_MS
    )
    assert again.duplicate.all()


async def test_script_is_reloaded_after_script_flush(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    """After SCRIPT FLUSH (as after a restart) the next write reloads the script and succeeds."""
    await write(store, "u1", [T0], [N])
    await raw_redis.script_flush()
    res = await write(store, "u1", [T0, T0 + 1], [N, N])
    assert res.duplicate.tolist() == [True, False]


async def test_profiles_round_trip(store: ReadingStore) -> None:
    """set_profile/get_profile round-trip JSON; get_profiles returns only users that have one."""
    assert await store.get_profile("u1") is None
    profile = {"age": 40, "sex": 1, "resting_bpm": 55, "zones": [50, 60.5], "name": "Zoë"}
    await store.set_profile("u1", profile)
    await store.set_profile("u2", {"age": 30})
    assert await store.get_profile("u1") == profile
    got = await store.get_profiles(["u2", "nobody", "u1", "u2"])
    assert got == {"u1": profile, "u2": {"age": 30}}
    assert await store.get_profiles([]) == {}
    await store.set_profile("u2", {"age": 31})
    assert await store.get_profile("u2") == {"age": 31}


async def test_keys_are_hash_tagged_per_user(store: ReadingStore, raw_redis: RawRedis) -> None:
    """A user's keys all carry the {user_id} hash tag (one Redis Cluster slot per user)."""
    await write(store, "alice@x.org", [T0], [HIGH])
    await store.set_profile("alice@x.org", {"age": 1})
    assert await all_keys(raw_redis) == [
        "hr:{alice@x.org}:alert",
        "hr:{alice@x.org}:events",
        "hr:{alice@x.org}:profile",
        "hr:{alice@x.org}:readings",
    ]
    assert await raw_redis.type(ALERT_KEY.format(user="alice@x.org")) == b"hash"


async def test_empty_and_invalid_batches(store: ReadingStore) -> None:
    """An empty batch is a no-op; mismatched lengths or unencodable values are ValueErrors."""
    empty = await write(store, "u1", [], [])
    assert empty.duplicate.shape == (0,) and empty.alerts == {}
    with pytest.raises(ValueError, match="length"):
        await store.write_batch(["u1"], np.array([T0, T0]), np.array([1, 2]), np.zeros(2), NOW_MS)
    with pytest.raises(ValueError, match="classification"):
        await write(store, "u1", [T0], [3], bpm=[70])
    with pytest.raises(ValueError, match="ts_ms"):
        await write(store, "u1", [-1], [N])


async def test_from_settings_uses_url_pool_and_retention(redis_url: str) -> None:
    """from_settings builds a working store from Settings (URL, pool size, retention days)."""
    settings = Settings(redis_url=redis_url, redis_pool_size=4, retention_days=1)
    store = ReadingStore.from_settings(settings, AlertRules())
    try:
        assert await store.ping()
        assert store._retention_ms == 86_400_000
    finally:
        await store.aclose()
    with pytest.raises(ValueError, match="redis_url"):
        ReadingStore.from_settings(Settings(), AlertRules())


async def test_unreachable_redis_raises_store_unavailable_quickly() -> None:
    """With nothing listening, calls raise StoreUnavailable at once; ping() is False."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = ReadingStore(url, timeout_s=0.5, retention_ms=1, alert_rules=AlertRules())
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailable, match="Redis is down or unreachable"):
            await write(store, "u1", [T0], [N])
        with pytest.raises(StoreUnavailable):
            await store.alert_state("u1")
        assert await store.ping() is False
        assert time.monotonic() - start < 2 * 0.5
    finally:
        await store.aclose()


@pytest.mark.single_redis
async def test_hung_redis_fails_within_two_timeouts(tmp_path: Path) -> None:
    """A stopped (SIGSTOP) Redis makes a call fail with StoreUnavailable within ~2 x timeout_s."""
    timeout_s = 0.3
    with EmbeddedRedis(tmp_path) as server:
        store = ReadingStore(
            server.url, timeout_s=timeout_s, retention_ms=RETENTION_MS, alert_rules=AlertRules()
        )
        assert server.pid is not None
        try:
            await write(store, "u1", [T0], [N])
            os.kill(server.pid, signal.SIGSTOP)
            start = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await write(store, "u1", [T0 + 1], [N])
            elapsed = time.monotonic() - start
            assert 2 * timeout_s * 0.9 < elapsed < 2 * timeout_s + 0.5
        finally:
            os.kill(server.pid, signal.SIGCONT)
            await store.aclose()


@pytest.mark.single_redis
async def test_redis_killed_and_restarted_same_store_recovers(tmp_path: Path) -> None:
    """SIGKILL: calls raise StoreUnavailable; restarted on the same port, the same store works."""
    server = EmbeddedRedis(tmp_path, fsync="always")
    url = server.start()
    store = ReadingStore(url, timeout_s=0.5, retention_ms=RETENTION_MS, alert_rules=AlertRules())
    try:
        await write(store, "u1", [T0, T0 + 1000], [HIGH, N])
        client = await store.client()
        server.kill()
        for call in (
            write(store, "u1", [T0 + 2000], [N]),
            store.recent("u1", 10),
            store.range("u1", 0, NOW_MS),
            store.get_profiles(["u1"]),
        ):
            with pytest.raises(StoreUnavailable, match="down or unreachable"):
                await call
        assert await store.ping() is False
        assert server.start() == url
        assert await store.ping() is True
        res = await write(store, "u1", [T0 + 1000, T0 + 2000], [N, N])  # script cache was lost
        assert res.duplicate.tolist() == [True, False]
        assert (await store.range("u1", 0, NOW_MS)).ts_ms.tolist() == [T0, T0 + 1000, T0 + 2000]
        assert (await store.alert_state("u1")).normal_count == 2
        assert await store.client() is client
    finally:
        await store.aclose()
        server.stop()


@pytest.mark.single_redis
async def test_everysec_data_survives_sigkill_after_one_second(tmp_path: Path) -> None:
    """With appendfsync everysec, writes older than ~1 s survive a SIGKILL and restart."""
    server = EmbeddedRedis(tmp_path, fsync="everysec")
    url = server.start()
    store = ReadingStore(url, timeout_s=0.5, retention_ms=RETENTION_MS, alert_rules=AlertRules())
    try:
        ts = [T0 + i * 1000 for i in range(500)]
        users = [f"u{i % 5}" for i in range(500)]
        await write(store, users, ts, [HIGH] * 500)
        await store.set_profile("u1", {"age": 50})
        states = [await store.alert_state(f"u{i}") for i in range(5)]
        await asyncio.sleep(1.5)  # everysec: the AOF is fsynced within a second
        server.kill()
        server.start()
        for i in range(5):
            got = await store.range(f"u{i}", 0, NOW_MS)
            assert got.ts_ms.tolist() == ts[i::5]
            assert await store.alert_state(f"u{i}") == states[i]
        assert await store.get_profile("u1") == {"age": 50}
    finally:
        await store.aclose()
        server.stop()


async def test_keys_of_an_inactive_user_expire_after_the_retention(
    store: ReadingStore, raw_redis: RawRedis
) -> None:
    """Each write sets the user's keys to expire one retention period later (nothing lingers)."""
    await write(store, "idle", [T0], [HIGH])
    for key in ("hr:{idle}:readings", "hr:{idle}:alert"):
        ttl_ms = await raw_redis.pttl(key)
        assert RETENTION_MS - 60_000 < ttl_ms <= RETENTION_MS, key
