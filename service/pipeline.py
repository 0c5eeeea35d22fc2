"""The ingress's reading pipeline: group-committed validation and storage of readings.

Readings from every concurrent unary call, stream and batch join one GroupCommit queue. Each round
sends all waiting readings to the validator in one call and to Redis in one script call, then
splits the answers back per caller.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.constants import RejectReason
from heartrate_serve.service.group_commit import GroupCommit
from heartrate_serve.service.metrics import current
from heartrate_serve.store.store import ReadingStore, StoreUnavailable

# (bpm, ts_ms, now_ms, normal_low, normal_high) -> (reason, classification); 0 in the band arrays
# means "the validator's default band".
ValidateFn = Callable[
    [NDArray[np.int32], NDArray[np.int64], int, NDArray[np.int32], NDArray[np.int32]],
    Awaitable[tuple[NDArray[np.uint8], NDArray[np.uint8]]],
]


@dataclass(frozen=True)
class ReadingBatch:
    """Readings of one user from one call (a unary call or stream message is a batch of one)."""

    user_id: str
    bpm: NDArray[np.int32]
    ts_ms: NDArray[np.int64]


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to each reading of a ReadingBatch, in its order."""

    reason: NDArray[np.uint8]
    classification: NDArray[np.uint8]
    duplicate: NDArray[np.bool_]
    # The user's (alert type, since_ms) after the batch; None when nothing reached the store.
    alert: tuple[int, int] | None
    store_down: bool


class ProfileBands:
    """Per-user normal bands from profiles, cached for ttl_s (a profile change on another
    replica takes effect within ttl_s)."""

    def __init__(self, store: ReadingStore, ttl_s: float) -> None:
        self._store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, int, int]] = {}

    def forget(self, user_id: str) -> None:
        """Drops a cached band (after this replica changed the user's profile)."""
        self._cache.pop(user_id, None)

    async def bands(self, user_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(normal_low, normal_high) per user, 0 = server default."""
        now = time.monotonic()
        missing = [u for u in set(user_ids) if self._cache.get(u, (0.0,))[0] <= now]
        if missing:
            profiles = await self._store.get_profiles(missing)
            for user in missing:
                p: dict[str, Any] = profiles.get(user) or {}
                low, high = int(p.get("normal_low_bpm", 0)), int(p.get("normal_high_bpm", 0))
                self._cache[user] = (now + self.ttl_s, low, high)
            if len(self._cache) > 100_000:  # bound memory: expired entries go first
                self._cache = {u: v for u, v in self._cache.items() if v[0] > now}
        return {u: self._cache[u][1:] for u in user_ids}


class ReadingPipeline:
    """Validates and stores readings in group-committed batches."""

    def __init__(
        self,
        store: ReadingStore,
        validate: ValidateFn,
        bands: ProfileBands,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._validate = validate
        self._bands = bands
        self._clock_ms = clock_ms
        self._commit: GroupCommit[ReadingBatch, BatchOutcome] = GroupCommit(
            self._process, on_batch=on_batch
        )

    async def submit(self, batch: ReadingBatch, rpc: str = "other") -> BatchOutcome:
        """Validates and stores one caller's readings together with everyone else's."""
        out = await self._commit.submit(batch)
        current().outcome(rpc, out.reason, out.duplicate)  # counted per RPC
        return out

    async def _process(self, items: Sequence[ReadingBatch]) -> list[BatchOutcome]:
        sizes = np.fromiter((len(it.bpm) for it in items), dtype=np.int64, count=len(items))
        owner = np.repeat(np.arange(len(items)), sizes)
        bpm = np.concatenate([it.bpm for it in items]).astype(np.int32, copy=False)
        ts_ms = np.concatenate([it.ts_ms for it in items]).astype(np.int64, copy=False)
        now_ms = self._clock_ms()
        try:
            bands = await self._bands.bands([it.user_id for it in items])
        except StoreUnavailable:
            return [_unavailable(len(it.bpm)) for it in items]
        lows = np.array([bands[it.user_id][0] for it in items], dtype=np.int32)[owner]
        highs = np.array([bands[it.user_id][1] for it in items], dtype=np.int32)[owner]
        current().batch(len(items), len(bpm))
        reason, cls = await self._validate(bpm, ts_ms, now_ms, lows, highs)
        reason = reason.copy()
        valid = reason == 0
        duplicate = np.zeros(len(bpm), dtype=np.bool_)
        alerts: dict[str, tuple[int, int]] = {}
        store_down = False
        if valid.any():
            users = [items[i].user_id for i in owner[valid]]
            try:
                result = await self._store.write_batch(
                    users, ts_ms[valid], bpm[valid], cls[valid], now_ms
                )
                duplicate[valid] = result.duplicate
                alerts = result.alerts
                current().alerts(result.events, result.alerts)
            except StoreUnavailable:
                reason[valid] = RejectReason.STORE_UNAVAILABLE
                store_down = True
        return _split(items, sizes, reason, cls, duplicate, alerts, store_down)


def _split(
    items: Sequence[ReadingBatch],
    sizes: NDArray[np.int64],
    reason: NDArray[np.uint8],
    cls: NDArray[np.uint8],
    duplicate: NDArray[np.bool_],
    alerts: dict[str, tuple[int, int]],
    store_down: bool,
) -> list[BatchOutcome]:
    """Cuts the batch-wide arrays back into one outcome per caller."""
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    out = []
    for i, item in enumerate(items):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        alert = alerts.get(item.user_id)
        out.append(BatchOutcome(reason[lo:hi], cls[lo:hi], duplicate[lo:hi], alert, store_down))
    return out


def _unavailable(n: int) -> BatchOutcome:
    """An outcome for readings that could not be stored because Redis is down."""
    reason = np.full(n, RejectReason.STORE_UNAVAILABLE, dtype=np.uint8)
    zeros = np.zeros(n, dtype=np.uint8)
    return BatchOutcome(reason, zeros, np.zeros(n, dtype=np.bool_), None, True)


class ServerStamps:
    """Server-assigned timestamps (readings sent with timestamp 0) kept strictly increasing per
    user, so two such readings in the same millisecond are not mistaken for a resubmission."""

    def __init__(self, max_users: int = 100_000) -> None:
        self._last: dict[str, int] = {}
        self._max_users = max_users

    def fix(self, batch: ReadingBatch, stamped: NDArray[np.bool_]) -> ReadingBatch:
        """Returns batch with its server-stamped readings made unique and increasing."""
        n = int(stamped.sum())
        if n == 0:
            return batch
        start = max(int(batch.ts_ms[stamped].min()), self._last.get(batch.user_id, 0) + 1)
        ts = batch.ts_ms.copy()
        ts[stamped] = start + np.arange(n, dtype=np.int64)
        if len(self._last) >= self._max_users:
            self._last.clear()  # only collisions within one millisecond depend on this memory
        self._last[batch.user_id] = start + n - 1
        return ReadingBatch(batch.user_id, batch.bpm, ts)
