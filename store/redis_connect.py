"""The one place that builds the store's Redis client for a URL: a single Redis or a Redis Cluster.

connect() asks the server (INFO cluster -> cluster_enabled) which one it is, so no setting is
needed, and returns a RedisClient (store/redis_client.py) with the same call shape in both modes.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from heartrate_serve.store.redis_client import RedisClient

HEALTH_CHECK_INTERVAL_S = 30  # idle seconds after which a pooled connection is PINGed on use
# Cluster: connections per node beyond pool_size, for the commands outside RedisClient's per-node
# gate (PING of the health probe, re-runs after MOVED/ASK).
SPARE_CONNECTIONS = 8


def _retry() -> Retry:
    """One retry after a short backoff: a dropped pooled connection (Redis restarted) is
    reconnected transparently, and a dead Redis fails a call within ~2 * timeout_s."""
    return Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=1)


async def connect(url: str, *, pool_size: int, timeout_s: float) -> RedisClient:
    """A client for the Redis (single server or cluster node) at `url`.

    Raises a redis ConnectionError/TimeoutError when the server cannot be reached, and
    RedisClusterException when a cluster node's view of the cluster is not usable."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=timeout_s,  # wait for a free pooled connection, s
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=_retry(),
    )
    single = aioredis.Redis.from_pool(pool)
    try:
        cluster_enabled = bool((await single.info("cluster")).get("cluster_enabled"))
    except BaseException:
        await single.aclose()
        raise
    if not cluster_enabled:
        return RedisClient(single, pool_size=pool_size, timeout_s=timeout_s)
    await single.aclose()
    cluster = RedisCluster.from_url(
        url,
        # Per node; exhausted -> MaxConnectionsError at once. RedisClient lets pool_size
        # commands use a node at a time; the spare ones serve PING and MOVED/ASK re-runs.
        max_connections=pool_size + SPARE_CONNECTIONS,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=_retry(),  # the cluster client uses only its retry count (topology refresh)
    )
    try:
        await cluster.initialize()  # CLUSTER SLOTS: nodes and slot map
    except BaseException:
        await cluster.aclose()
        raise
    return RedisClient(cluster, pool_size=pool_size, timeout_s=timeout_s)
