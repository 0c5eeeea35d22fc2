"""Group commit: concurrent submissions coalesce into rounds, processed in two pipelined stages.

Whenever fewer than `max_rounds` rounds are open (started, not yet committed), everything waiting
becomes the next round (up to `max_weight`, counted in readings, not callers). A round runs
`prepare` (e.g. validation on another deployment) while earlier rounds are still being prepared
or run `commit` (e.g. the Redis write); commits run one at a time, in round order. While all
rounds are open, new submissions wait and coalesce into the next round. At low load a
submission is processed at once (no added wait); at high load rounds grow by themselves, so
per-call costs (a deployment hop, a Redis round trip) are paid once per round.

Linger (`linger_s` > 0, for a `prepare` with a fixed cost per call such as a deployment hop):
callers that each wait for their answer before sending again (streams, unary clients) come back
in bursts, one burst per committed round. Without a linger the first caller of a burst takes the
free stage alone and the rest of the burst waits a whole `prepare` for the next round (measured
at 16 streams: a third of the rounds held 1-3 readings). With it, a round starts once every
caller that is neither in an open round nor queued has come back, i.e. when queued + in flight
reaches the most seen at once in the last second or two, or when the oldest queued item has
waited `linger_s`, or when the queue holds `max_weight`. A lone caller never waits (it is the
whole concurrency); a caller among many waits at most `linger_s`.

Waiting work is bounded in weight (`max_queued_weight`): a submission that would take the queue
beyond it raises Overloaded at once (shed, not queued; an empty queue takes any one item).

A stage returns one result per item; a result that is an exception is raised to that item's
caller alone, so a failure in one part of a round reaches only the callers of that part. An
exception raised by a stage itself reaches every caller of the round, and no other round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar, cast

from heartrate_serve.core.errors import Overloaded

# The linger's concurrency is the most callers queued or in flight at once in the current window
# of this many seconds or the one before it.
PEAK_WINDOW_S = 1.0

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
        max_rounds: int = 2,
        max_preparing: int | None = None,
        on_round: Callable[[int, int], None] | None = None,
        max_queued_weight: int | None = None,
        what: str = "readings",
        linger_s: float = 0.0,
    ) -> None:
        self.max_queued_weight = max_queued_weight
        self._what = what
        self._prepare = prepare
        self._commit = commit
        self._weight = weight
        self._max_weight = max_weight
        self._max_rounds = max_rounds
        self._max_preparing = max_rounds if max_preparing is None else max_preparing
        self._preparing = 0
        self._on_round = on_round
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._queued_weight = 0
        self._open = 0
        self._scheduled = False
        # The newest round's task: the next round commits after it.
        self._last: asyncio.Task[None] | None = None
        self._rounds: set[asyncio.Task[None]] = set()
        self._linger_s = linger_s
        self._in_flight = 0  # callers in open rounds
        self._peak = 0  # most callers in flight or queued at once, this window
        self._last_peak = 0  # the same, previous window
        self._window_end = 0.0
        self._queued_at = 0.0  # when the oldest queued item arrived
        self._timer: asyncio.TimerHandle | None = None

    @property
    def queued_weight(self) -> int:
        """Weight (readings) waiting for a round."""
        return self._queued_weight

    async def submit(self, item: T) -> R:
        """Queues item and waits for its own result (or its part's exception); raises
        Overloaded instead when the queue would grow beyond max_queued_weight."""
        weight = self._weight(item)
        bound = self.max_queued_weight
        if bound is not None and self._queued_weight and self._queued_weight + weight > bound:
            raise Overloaded(
                f"the service is at capacity: {self._queued_weight} {self._what} are waiting "
                f"(max_queued_readings {bound}); retry later"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if not self._queue:
            self._queued_at = loop.time()
        self._queue.append((item, future))
        self._queued_weight += weight
        if not self._scheduled:  # submissions of this event-loop turn join one round
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start_rounds)
        return await future

    def _start_rounds(self) -> None:
        """Starts rounds from the queue while fewer than max_rounds are open."""
        self._scheduled = False
        while (
            self._queue and self._open < self._max_rounds and self._preparing < self._max_preparing
        ):
            if self._lingering():
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            batch = self._take_round()
            if not batch:
                continue
            self._open += 1
            self._preparing += 1
            self._in_flight += len(batch)
            task = asyncio.create_task(self._run_round(batch, self._last))
            self._last = task
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)

    def _lingering(self) -> bool:
        """True (and a timer set) while the next round should wait for more callers."""
        if self._linger_s <= 0 or self._queued_weight >= self._max_weight:
            return False
        loop = asyncio.get_running_loop()
        now = loop.time()
        present = len(self._queue) + self._in_flight
        if now >= self._window_end:
            # A window with no round in it (idle) leaves no peak behind.
            idle = now >= self._window_end + PEAK_WINDOW_S
            self._last_peak = 0 if idle else self._peak
            self._peak, self._window_end = present, now + PEAK_WINDOW_S
        self._peak = max(self._peak, present)
        if present >= max(self._last_peak, self._peak):
            return False  # every caller seen lately is queued or in a round
        left = self._queued_at + self._linger_s - now
        if left <= 0:
            return False
        if self._timer is None:
            self._timer = loop.call_later(left, self._linger_over)
        return True

    def _linger_over(self) -> None:
        self._timer = None
        self._start_rounds()

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
        if self._queue:
            self._queued_at = asyncio.get_running_loop().time()
        return [(item, fut) for item, fut in batch if not fut.cancelled()]

    async def _run_round(
        self, batch: list[tuple[T, asyncio.Future[R]]], previous: asyncio.Task[None] | None
    ) -> None:
        items = [item for item, _ in batch]
        if self._on_round is not None:
            self._on_round(len(items), sum(self._weight(it) for it in items))
        try:
            prepared: P | None = None
            try:
                prepared = await self._prepare(items)
                failed = False
            except Exception as error:
                _fail_all(batch, error)
                failed = True
            finally:
                self._preparing -= 1
                self._start_rounds()
            if previous is not None:
                await asyncio.wait([previous])  # commits stay in round order, one at a time
            if not failed:
                await self._run_commit(batch, cast(P, prepared))
        finally:
            self._open -= 1
            self._in_flight -= len(batch)
            self._start_rounds()

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


async def no_commit(
    items: Sequence[object], prepared: Sequence[R | BaseException]
) -> Sequence[R | BaseException]:
    """A `commit` stage that hands prepare's per-item results through."""
    return prepared
