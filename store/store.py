"""The readings store: the only module (with its helpers in store/) that talks to Redis.

Key schema and layout: store/keys.py. Writes are store.lua (one EVALSHA per slot and ≤5 000
readings, see store/write_plan.py); reads are read.lua (hot part and compacted chunks of a user in
one atomic step); compaction (store/compaction.py) moves closed chunks of the hot sorted sets into
compressed blobs (store/codec.py). REDIS_URL may name a single Redis or any node of a Redis Cluster
(store/redis_connect.py detects which).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.alert_feed import AlertRecord, Cursor
from heartrate_serve.core.alerts import AlertRules, AlertState
from heartrate_serve.core.errors import StoreUnavailable
from heartrate_serve.service.metrics import redis_timed
from heartrate_serve.settings import Settings
from heartrate_serve.store import write_plan
from heartrate_serve.store.alert_hub import AlertHub
from heartrate_serve.store.compaction import Compactor
from heartrate_serve.store.keys import (
    ALERT_KEY,
    CHUNK_MS,
    CHUNKS_KEY,
    MAX_TS_MS,
    PROFILE_KEY,
    READINGS_KEY,
)
from heartrate_serve.store.readings import Readings, merge_read
from heartrate_serve.store.redis_client import RedisClient, store_errors
from heartrate_serve.store.redis_connect import connect
from heartrate_serve.store.webhook_state import USER_TARGET, WebhookState
from heartrate_serve.store.writes import write_sorted

log = logging.getLogger(__name__)

_SCRIPTS = resources.files("heartrate_serve.store")
READ_SCRIPT = (_SCRIPTS / "read.lua").read_text(encoding="utf-8")
READ_SHA = hashlib.sha1(READ_SCRIPT.encode(), usedforsecurity=False).hexdigest()
_ALERT_FIELDS = tuple(f.name for f in fields(AlertState))

__all__ = ["ALERT_KEY", "READINGS_KEY", "ReadingStore", "Readings", "StoreUnavailable"]
__all__ += ["WriteResult"]


@dataclass(frozen=True)
class WriteResult:
    """Outcome of write_batch: per reading in caller order, per user after the batch."""

    duplicate: NDArray[np.bool_]
    alerts: dict[str, tuple[int, int]]  # user -> (active alert type, since_ms) after the batch
    events: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (raised, cleared)


@redis_timed  # latency and errors of every Redis call, by op
@contextlib.contextmanager
def _guard(op: str) -> Iterator[None]:
    """Turns 'Redis (or a cluster node) is not there' errors into StoreUnavailable."""
    with store_errors(op):
        yield


class ReadingStore:
    """Readings, alert state and profiles of all users, in Redis or a Redis Cluster."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 64,
        timeout_s: float = 2.0,
        retention_ms: int,
        alert_rules: AlertRules,
        compact_interval_s: float = 0.0,
        compact_grace_ms: int = 120_000,
    ) -> None:
        """compact_interval_s > 0 starts compaction (store/compaction.py) in the background on
        first use, one sweep per interval; 0: call `compactor()` yourself (tests, tools)."""
        self._compact_interval_s = compact_interval_s
        self._compact_grace_ms = compact_grace_ms
        self._compaction: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._url, self._pool_size, self._timeout_s = url, pool_size, timeout_s
        self._retention_ms = retention_ms
        self._rules = alert_rules
        self._conn: RedisClient | None = None
        self._connecting = asyncio.Lock()
        self.alerts = AlertHub(self.client)

    @classmethod
    def from_settings(cls, settings: Settings, alert_rules: AlertRules) -> ReadingStore:
        """A store configured from the process settings (redis_url must be set)."""
        if not settings.redis_url:
            raise ValueError("settings.redis_url is not set (the launcher sets it)")
        return cls(
            settings.redis_url,
            pool_size=settings.redis_pool_size,
            timeout_s=settings.redis_timeout_s,
            retention_ms=settings.retention_days * 86_400_000,  # ms per day
            alert_rules=alert_rules,
            compact_interval_s=settings.compact_interval_s,
            compact_grace_ms=int(settings.compact_grace_s * 1000),
        )

    @property
    def retention_ms(self) -> int:
        """Readings older than this (relative to a write's now) are removed."""
        return self._retention_ms

    async def client(self) -> RedisClient:
        """The Redis client, connected (and single or cluster mode detected) on first use."""
        if self._conn is None:
            async with self._connecting:
                if self._conn is None:
                    with _guard("connect"):
                        self._conn = await connect(
                            self._url, pool_size=self._pool_size, timeout_s=self._timeout_s
                        )
                    if self._compact_interval_s > 0:
                        run = (await self.compactor()).run(self._compact_interval_s, self._stop)
                        self._compaction = asyncio.create_task(run, name="compaction")
        return self._conn

    async def compactor(self) -> Compactor:
        """A Compactor on this store's connection and retention."""
        return Compactor(
            await self.client(), retention_ms=self._retention_ms, grace_ms=self._compact_grace_ms
        )

    def set_alert_rules(self, rules: AlertRules) -> None:
        """Uses `rules` for all later writes."""
        self._rules = rules

    async def write_batch(
        self,
        user_ids: Sequence[str],
        ts_ms: NDArray[np.int64],
        bpm: NDArray[np.int32],
        classification: NDArray[np.uint8],
        now_ms: int,
    ) -> WriteResult:
        """Stores readings of any users in any order; results in caller order.

        One pipelined round trip on one Redis (one per node in parallel on a cluster); users with
        readings in an already compacted chunk take one more (their chunks are searched)."""
        n = len(user_ids)
        if not len(ts_ms) == len(bpm) == len(classification) == n:
            raise ValueError("user_ids, ts_ms, bpm and classification differ in length")
        if n == 0:
            return WriteResult(np.zeros(0, np.bool_), {})
        ts_ms, bpm, classification = _check_values(ts_ms, bpm, classification)
        codes: dict[str, int] = {}
        user_code = np.fromiter((codes.setdefault(u, len(codes)) for u in user_ids), np.int64, n)
        users = list(codes)
        with _guard("write_batch"):
            conn = await self.client()
            slots = np.array([conn.slot_of(READINGS_KEY.format(user=u)) for u in users], np.int64)
            s = write_plan.sort_readings(user_code, ts_ms, bpm, classification, slots)
            result, alerts, events = await write_sorted(conn, s, users, self._params(now_ms))
        duplicate = np.empty(n, dtype=np.bool_)
        duplicate[s.order] = result == write_plan.DUPLICATE
        return WriteResult(
            duplicate,
            {users[c]: a for c, a in alerts.items()},
            {users[c]: e for c, e in events.items()},
        )

    def _params(self, now_ms: int) -> list[int]:
        """The fixed ARGV head of store.lua: now_ms, retention_ms, sustain_ms, clear_readings."""
        rules = self._rules
        return [int(now_ms), self._retention_ms, rules.sustain_ms, rules.clear_readings]

    async def _read(self, op: str, user_id: str, args: list[Any]) -> Readings:
        keys = [k.format(user=user_id) for k in (READINGS_KEY, CHUNKS_KEY, ALERT_KEY)]
        with _guard(op):
            conn = await self.client()
            (reply,) = await conn.evalsha_many(READ_SHA, READ_SCRIPT, [(keys, args)])
            if isinstance(reply, Exception):
                raise reply
        hot, chunks, cut_ms = reply
        return merge_read(user_id, bytes(hot), cast(list[bytes], chunks), cut_ms)

    async def recent(self, user_id: str, n: int) -> Readings:
        """The user's newest n readings, newest first."""
        if n <= 0:
            return Readings.empty()
        return (await self._read("recent", user_id, ["recent", n])).newest(n)

    async def range(
        self, user_id: str, from_ms: int, to_ms: int, limit: int | None = None
    ) -> Readings:
        """The user's readings with from_ms <= ts_ms <= to_ms, ascending (at most `limit`)."""
        if to_ms < from_ms:
            return Readings.empty()
        readings = await self._read("range", user_id, ["range", from_ms, to_ms, CHUNK_MS])
        return readings.between(from_ms, to_ms).first(limit)

    async def alert_state(self, user_id: str) -> AlertState:
        """The user's alert state (all zero for a user never seen)."""
        with _guard("alert_state"):
            conn = await self.client()
            raw = await conn.call("HMGET", ALERT_KEY.format(user=user_id), *_ALERT_FIELDS)
        return AlertState(*(int(v or 0) for v in raw))  # HMGET answers in _ALERT_FIELDS order

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """The user's stored profile, None when there is none."""
        with _guard("get_profile"):
            conn = await self.client()
            raw = await conn.call("GET", PROFILE_KEY.format(user=user_id))
        return None if raw is None else dict(json.loads(raw))

    async def set_profile(self, user_id: str, profile: Mapping[str, Any]) -> None:
        """Stores (replaces) the user's profile."""
        data = json.dumps(dict(profile), separators=(",", ":"), sort_keys=True)
        with _guard("set_profile"):
            conn = await self.client()
            await conn.call("SET", PROFILE_KEY.format(user=user_id), data)

    async def start_user_webhook(self, user_id: str) -> None:
        """The user's (new) profile webhook gets the user's alert events from now on."""
        await WebhookState(await self.client()).start_from_newest(user_id, USER_TARGET)

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored profiles of the given users (users without one are absent); MGET per slot."""
        unique = list(dict.fromkeys(user_ids))
        if not unique:
            return {}
        with _guard("get_profiles"):
            conn = await self.client()
            raws = await conn.mget([PROFILE_KEY.format(user=u) for u in unique])
        return {u: dict(json.loads(r)) for u, r in zip(unique, raws, strict=True) if r is not None}

    def watch_alerts(
        self, users: Sequence[str], after: Cursor | None
    ) -> AsyncIterator[AlertRecord]:
        """The users' alert events (after `after`, then live): store/alert_hub.py."""
        return self.alerts.watch(users, after)

    async def ping(self) -> bool:
        """True when Redis answers PING; False (never an exception) when it does not."""
        try:
            conn = await self.client()
        except StoreUnavailable:
            return False
        return await conn.ping()

    async def aclose(self) -> None:
        """Closes the client and every pooled connection."""
        await self.alerts.aclose()
        if self._compaction is not None:
            self._stop.set()
            self._compaction.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compaction
            self._compaction = None
            self._stop = asyncio.Event()
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None


def _check_values(
    ts_ms: NDArray[np.int64], bpm: NDArray[np.int32], classification: NDArray[np.uint8]
) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.uint8]]:
    """The arrays as int64/int32/uint8; rejects values the member encoding cannot hold."""
    ts, bp, cl = np.asarray(ts_ms, np.int64), np.asarray(bpm, np.int32), np.asarray(classification)
    if int(ts.min()) < 0 or int(ts.max()) > MAX_TS_MS:
        raise ValueError(f"ts_ms must be in [0, {MAX_TS_MS}]")
    if int(cl.min()) < 0 or int(cl.max()) > 2:
        raise ValueError("classification must be 0 (NORMAL), 1 (LOW) or 2 (HIGH)")
    return ts, bp, cl.astype(np.uint8, copy=False)
