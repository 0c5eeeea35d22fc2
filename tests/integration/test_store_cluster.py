"""ReadingStore on a 3-master Redis Cluster: what only a cluster has. A round's users spread over
every master (one EVALSHA per slot, each on the node that owns it), profiles across slots, script
caches flushed on every node, compaction over every node, more concurrent calls than a node's
pool, and a dead master. The store-level tests of test_store.py and test_compaction.py run on the
cluster as well (their `[cluster]` cases)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from redis.crc import key_slot

from heartrate_serve.core.alerts import AlertRules, AlertState, step_alerts
from heartrate_serve.runtime.redis_watch import redis_up
from heartrate_serve.store.compaction import Compactor
from heartrate_serve.store.keys import (
    ALERT_KEY,
    CHUNK_MS,
    CHUNKS_KEY,
    COMPACTOR_LEASE_KEY,
    PROFILE_KEY,
    READINGS_KEY,
)
from heartrate_serve.store.store import ReadingStore, StoreUnavailable
from tests.support.redis_cluster import ClusterNodeProcess, RedisCluster

pytestmark = pytest.mark.cluster_redis

DAY_MS = 86_400_000
NOW_MS = 1_700_000_000_000 - 1_700_000_000_000 % CHUNK_MS  # a chunk boundary
T0 = NOW_MS - 3 * CHUNK_MS
N, LOW, HIGH = 0, 1, 2
RETENTION_MS = 30 * DAY_MS
GRACE_MS = 120_000
DEAD_NODE_BOUND_S = 5.0  # a call for a user on a dead master fails within this


def users_by_node(cluster: RedisCluster, per_node: int, prefix: str) -> list[list[str]]:
    """per_node users for each node (in cluster.nodes order), every user in a slot of its own."""
    out: list[list[str]] = [[] for _ in cluster.nodes]
    slots: set[int] = set()
    i = 0
    while any(len(users) < per_node for users in out):
        user, i = f"{prefix}{i}", i + 1
        slot = key_slot(READINGS_KEY.format(user=user).encode())
        node = cluster.nodes.index(cluster.node_of_slot(slot))
        if slot not in slots and len(out[node]) < per_node:
            out[node].append(user)
            slots.add(slot)
    return out


def node_keys(node: ClusterNodeProcess, pattern: str = "hr:*") -> set[str]:
    """The keys one node holds (asked of that node alone)."""
    with node.client() as c:
        return set(c.keys(pattern))


def node_calls(node: ClusterNodeProcess, command: str) -> int:
    """How many times `command` ran on the node since its last CONFIG RESETSTAT."""
    with node.client() as c:
        stats = c.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def reset_stats(cluster: RedisCluster) -> None:
    for node in cluster.nodes:
        with node.client() as c:
            c.config_resetstat()


async def write(
    store: ReadingStore, users: list[str], ts: list[int], cls: list[int], now_ms: int = NOW_MS
) -> np.ndarray:
    """write_batch with plain lists (bpm from the class); the duplicate flags."""
    bpm = [{N: 70, LOW: 45, HIGH: 160}[c] for c in cls]
    res = await store.write_batch(
        users, np.array(ts, np.int64), np.array(bpm, np.int32), np.array(cls, np.uint8), now_ms
    )
    return res.duplicate


async def test_one_round_over_every_master(
    store: ReadingStore, redis_cluster: RedisCluster
) -> None:
    """One write_batch of 12 users, 4 on each master, shuffled and with repeats: results in caller
    order, one EVALSHA per slot (so per user here) on the node owning it, each user's keys on
    that node only, alert state per user as step_alerts; the round resent is all duplicates."""
    by_node = users_by_node(redis_cluster, 4, "round-")
    everyone = [u for users in by_node for u in users]
    rng = random.Random(3)
    readings = [(u, T0 + rng.randint(0, 100) * 1000, rng.choice([N, N, HIGH, LOW]))
                for u in everyone for _ in range(40)]  # fmt: skip
    rng.shuffle(readings)
    users, ts, cls = (list(col) for col in zip(*readings, strict=True))
    seen: set[tuple[str, int]] = set()
    expected = []
    for u, t in zip(users, ts, strict=True):
        expected.append((u, t) in seen)
        seen.add((u, t))
    assert any(expected)  # the round repeats some (user, ts): the first in caller order wins
    reset_stats(redis_cluster)
    assert (await write(store, users, ts, cls)).tolist() == expected
    for node, mine in zip(redis_cluster.nodes, by_node, strict=True):
        assert node_calls(node, "evalsha") == len(mine)  # one call per slot, on its owner
        assert node_keys(node, "hr:*:readings") == {READINGS_KEY.format(user=u) for u in mine}
        assert node_keys(node, "hr:*:alert") == {ALERT_KEY.format(user=u) for u in mine}
        with node.client() as c:
            for u in mine:
                assert c.zcard(READINGS_KEY.format(user=u)) == len({t for v, t in seen if v == u})
    for u in everyone:
        mine = [(t, c) for v, t, c, dup in zip(users, ts, cls, expected, strict=True)
                if v == u and not dup]  # fmt: skip
        # Readings of one user in one round are applied in ts order (store.lua sorts them).
        ordered = sorted(mine)
        state = step_alerts(AlertState(), [t for t, _ in ordered], [c for _, c in ordered],
                            AlertRules())[0]  # fmt: skip
        assert await store.alert_state(u) == state
        got = await store.range(u, 0, NOW_MS)
        assert got.ts_ms.tolist() == [t for t, _ in ordered]
        assert got.classification.tolist() == [c for _, c in ordered]
    again = await write(store, users[::-1], ts[::-1], cls[::-1])
    assert again.all()


async def test_large_round_cut_per_slot(store: ReadingStore, redis_cluster: RedisCluster) -> None:
    """12 000 readings of 3 users (one per master) in one round: each user's readings are cut
    into calls of at most 5 000 on its own node, all stored once."""
    users = [node_users[0] for node_users in users_by_node(redis_cluster, 1, "big-")]
    ts = [T0 + i * 100 for i in range(4000)]
    reset_stats(redis_cluster)
    flags = await write(store, [u for u in users for _ in ts], ts * 3, [N] * 12_000)
    assert not flags.any()
    assert [node_calls(n, "evalsha") for n in redis_cluster.nodes] == [1, 1, 1]
    more = [T0 + 400_000 + i * 100 for i in range(6000)]
    reset_stats(redis_cluster)
    assert not (await write(store, [users[1]] * 6000, more, [N] * 6000)).any()
    owner = redis_cluster.node_of_slot(key_slot(READINGS_KEY.format(user=users[1]).encode()))
    assert node_calls(owner, "evalsha") == 2  # 5 000 + 1 000: two calls of the one slot
    assert len(await store.range(users[1], 0, NOW_MS)) == 10_000


async def test_profiles_across_slots(store: ReadingStore, redis_cluster: RedisCluster) -> None:
    """Profiles of users on every master: each stored on its owner; get_profiles answers them
    all (any order, repeats, unknown users left out)."""
    by_node = users_by_node(redis_cluster, 3, "prof-")
    everyone = [u for users in by_node for u in users]
    for i, u in enumerate(everyone):
        await store.set_profile(u, {"age": 20 + i, "name": u})
    for node, mine in zip(redis_cluster.nodes, by_node, strict=True):
        assert node_keys(node, "hr:*:profile") == {PROFILE_KEY.format(user=u) for u in mine}
    wanted = [*everyone[::-1], "nobody", everyone[0], "nobody-else"]
    got = await store.get_profiles(wanted)
    assert got == {u: {"age": 20 + i, "name": u} for i, u in enumerate(everyone)}
    assert await store.get_profile(everyone[-1]) == {"age": 20 + len(everyone) - 1,
                                                      "name": everyone[-1]}  # fmt: skip
    assert await store.get_profiles(["nobody"]) == {}


async def test_script_flush_on_every_node_then_write_read_and_compact(
    store: ReadingStore, redis_cluster: RedisCluster
) -> None:
    """SCRIPT FLUSH on every node (as after restarts or failovers): the next write, read and
    compaction get NOSCRIPT, load their script on every primary and succeed."""
    by_node = users_by_node(redis_cluster, 2, "noscript-")
    everyone = [u for users in by_node for u in users]
    ts = [T0 + i * 1000 for i in range(10)]
    assert not (await write(store, [u for u in everyone for _ in ts], ts * 6, [N] * 60)).any()
    assert len(await store.recent(everyone[0], 5)) == 5
    compactor = await store.compactor()
    assert (await compactor.sweep(NOW_MS)).chunks_written == 6

    for flush_nodes in (redis_cluster.nodes, redis_cluster.nodes[1:2]):
        for node in flush_nodes:
            with node.client() as c:
                assert c.script_flush()
        late = [NOW_MS - 1000, T0 + 5]  # one in the open chunk, one late into a compacted one
        flags = await write(store, [u for u in everyone for _ in late], late * 6, [N] * 12)
        assert not flags.any() if flush_nodes is redis_cluster.nodes else flags.all()
        for u in everyone:
            got = await store.range(u, 0, NOW_MS)
            assert got.ts_ms.tolist() == sorted([*ts, *late])
            assert (await store.recent(u, 1)).ts_ms.tolist() == [late[0]]
        for node in flush_nodes:
            with node.client() as c:
                assert c.script_flush()
        stats = await compactor.sweep(NOW_MS)
        assert stats.users_seen == 6 and stats.conflicts == 0
        for node, mine in zip(redis_cluster.nodes, by_node, strict=True):
            with node.client() as c:
                for u in mine:  # the late reading of the compacted chunk was merged
                    assert c.zcard(READINGS_KEY.format(user=u)) == 1


async def test_sweep_compacts_users_on_every_node(
    store: ReadingStore, redis_cluster: RedisCluster
) -> None:
    """One sweep finds (SCAN of every primary) and compacts users on all 3 masters; each node
    holds its users' chunks, reads are exact; the run loop's lease is one key on one node."""
    by_node = users_by_node(redis_cluster, 3, "sweep-")
    everyone = [u for users in by_node for u in users]
    ts = [T0 + i * 1000 for i in range(2 * CHUNK_MS // 1000)]  # two closed chunks
    for u in everyone:
        assert not (await write(store, [u] * len(ts), ts, [N] * len(ts))).any()
    compactor = Compactor(await store.client(), retention_ms=RETENTION_MS, grace_ms=GRACE_MS)
    stats = await compactor.sweep(NOW_MS)
    assert stats.users_seen == 9 and stats.chunks_written == 18
    assert stats.readings_moved == 9 * len(ts)
    for node, mine in zip(redis_cluster.nodes, by_node, strict=True):
        assert node_keys(node, "hr:*:readings") == set()
        assert node_keys(node, "hr:*:chunks") == {CHUNKS_KEY.format(user=u) for u in mine}
    for u in everyone:
        assert (await store.range(u, 0, NOW_MS)).ts_ms.tolist() == ts
    # The background loop: the lease key lives on the node owning its slot, nowhere else.
    late = [T0 + 500]
    await write(store, everyone, late * 9, [N] * 9)
    stop = asyncio.Event()
    loop = asyncio.create_task(compactor.run(0.05, stop, clock_ms=lambda: NOW_MS))
    try:
        deadline = time.monotonic() + 10
        while any(node_keys(n, "hr:*:readings") for n in redis_cluster.nodes):
            assert time.monotonic() < deadline, "the run loop did not compact the late readings"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await loop
    lease_node = redis_cluster.node_of_slot(key_slot(COMPACTOR_LEASE_KEY.encode()))
    for node in redis_cluster.nodes:
        assert (COMPACTOR_LEASE_KEY in node_keys(node, "hr:compactor:*")) is (node is lease_node)


async def test_more_concurrent_calls_than_a_node_pool(redis_cluster: RedisCluster) -> None:
    """pool_size=2 per node and 200 concurrent calls for users of one node: they wait for a
    connection (as on a single Redis's blocking pool) instead of failing."""
    store = ReadingStore(
        redis_cluster.url, pool_size=2, retention_ms=RETENTION_MS, alert_rules=AlertRules()
    )
    users = users_by_node(redis_cluster, 10, "busy-")[0]
    try:
        await store.set_profile(users[0], {"age": 30})
        calls = []
        for i in range(40):
            u = users[i % len(users)]
            calls += [
                write(store, [u], [T0 + i], [N]),
                store.recent(u, 3),
                store.alert_state(u),
                store.get_profile(u),
                store.get_profiles(users),
            ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors[:3]
    finally:
        await store.aclose()


def test_redis_up_gauge_sees_the_cluster(redis_cluster: RedisCluster) -> None:
    """The driver's heartrate_redis_up check (runtime/redis_watch.py) through any node's URL:
    cluster_state ok and every primary answering PING."""
    assert all(redis_up(url) for url in redis_cluster.urls)
    assert redis_up(redis_cluster.url.replace(str(redis_cluster.nodes[0].port), "1")) is False


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A cluster of this test's own (it kills a master). A long node timeout keeps the live
    masters serving while one is dead (no CLUSTERDOWN within the test)."""
    with RedisCluster(tmp_path / "cluster", node_timeout_ms=30_000) as cluster:
        yield cluster


# Node 0 is the one REDIS_URL names: the client must find the topology through the others.
@pytest.mark.parametrize("victim", [0, 1])
async def test_killed_master_fails_its_users_with_store_unavailable(
    own_cluster: RedisCluster, victim: int
) -> None:
    """SIGKILL of one master: every store call for a user on it raises StoreUnavailable within a
    few seconds (no hang, no other exception type), ping is False, users on the live masters
    are served and compacted; restarted, the same store serves that node's users again."""
    cluster = own_cluster
    store = ReadingStore(cluster.url, timeout_s=0.5, retention_ms=RETENTION_MS,
                         alert_rules=AlertRules())  # fmt: skip
    by_node = users_by_node(cluster, 2, "dead-")
    everyone = [u for users in by_node for u in users]
    dead_user = by_node[victim][0]
    live_nodes = [i for i in range(len(cluster.nodes)) if i != victim]
    live_user = by_node[(victim + 1) % 3][0]
    try:
        ts = [T0 + i * 1000 for i in range(2 * CHUNK_MS // 1000)]  # two closed chunks per user
        for u in everyone:
            await write(store, [u] * len(ts), ts, [N] * len(ts))
            await store.set_profile(u, {"age": 40})
        compactor = await store.compactor()
        cluster.nodes[victim].kill()
        calls = {
            "write_batch": lambda: write(store, [dead_user], [NOW_MS - 1], [N]),
            "mixed round": lambda: write(store, everyone, [NOW_MS - 2] * 6, [N] * 6),
            "recent": lambda: store.recent(dead_user, 5),
            "range": lambda: store.range(dead_user, 0, NOW_MS),
            "alert_state": lambda: store.alert_state(dead_user),
            "get_profile": lambda: store.get_profile(dead_user),
            "set_profile": lambda: store.set_profile(dead_user, {"age": 41}),
            "get_profiles": lambda: store.get_profiles(everyone),
            "compact_user": lambda: compactor.compact_user(dead_user, NOW_MS),
            "sweep": lambda: compactor.sweep(NOW_MS),
        }
        took = {}
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call()
            took[name] = time.monotonic() - started
            assert took[name] < DEAD_NODE_BOUND_S, (name, took[name])
        print(f"master {victim} dead:", ", ".join(f"{k} {v:.3f}s" for k, v in took.items()))
        started = time.monotonic()
        assert await store.ping() is False
        assert time.monotonic() - started < DEAD_NODE_BOUND_S
        live_url = cluster.nodes[(victim + 1) % 3].url
        assert not redis_up(live_url)  # heartrate_redis_up: 0 while a primary is down
        # The live masters kept serving: the mixed round's readings of their users were stored
        # (its outcome is "unknown" to the caller: resending it is safe), and the failed sweep
        # compacted the closed chunks of their users.
        for i in live_nodes:
            with cluster.nodes[i].client() as c:
                for u in by_node[i]:
                    assert c.zrange(READINGS_KEY.format(user=u), 0, -1) == [f"{NOW_MS - 2}:70:0"]
                    assert c.zcard(CHUNKS_KEY.format(user=u)) == 2
        assert not (await write(store, [live_user], [NOW_MS - 3], [N])).any()
        assert (await store.recent(live_user, 2)).ts_ms.tolist() == [NOW_MS - 2, NOW_MS - 3]
        assert await store.get_profile(live_user) == {"age": 40}

        cluster.nodes[victim].start()
        deadline = time.monotonic() + 20
        while True:  # a restarted master answers CLUSTERDOWN for a moment, then serves
            try:
                flags = await write(store, [dead_user], [NOW_MS - 1], [N])
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the restarted master's users stay failed"
                await asyncio.sleep(0.2)
        assert not flags.any()
        assert await store.ping() is True
        assert all(redis_up(url) for url in cluster.urls)
        assert (await store.range(dead_user, 0, NOW_MS)).ts_ms.tolist() == [*ts, NOW_MS - 1]
        assert await compactor.compact_user(dead_user, NOW_MS) == 2
    finally:
        await store.aclose()
