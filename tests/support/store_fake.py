"""The service core's StorePort in memory, for unit tests of the service core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.alert_feed import AlertRecord, Cursor
from heartrate_serve.core.alerts import AlertRules, AlertState, step_alerts
from heartrate_serve.core.errors import StoreUnavailable
from heartrate_serve.store.store import Readings, WriteResult


class FakeStore:
    """The StorePort in memory: user -> {ts_ms: (bpm, class)}; same (user, ts) is a duplicate."""

    def __init__(self) -> None:
        self.readings: dict[str, dict[int, tuple[int, int]]] = {}
        self.states: dict[str, AlertState] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.rules = AlertRules()
        self.writes_down = False  # write_batch raises StoreUnavailable
        self.reads_down = False  # get_profiles raises StoreUnavailable
        self.writes: list[list[str]] = []  # users of each write_batch call
        self.events: list[AlertRecord] = []  # alert events, stream ids 1001-0, 1002-0, ...
        self._seq = 0
        self.webhook_starts: list[str] = []  # users whose profile webhook (re)started
        self._watchers: list[asyncio.Queue[AlertRecord]] = []

    def set_alert_rules(self, rules: AlertRules) -> None:
        self.rules = rules

    async def write_batch(
        self,
        user_ids: Sequence[str],
        ts_ms: NDArray[np.int64],
        bpm: NDArray[np.int32],
        classification: NDArray[np.uint8],
        now_ms: int,
    ) -> WriteResult:
        if self.writes_down:
            raise StoreUnavailable("fake store: write refused")
        self.writes.append(list(user_ids))
        duplicate = np.zeros(len(user_ids), dtype=np.bool_)
        new: dict[str, list[int]] = {}
        cols = zip(user_ids, ts_ms.tolist(), bpm.tolist(), classification.tolist(), strict=True)
        for i, (user, ts, b, c) in enumerate(cols):
            mine = self.readings.setdefault(user, {})
            if ts in mine:
                duplicate[i] = True
                continue
            mine[ts] = (b, c)
            new.setdefault(user, []).append(i)
        alerts: dict[str, tuple[int, int]] = {}
        for user in dict.fromkeys(user_ids):
            idx = np.asarray(new.get(user, []), dtype=np.intp)
            state, events = step_alerts(
                self.states.get(user, AlertState()), ts_ms[idx], classification[idx], self.rules
            )
            self.states[user] = state
            by_ts = dict(zip(ts_ms.tolist(), bpm.tolist(), strict=True))
            for event in events:
                self._event(user, event.alert_type, event.kind == "raised", event.ts_ms, by_ts)
            alerts[user] = (state.active, state.since_ms)
        return WriteResult(duplicate, alerts)

    def _readings(self, items: list[tuple[int, tuple[int, int]]]) -> Readings:
        return Readings(
            np.array([t for t, _ in items], dtype=np.int64),
            np.array([b for _, (b, _c) in items], dtype=np.int32),
            np.array([c for _, (_b, c) in items], dtype=np.uint8),
        )

    async def recent(self, user_id: str, n: int) -> Readings:
        items = sorted(self.readings.get(user_id, {}).items(), reverse=True)
        return self._readings(items[:n])

    async def range(
        self, user_id: str, from_ms: int, to_ms: int, limit: int | None = None
    ) -> Readings:
        items = sorted(self.readings.get(user_id, {}).items())
        items = [(t, v) for t, v in items if from_ms <= t <= to_ms]
        return self._readings(items if limit is None else items[:limit])

    async def alert_state(self, user_id: str) -> AlertState:
        return self.states.get(user_id, AlertState())

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        return self.profiles.get(user_id)

    async def set_profile(self, user_id: str, profile: Mapping[str, Any]) -> None:
        self.profiles[user_id] = dict(profile)

    async def start_user_webhook(self, user_id: str) -> None:
        self.webhook_starts.append(user_id)

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if self.reads_down:
            raise StoreUnavailable("fake store: read refused")
        return {u: self.profiles[u] for u in user_ids if u in self.profiles}

    async def ping(self) -> bool:
        return not (self.writes_down or self.reads_down)

    async def aclose(self) -> None:
        return None

    def _event(
        self, user: str, alert_type: int, active: bool, ts: int, bpm: dict[int, int]
    ) -> None:
        self._seq += 1
        record = AlertRecord((1_000 + self._seq, 0), user, alert_type, active, ts, bpm[ts])
        self.events.append(record)
        for queue in self._watchers:
            queue.put_nowait(record)

    async def watch_alerts(
        self, users: Sequence[str], after: Cursor | None
    ) -> AsyncIterator[AlertRecord]:
        """Stored events after the cursor (by stream id), then live ones, of `users`."""
        if self.reads_down:
            raise StoreUnavailable("fake store: read refused")
        queue: asyncio.Queue[AlertRecord] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            if after is not None:
                for record in list(self.events):
                    if record.user_id in users and record.stream_id > after.stream_id:
                        yield record
            while True:
                record = await queue.get()
                if record.user_id in users:
                    yield record
        finally:
            self._watchers.remove(queue)

    def stored(self, user: str) -> dict[int, int]:
        """ts -> bpm of a user's stored readings."""
        return {t: b for t, (b, _c) in self.readings.get(user, {}).items()}
