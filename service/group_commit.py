"""Group commit: concurrent submissions coalesce into one round, in two pipelined stages.

Whenever the previous round has left the first stage, everything that arrived meanwhile becomes
the next round (up to `max_weight`, counted in readings, not callers). A round runs `prepare`
(e.g. validation on another deployment) while the round before it runs `commit` (e.g. the Redis
write); commits run one at a time, in round order. At low load a submission is processed at once
(no added wait); at high load rounds grow by themselves, so per-call costs (a deployment hop, a
Redis round trip) are paid once per round.

A stage returns one result per item; a result that is an exception is raised to that item's
caller alone, so a failure in one part of a round reaches only the callers of that part. An
exception raised by a stage itself reaches every caller of the round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")  # a submitted item
P = TypeVar("P")  # what `prepare` hands to `commit` for the whole round
R = TypeVar("R")  # one item's result


class GroupCommit(Generic[T, P, R]):
    """Runs prepare/commit over rounds of submitted items; commits one round at a time."""

    def __init__(
        self,
        prepare: Callable[[Sequence[T]], Awaitable[P]],
        commit: Callable[[Sequence[T], P], Awaitable[Sequence[R | BaseException]]],
        *,
        weight: Callable[[T], int] = lambda _item: 1,
        max_weight: int = 20_000,
        on_round: Callable[[int, int], None] | None = None,
    ) -> None:
        self._prepare = prepare
        self._commit = commit
        self._weight = weight
        self._max_weight = max_weight
        self._on_round = on_round
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._queued_weight = 0
        self._drainer: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None

    @property
    def queued_weight(self) -> int:
        """Weight (readings) waiting for a round."""
        return self._queued_weight

    async def submit(self, item: T) -> R:
        """Queues item and waits for its own result (or its part's exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._queued_weight += self._weight(item)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    def _take_round(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The next round: queued items up to max_weight (always at least one item)."""
        taken, total = 0, 0
        for item, _ in self._queue:
            w = self._weight(item)
            if taken and total + w > self._max_weight:
                break
            taken, total = taken + 1, total + w
        batch = self._queue[:taken]
        del self._queue[:taken]
        self._queued_weight -= total
        return [(item, fut) for item, fut in batch if not fut.cancelled()]

    async def _drain(self) -> None:
        while True:
            if not self._queue:
                if self._committing is None:
                    return
                await self._committing  # items may arrive meanwhile: look again after it
                self._committing = None
                continue
            batch = self._take_round()
            if batch:
                await self._prepare_and_commit(batch)

    async def _prepare_and_commit(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        if self._on_round is not None:
            self._on_round(len(items), sum(self._weight(it) for it in items))
        try:
            prepared = await self._prepare(items)
        except Exception as error:
            _fail_all(batch, error)
            return
        if self._committing is not None:
            await self._committing  # commits stay in round order, one at a time
        self._committing = asyncio.create_task(self._run_commit(batch, prepared))

    async def _run_commit(self, batch: list[tuple[T, asyncio.Future[R]]], prepared: P) -> None:
        try:
            results = await self._commit([item for item, _ in batch], prepared)
        except Exception as error:
            _fail_all(batch, error)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue  # the caller gave up (cancelled); its readings were still processed
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)


def _fail_all(batch: Sequence[tuple[object, asyncio.Future[R]]], error: BaseException) -> None:
    """Hands a round-wide error to every caller still waiting."""
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(error)


async def no_prepare(items: Sequence[object]) -> None:
    """A `prepare` stage that does nothing (single-stage group commit)."""
    return None
