"""Turns on Redis Cluster nodes: at most pool_size commands of a RedisClient use one node at a
time, the others wait up to timeout_s for theirs (a node's redis-py connection pool does not
block when exhausted: it raises MaxConnectionsError at once; see store/redis_client.py). Also
the per-node pipelines that RedisClient runs its batches as."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.exceptions import MaxConnectionsError

# A raw command and the slot it must run in (None: any primary).
Cmd = tuple[int | None, tuple[Any, ...]]


class NodeTurns:
    """pool_size turns per cluster node, each waited for up to timeout_s."""

    def __init__(self, pool_size: int, timeout_s: float) -> None:
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._gates: dict[str, asyncio.Semaphore] = {}  # cluster node name -> its turns

    async def per_node(self, raw: RedisCluster, cmds: list[Cmd]) -> list[Any]:
        """One pipeline per primary (owner of the commands' slots), all in parallel, each when
        its node has a free turn."""
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
                async with self.turn(node):
                    await node.execute_pipeline(group)  # sets each command's result or error
            except Exception as e:  # no turn, could not connect / send: nothing came back
                for cmd in group:
                    cmd.result = e

        await asyncio.gather(*(run(node, group) for node, group in groups.values()))
        for _, group in groups.values():
            for cmd in group:
                replies[cmd.position] = cmd.result
        return replies

    async def on_node(self, node: ClusterNode, args: tuple[Any, ...]) -> Any:
        """One command on one cluster node, in its turn; the reply, or the error raised."""
        async with self.turn(node):
            return await node.execute_command(*args)

    @contextlib.asynccontextmanager
    async def turn(self, node: ClusterNode) -> AsyncIterator[None]:
        """One of the node's pool_size turns, waited for up to timeout_s (then
        MaxConnectionsError, a ConnectionError: "no connection free in time", not retried)."""
        gate = self._gates.get(node.name)
        if gate is None:
            gate = self._gates[node.name] = asyncio.Semaphore(self._pool_size)
        try:
            async with asyncio.timeout(self._timeout_s):
                await gate.acquire()
        except TimeoutError:
            raise MaxConnectionsError(
                f"no connection to {node.name} free within {self._timeout_s} s "
                f"({self._pool_size} in use)"
            ) from None
        try:
            yield
        finally:
            gate.release()
