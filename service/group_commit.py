"""Group commit: concurrent submissions coalesce into one batch per round.

Whenever the previous batch is done, everything that arrived meanwhile is processed in one call.
At low load a submission is processed at once (no added wait); at high load batches grow by
themselves, so the per-call costs (a deployment hop, a Redis round trip) are paid once per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Runs `process` over batches of submitted items, one batch at a time."""

    def __init__(
        self,
        process: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_items: int = 20_000,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._process = process
        self._max_items = max_items
        self._on_batch = on_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queues item and waits for its own result (or the batch's exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_items]
            del self._queue[: self._max_items]
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if live:
                await self._run(live)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            results = await self._process([item for item, _ in batch])
        except Exception as error:  # handed to every caller of this batch
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(error)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
