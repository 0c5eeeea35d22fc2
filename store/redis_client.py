"""The one place that builds the redis-py client for a URL: a single Redis or a Redis Cluster.

connect() asks the server (INFO cluster -> cluster_enabled) which one it is, so no setting is
needed, and returns a RedisClient with the same call shape in both modes. Plain key-routed
commands (get, set, zrangebyscore, hmget, ...) go through `.raw`; what differs between the modes
(scripts, multi-key reads, SCAN, PING) has a method here.

Cluster-mode notes (redis-py 8.1 asyncio):
- SCRIPT LOAD is flagged PRIMARIES: `script_load` runs on every primary and returns one sha.
- ClusterPipeline is not used: it blocks `evalsha()`, raises connection errors even with
  raise_on_error=False, and before its retry it closes every connection of the client, under
  the feet of concurrent commands (seen: AttributeError 'NoneType' has no 'writelines'). Batches
  here run as one ClusterNode.execute_pipeline per primary instead, the nodes in parallel.
- A node's connection pool does not block when exhausted: more than `pool_size` concurrent
  commands to one node raise MaxConnectionsError at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import AskError, MaxConnectionsError, NoScriptError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import str_if_bytes

HEALTH_CHECK_INTERVAL_S = 30  # idle seconds after which a pooled connection is PINGed on use
# One EVALSHA: (KEYS, ARGV).
Call = tuple[list[str], list[Any]]
# A raw command and the slot it must run in (None: any primary).
_Cmd = tuple[int | None, tuple[Any, ...]]
# Cluster replies worth one more try: connection trouble (after a topology refresh), and
# MOVED/ASK/TRYAGAIN (resharding), re-run alone through execute_command, which follows them.
_RETRY_ERRORS = (RedisConnectionError, RedisTimeoutError)
_REDIRECT_ERRORS = (AskError, TryAgainError)  # MovedError is an AskError

__all__ = ["Call", "RedisClient", "connect"]


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
        return RedisClient(single)
    await single.aclose()
    cluster = RedisCluster.from_url(
        url,
        max_connections=pool_size,  # per node; exhausted -> MaxConnectionsError, no waiting
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
    return RedisClient(cluster)


def _retryable(reply: Any) -> bool:
    """A connection-type error that a topology refresh and one more try may cure."""
    return isinstance(reply, _RETRY_ERRORS) and not isinstance(reply, MaxConnectionsError)


class RedisClient:
    """A redis-py asyncio client, single Redis or Redis Cluster, behind one call shape."""

    def __init__(self, raw: aioredis.Redis | RedisCluster) -> None:
        self.raw = raw
        self.is_cluster = isinstance(raw, RedisCluster)

    def slot_of(self, key: str) -> int:
        """The key's hash slot (CRC16 of the hash tag or whole key); 0 for a single Redis."""
        return key_slot(key.encode()) if self.is_cluster else 0

    async def load_script(self, script: str) -> str:
        """SCRIPT LOAD on the server, or on every primary of the cluster; returns the sha."""
        return str_if_bytes(await self.raw.script_load(script))

    async def _reload(self, script: str) -> None:
        """SCRIPT LOAD wherever it can be done; a node that fails fails its calls' retry."""
        if isinstance(self.raw, RedisCluster):
            nodes = self.raw.get_primaries()
            load = (self.raw.execute_command("SCRIPT LOAD", script, target_nodes=n) for n in nodes)
            await asyncio.gather(*load, return_exceptions=True)
        else:
            with contextlib.suppress(Exception):  # the retried calls report the error
                await self.raw.script_load(script)

    async def evalsha_many(self, sha: str, script: str, calls: Sequence[Call]) -> list[Any]:
        """EVALSHA of each (keys, args); replies in caller order, errors returned as values.

        Single Redis: one non-transactional pipeline (one round trip). Cluster: every call's keys
        must be in one slot (else ValueError, before anything runs); calls are pipelined per
        node and the nodes run in parallel. Calls that get NOSCRIPT (restarted, failed-over or
        flushed script cache) are retried once after SCRIPT LOAD on every primary."""
        cmds: list[_Cmd] = []
        for keys, args in calls:
            slots = {self.slot_of(k) for k in keys}
            if len(slots) > 1:
                raise ValueError(f"EVALSHA keys span {len(slots)} cluster slots: {keys}")
            cmds.append((slots.pop() if slots else None, ("EVALSHA", sha, len(keys), *keys, *args)))
        replies = await self._execute(cmds)
        todo = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if todo:
            await self._reload(script)
            retried = await self._execute([cmds[i] for i in todo])
            for i, reply in zip(todo, retried, strict=True):
                replies[i] = reply
        return replies

    async def run_many(self, cmds: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Plain commands (name, key, *args), each routed by its key; one pipeline per node (one
        round trip on a single Redis); replies in caller order, errors as values. Replies are
        as the server sends them (no redis-py option parsing: WITHSCORES answers a flat list)."""
        return await self._execute([(self.slot_of(str(c[1])), tuple(c)) for c in cmds])

    async def _execute(self, cmds: list[_Cmd]) -> list[Any]:
        """The commands pipelined (per node in a cluster); replies in order, errors as values."""
        if not isinstance(self.raw, RedisCluster):
            try:
                async with self.raw.pipeline(transaction=False) as pipe:
                    for _, args in cmds:
                        pipe.execute_command(*args)
                    return list(await pipe.execute(raise_on_error=False))
            except Exception as e:  # connection lost (after the pool's one retry)
                return [e] * len(cmds)
        replies = await self._per_node(self.raw, cmds)
        todo = [i for i, r in enumerate(replies) if _retryable(r)]
        if todo:  # dead, restarted or failed-over node: refresh the slot map, try once more
            with contextlib.suppress(Exception):
                await self.raw.nodes_manager.initialize()
            retried = await self._per_node(self.raw, [cmds[i] for i in todo])
            for i, reply in zip(todo, retried, strict=True):
                replies[i] = reply
        todo = [i for i, r in enumerate(replies) if isinstance(r, _REDIRECT_ERRORS)]
        alone = (self.raw.execute_command(*cmds[i][1]) for i in todo)
        for i, reply in zip(
            todo, await asyncio.gather(*alone, return_exceptions=True), strict=True
        ):
            replies[i] = reply
        return replies

    @staticmethod
    async def _per_node(raw: RedisCluster, cmds: list[_Cmd]) -> list[Any]:
        """One pipeline per primary (owner of the commands' slots), all in parallel."""
        replies: list[Any] = [None] * len(cmds)
        try:
            await raw.initialize()  # no-op unless an error asked for a topology refresh
        except Exception as e:
            return [e] * len(cmds)
        groups: dict[str, tuple[ClusterNode, list[PipelineCommand]]] = {}
        for i, (slot, args) in enumerate(cmds):
            try:
                m = raw.nodes_manager
                node = raw.get_random_primary_node() if slot is None else m.get_node_from_slot(slot)
            except Exception as e:  # SlotNotCoveredError
                replies[i] = e
                continue
            groups.setdefault(node.name, (node, []))[1].append(PipelineCommand(i, *args))

        async def run(node: ClusterNode, group: list[PipelineCommand]) -> None:
            try:
                await node.execute_pipeline(group)  # sets each command's result or error
            except Exception as e:  # could not connect / send: nothing came back
                for cmd in group:
                    cmd.result = e

        await asyncio.gather(*(run(node, group) for node, group in groups.values()))
        for _, group in groups.values():
            for cmd in group:
                replies[cmd.position] = cmd.result
        return replies

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """GET of every key in caller order (None when missing); any slots in cluster mode."""
        if not keys:
            return []
        if not isinstance(self.raw, RedisCluster):
            return cast(list[bytes | None], await self.raw.mget(list(keys)))
        values = await self._execute([(self.slot_of(k), ("GET", k)) for k in keys])
        for value in values:
            if isinstance(value, Exception):
                raise value
        return values

    async def scan_keys(self, match: str, count: int = 1000) -> AsyncIterator[bytes]:
        """Every key matching `match`, on the server or on every primary (SCAN, not atomic)."""
        async for key in self.raw.scan_iter(match=match, count=count):
            yield key

    async def ping(self) -> bool:
        """True when the server, or every primary of the cluster, answers PING; never raises."""
        try:
            if isinstance(self.raw, RedisCluster):
                return bool(
                    await self.raw.execute_command("PING", target_nodes=RedisCluster.PRIMARIES)
                )
            return bool(await self.raw.ping())
        except Exception:
            return False

    async def aclose(self) -> None:
        """Closes every connection."""
        await self.raw.aclose()
