"""ordered_map: pipelined work within one stream, answered in order."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from heartrate_serve.service.ordered_window import ordered_map


async def _items(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def test_answers_come_in_input_order_despite_uneven_work() -> None:
    """Later items that finish first are still yielded after earlier ones."""
    rng = random.Random(1)

    async def work(i: int) -> int:
        await asyncio.sleep(rng.random() / 200)
        return i * 10

    assert [r async for r in ordered_map(_items(100), work, window=8)] == [
        i * 10 for i in range(100)
    ]


async def test_work_overlaps_up_to_the_window() -> None:
    """Up to `window` items are in flight together, never more."""
    running, peak = 0, 0

    async def work(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return i

    out = [r async for r in ordered_map(_items(50), work, window=4)]
    assert out == list(range(50))
    assert peak == 4


async def test_error_of_one_item_reaches_the_consumer() -> None:
    """An exception in fn surfaces at that item's position."""

    async def work(i: int) -> int:
        if i == 3:
            raise ValueError("boom")
        return i

    got = []
    with pytest.raises(ValueError, match="boom"):
        async for r in ordered_map(_items(10), work, window=4):
            got.append(r)
    assert got == [0, 1, 2]


async def test_consumer_stopping_early_cancels_pending_work() -> None:
    """Breaking out of the loop cancels work already started for later items."""
    started: list[int] = []
    cancelled: list[int] = []

    async def work(i: int) -> int:
        started.append(i)
        try:
            await asyncio.sleep(0 if i == 0 else 1)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    agen = ordered_map(_items(10), work, window=4)
    assert await agen.__anext__() == 0
    await agen.aclose()
    await asyncio.sleep(0)
    assert cancelled and set(cancelled) <= set(started) - {0}
