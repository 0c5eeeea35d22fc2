"""Real Redis for the integration tests: one embedded redis-server and one 3-master Redis Cluster
on 127.0.0.1 for the session (each started on first use), and a fresh ReadingStore per test.

Store-level tests (those using `store`, `raw_redis` or `redis_url`) run once per mode:
`[single]` on the embedded Redis, `[cluster]` on the cluster. A test that is inherently about
one redis-server process (killing or stopping it, its AOF) carries `@pytest.mark.single_redis`:
it runs only as `[single]` when it uses those fixtures, and the marker documents it otherwise.
`@pytest.mark.cluster_redis` (test_store_cluster.py) runs a test only as `[cluster]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from heartrate_serve.core.alerts import AlertRules
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.store.store import ReadingStore
from tests.support.redis_cluster import RedisCluster

# Long enough that nothing a test writes (timestamps near NOW_MS) is trimmed by accident.
RETENTION_MS = 30 * 86_400_000
MODES = ("single", "cluster")
RawRedis = aioredis.Redis | AsyncRedisCluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "single_redis: about one redis-server process (kill, SIGSTOP, AOF); runs only [single]",
    )
    config.addinivalue_line("markers", "cluster_redis: Redis Cluster only; runs only [cluster]")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`redis_mode`: "single" and "cluster", or the one its marker names."""
    if "redis_mode" in metafunc.fixturenames:
        modes = list(MODES)
        if metafunc.definition.get_closest_marker("single_redis") is not None:
            modes = ["single"]
        elif metafunc.definition.get_closest_marker("cluster_redis") is not None:
            modes = ["cluster"]
        metafunc.parametrize("redis_mode", modes, scope="function")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One embedded Redis on a free port with a temporary data dir, stopped at session end."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One 3-master Redis Cluster on loopback, stopped at session end."""
    with RedisCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_url(redis_mode: str, request: pytest.FixtureRequest) -> str:
    """The URL of the session server of this test's mode (the cluster: its first node)."""
    if redis_mode == "single":
        return str(request.getfixturevalue("redis_server").url)
    return str(request.getfixturevalue("redis_cluster").url)


@pytest_asyncio.fixture(loop_scope="session")
async def raw_redis(redis_mode: str, redis_url: str) -> AsyncIterator[RawRedis]:
    """A plain client for the tests' own inspection of keys (a cluster client in cluster mode);
    FLUSHALLs the server, or every primary of the cluster, before the test."""
    client: RawRedis
    if redis_mode == "single":
        client = aioredis.Redis.from_url(redis_url)
    else:
        client = AsyncRedisCluster.from_url(redis_url)
    await client.flushall()  # redis-py sends FLUSHALL to every primary of a cluster
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def store(redis_url: str, raw_redis: RawRedis) -> AsyncIterator[ReadingStore]:
    """A ReadingStore on the session Redis of this test's mode, emptied (FLUSHALL) before the
    test, closed after."""
    s = ReadingStore(redis_url, retention_ms=RETENTION_MS, alert_rules=AlertRules())
    try:
        yield s
    finally:
        await s.aclose()
