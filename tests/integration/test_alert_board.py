"""The dashboard's alert board on real Redis (single and Cluster): filled by a SCAN of the alert
hashes, kept current by the live events, rescanned after a lost subscription, and the newest
reading of the users it lists."""

from __future__ import annotations

import asyncio

import numpy as np

from heartrate_serve.store.alert_board import ActiveAlert, AlertBoard, Newest
from heartrate_serve.store.store import ReadingStore

NOW_MS = 1_700_000_000_000
T0 = NOW_MS - 3_600_000
N, LOW, HIGH = 0, 1, 2
BPM = {N: 70, LOW: 45, HIGH: 160}
GUARD_S = 5.0


async def write(store: ReadingStore, user: str, ts: list[int], cls: list[int]) -> None:
    await store.write_batch(
        [user] * len(ts),
        np.array(ts, np.int64),
        np.array([BPM[c] + i for i, c in enumerate(cls)], np.int32),
        np.array(cls, np.uint8),
        NOW_MS,
    )


async def until(board: AlertBoard, want: set[str]) -> list[ActiveAlert]:
    """The board's rows once its users are `want` (fails after GUARD_S)."""
    async with asyncio.timeout(GUARD_S):
        while True:
            rows = await board.active()
            if {r.user_id for r in rows} == want:
                return rows
            await asyncio.sleep(0.02)


async def test_the_board_starts_from_a_scan_and_follows_live_events(store: ReadingStore) -> None:
    await write(store, "hi", [T0, T0 + 1000], [N, HIGH])
    await write(store, "lo", [T0], [LOW])
    await write(store, "gone", [T0, T0 + 1000, T0 + 2000, T0 + 3000], [HIGH, N, N, N])
    await write(store, "calm", [T0], [N])
    for i in range(600):  # more alert hashes than one SCAN batch reads
        await write(store, f"n{i}", [T0], [N])
    board = AlertBoard(store)
    rows = await board.active()
    assert rows == [ActiveAlert("hi", HIGH, T0 + 1000), ActiveAlert("lo", LOW, T0)]  # newest first
    assert board.scans == 1
    await write(store, "new", [T0 + 5000], [HIGH])  # raised: arrives as an event
    await write(store, "lo", [T0 + 1000, T0 + 2000, T0 + 3000], [N, N, N])  # cleared
    rows = await until(board, {"hi", "new"})
    assert rows[0] == ActiveAlert("new", HIGH, T0 + 5000)
    assert board.scans == 1  # no rescan: the events did it
    await write(store, "hi", [T0 + 2000], [LOW])  # LOW over HIGH: a clear then a raise
    async with asyncio.timeout(GUARD_S):  # the same users: wait for the change itself
        while ActiveAlert("hi", LOW, T0 + 2000) not in (rows := await board.active()):
            await asyncio.sleep(0.02)
    assert {r.user_id for r in rows} == {"hi", "new"}


async def test_a_lost_subscription_rescans_on_the_next_read(store: ReadingStore) -> None:
    board = AlertBoard(store)
    assert await board.active() == []
    await store.alerts.aclose()  # no more events reach the board ...
    await write(store, "missed", [T0], [HIGH])
    board.resync()  # ... as after a lost subscription: the hub calls resync
    assert [r.user_id for r in await board.active()] == ["missed"]
    assert board.scans == 2


async def test_newest_reading_of_each_user(store: ReadingStore) -> None:
    await write(store, "a", [T0, T0 + 1000, T0 + 2000], [N, HIGH, HIGH])
    board = AlertBoard(store)
    assert await board.newest(["a", "nobody", "a"]) == {"a": Newest(T0 + 2000, 162)}
