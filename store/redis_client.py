"""RedisClient: the store's redis-py client, a single Redis or a Redis Cluster behind one call
shape (store/redis_connect.py builds it for a URL). Plain key-routed commands (get, set,
zrangebyscore, hmget, ...) go through `.raw`; what differs between the modes (scripts, multi-key
reads, SCAN, PING) has a method here.

Cluster-mode notes (redis-py 8.1 asyncio):
- SCRIPT LOAD is flagged PRIMARIES: `script_load` runs on every primary and returns one sha.
- ClusterPipeline is not used: it blocks `evalsha()`, raises connection errors even with
  raise_on_error=False, and before its retry it closes every connection of the client, under
  the feet of concurrent commands (seen: AttributeError 'NoneType' has no 'writelines'). Batches
  here run as one ClusterNode.execute_pipeline per primary instead, the nodes in parallel.
- A node's connection pool does not block when exhausted: more than its max_connections
  concurrent commands to one node raise MaxConnectionsError at once. So every command of the
  store goes through this class, which lets at most `pool_size` of them use a node at a time and
  makes the others wait (up to timeout_s), as the single-Redis BlockingConnectionPool does
  (pipelines, single commands, SCRIPT LOAD and SCAN alike: store/cluster_nodes.py). The node
  pools get SPARE_CONNECTIONS (redis_connect.py) more for what runs outside that gate: PING of
  the health probe (a busy node is up) and the rare re-runs after MOVED/ASK.
- Plain commands on `.raw` (raw.get, raw.hmget, ...) bypass that gate; the store uses `call()`.
- Errors: redis-py strips the code of CLUSTERDOWN/MASTERDOWN/READONLY replies and raises
  ClusterDownError/MasterDownError/ReadOnlyError; `store_errors()` maps these, connection
  trouble and RedisClusterException (no reachable node, slot not covered) to StoreUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterError,
    MaxConnectionsError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import str_if_bytes

from heartrate_serve.core.errors import StoreUnavailable
from heartrate_serve.store.cluster_nodes import Cmd, NodeTurns

# One EVALSHA: (KEYS, ARGV).
Call = tuple[list[str], list[Any]]
# Cluster replies worth one more try: connection trouble (after a topology refresh), and
# MOVED/ASK/TRYAGAIN (resharding), re-run alone through execute_command, which follows them.
_RETRY_ERRORS = (RedisConnectionError, RedisTimeoutError)
_REDIRECT_ERRORS = (AskError, TryAgainError)  # MovedError is an AskError

# Server replies that mean "Redis cannot take this right now", not a bug in the request (as text:
# redis-py keeps the code in the message of a plain ResponseError, e.g. MISCONF and BUSY).
_UNAVAILABLE_REPLIES = ("MISCONF", "READONLY", "MASTERDOWN", "LOADING", "BUSY ", "CLUSTERDOWN")
# Cluster replies redis-py raises as their own classes, code stripped: CLUSTERDOWN, MASTERDOWN
# (ClusterError), READONLY (a failed-over node), TRYAGAIN/MOVED/ASK left over after retries.
# NOSCRIPT after the reload: the node lost its scripts again in between (restart, failover).
_UNAVAILABLE_CLUSTER_REPLIES = (ClusterError, ReadOnlyError, TryAgainError, AskError, NoScriptError)

__all__ = ["Call", "RedisClient", "store_errors"]


@contextlib.contextmanager
def store_errors(op: str) -> Iterator[None]:
    """Turns 'Redis (or a cluster node) is not there or cannot serve now' into StoreUnavailable;
    any other error (a bug, a script error) passes through."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise StoreUnavailable(f"Redis is down or unreachable during {op}: {_text(e)}") from e
    except RedisClusterException as e:
        raise StoreUnavailable(f"Redis Cluster cannot serve {op} right now: {_text(e)}") from e
    except _UNAVAILABLE_CLUSTER_REPLIES as e:
        raise StoreUnavailable(
            f"Redis Cluster cannot serve {op} right now: {getattr(e, 'status_code', '')} {e}"
        ) from e
    except ResponseError as e:
        if str(e).startswith(_UNAVAILABLE_REPLIES):
            raise StoreUnavailable(f"Redis cannot serve {op} right now: {e}") from e
        raise


def _text(error: BaseException) -> str:
    """The error's message, or its class name when it has none (MaxConnectionsError())."""
    return str(error) or type(error).__name__


def _sha1(script: str) -> str:
    """The sha1 hex of a script, as SCRIPT LOAD answers it."""
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def _retryable(reply: Any) -> bool:
    """A connection-type error that a topology refresh and one more try may cure."""
    return isinstance(reply, _RETRY_ERRORS) and not isinstance(reply, MaxConnectionsError)


class RedisClient:
    """A redis-py asyncio client, single Redis or Redis Cluster, behind one call shape."""

    def __init__(
        self, raw: aioredis.Redis | RedisCluster, *, pool_size: int = 64, timeout_s: float = 2.0
    ) -> None:
        """pool_size and timeout_s: at most pool_size commands of this client use one cluster
        node at a time, the others wait up to timeout_s for their turn (single Redis: its
        BlockingConnectionPool does the same)."""
        self.raw = raw
        self.is_cluster = isinstance(raw, RedisCluster)
        self._nodes = NodeTurns(pool_size, timeout_s)  # cluster: each node's turns
        self._loading: dict[str, asyncio.Future[Any]] = {}  # script sha -> its SCRIPT LOADs
        self._loaded: set[str] = set()  # shas this client loaded before their first EVALSHA

    def slot_of(self, key: str) -> int:
        """The key's hash slot (CRC16 of the hash tag or whole key); 0 for a single Redis."""
        return key_slot(key.encode()) if self.is_cluster else 0

    async def load_script(self, script: str) -> str:
        """SCRIPT LOAD on the server, or on every primary of the cluster; returns the sha.

        Cluster: a primary that cannot load it now (down) does not fail this; its calls get
        NOSCRIPT later and load it then (evalsha_many)."""
        if not isinstance(self.raw, RedisCluster):
            return str_if_bytes(await self.raw.script_load(script))
        await self._reload(script)
        return _sha1(script)

    async def _reload(self, script: str) -> None:
        """SCRIPT LOAD wherever it can be done; a node that fails fails its calls' retry.
        Cluster: concurrent reloads of one script share one SCRIPT LOAD per primary."""
        if not isinstance(self.raw, RedisCluster):
            with contextlib.suppress(Exception):  # the retried calls report the error
                await self.raw.script_load(script)
            return
        sha = _sha1(script)
        loading = self._loading.get(sha)
        if loading is None:
            nodes = self.raw.get_primaries()
            loads = (self._nodes.on_node(n, ("SCRIPT LOAD", script)) for n in nodes)
            loading = asyncio.ensure_future(asyncio.gather(*loads, return_exceptions=True))
            self._loading[sha] = loading
            loading.add_done_callback(lambda _: self._loading.pop(sha, None))
        await asyncio.shield(loading)  # a cancelled caller does not cancel the others' load

    async def evalsha_many(self, sha: str, script: str, calls: Sequence[Call]) -> list[Any]:
        """EVALSHA of each (keys, args); replies in caller order, errors returned as values.

        Single Redis: one non-transactional pipeline (one round trip). Cluster: every call's keys
        must be in one slot (else ValueError, before anything runs); calls are pipelined per
        node and the nodes run in parallel. Calls that get NOSCRIPT (restarted, failed-over or
        flushed script cache) are retried once after SCRIPT LOAD on every primary."""
        cmds: list[Cmd] = []
        for keys, args in calls:
            slots = {self.slot_of(k) for k in keys}
            if len(slots) > 1:
                raise ValueError(f"EVALSHA keys span {len(slots)} cluster slots: {keys}")
            cmds.append((slots.pop() if slots else None, ("EVALSHA", sha, len(keys), *keys, *args)))
        if sha not in self._loaded:  # first use: load it rather than pay a NOSCRIPT per call
            await self._reload(script)
            self._loaded.add(sha)
        replies = await self._execute(cmds)
        todo = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if todo:
            await self._reload(script)
            retried = await self._execute([cmds[i] for i in todo])
            for i, reply in zip(todo, retried, strict=True):
                replies[i] = reply
        return replies

    async def call(self, *args: Any) -> Any:
        """One plain command (name, key, *args) routed by its key; its reply (parsed as redis-py
        parses it for these arguments), or its error raised. On a single Redis this is
        raw.execute_command; on a cluster it takes its turn on the key's node (see __init__)."""
        if not isinstance(self.raw, RedisCluster):
            return await self.raw.execute_command(*args)  # type: ignore[no-untyped-call]
        (reply,) = await self._execute([(self.slot_of(str(args[1])), tuple(args))])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def run_many(self, cmds: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Plain commands (name, key, *args), each routed by its key; one pipeline per node (one
        round trip on a single Redis); replies in caller order, errors as values. Replies are
        as the server sends them (no redis-py option parsing: WITHSCORES answers a flat list)."""
        return await self._execute([(self.slot_of(str(c[1])), tuple(c)) for c in cmds])

    async def _execute(self, cmds: list[Cmd]) -> list[Any]:
        """The commands pipelined (per node in a cluster); replies in order, errors as values."""
        if not isinstance(self.raw, RedisCluster):
            try:
                async with self.raw.pipeline(transaction=False) as pipe:
                    for _, args in cmds:
                        pipe.execute_command(*args)
                    return list(await pipe.execute(raise_on_error=False))
            except Exception as e:  # connection lost (after the pool's one retry)
                return [e] * len(cmds)
        replies = await self._nodes.per_node(self.raw, cmds)
        todo = [i for i, r in enumerate(replies) if _retryable(r)]
        if todo:  # dead, restarted or failed-over node: refresh the slot map, try once more
            with contextlib.suppress(Exception):
                await self.raw.nodes_manager.initialize()
            retried = await self._nodes.per_node(self.raw, [cmds[i] for i in todo])
            for i, reply in zip(todo, retried, strict=True):
                replies[i] = reply
        todo = [i for i, r in enumerate(replies) if isinstance(r, _REDIRECT_ERRORS)]
        alone = (self.raw.execute_command(*cmds[i][1]) for i in todo)
        for i, reply in zip(
            todo, await asyncio.gather(*alone, return_exceptions=True), strict=True
        ):
            replies[i] = reply
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
        """Every key matching `match`, on the server or on every primary (SCAN, not atomic).

        Cluster: primary after primary; one that fails (down) is left out and the others are
        still scanned, then the first such error is raised."""
        if not isinstance(self.raw, RedisCluster):
            async for key in self.raw.scan_iter(match=match, count=count):
                yield key
            return
        failed: Exception | None = None
        for node in self.raw.get_primaries():
            cursor = 0
            while True:
                try:
                    cursor, keys = await self._nodes.on_node(
                        node, ("SCAN", cursor, "MATCH", match, "COUNT", count)
                    )
                except Exception as e:
                    failed = failed or e
                    break
                for key in keys:
                    yield key
                if cursor == 0:
                    break
        if failed is not None:
            raise failed

    async def ping(self) -> bool:
        """True when the server, or every primary of the cluster, answers PING; never raises.
        (Cluster: outside the per-node turns, on the spare connections: a busy node is up.)"""
        try:
            if isinstance(self.raw, RedisCluster):
                pings = (node.execute_command("PING") for node in self.raw.get_primaries())
                replies = await asyncio.gather(*pings, return_exceptions=True)
                return all(reply is True for reply in replies)
            return bool(await self.raw.ping())
        except Exception:
            return False

    async def aclose(self) -> None:
        """Closes every connection."""
        await self.raw.aclose()
