"""The readings store: the only module (with its helpers in store/) that talks to Redis.

Key schema and layout: store/keys.py. Writes are store.lua (one EVALSHA per slot and ≤5 000
readings, see store/write_plan.py); reads are read.lua (hot part and compacted chunks of a user in
one atomic step); compaction (store/compaction.py) moves closed chunks of the hot sorted sets into
compressed blobs (store/codec.py). REDIS_URL may name a single Redis or any node of a Redis Cluster
(store/redis_client.py detects which).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.alerts import AlertRules, AlertState
from heartrate_serve.core.errors import StoreUnavailable
from heartrate_serve.service.metrics import redis_timed
from heartrate_serve.settings import Settings
from heartrate_serve.store import write_plan
from heartrate_serve.store.codec import CorruptChunk, decode_chunk
from heartrate_serve.store.compaction import Compactor
from heartrate_serve.store.keys import (
    ALERT_KEY,
    CHUNK_MS,
    CHUNKS_KEY,
    MAX_TS_MS,
    PIN_KEY,
    PIN_MS,
    PROFILE_KEY,
    READINGS_KEY,
    chunk_start,
)
from heartrate_serve.store.readings import Readings, merge_read
from heartrate_serve.store.redis_client import RedisClient, connect, store_errors

log = logging.getLogger(__name__)

_SCRIPTS = resources.files("heartrate_serve.store")
WRITE_SCRIPT = (_SCRIPTS / "store.lua").read_text(encoding="utf-8")
READ_SCRIPT = (_SCRIPTS / "read.lua").read_text(encoding="utf-8")
# A write whose users' compacted chunks keep changing under it (a compaction between its calls)
# is tried this many times before it answers StoreUnavailable.
WRITE_ATTEMPTS = 8
# Between such attempts a random pause of up to this many seconds times the attempt number, so
# that a sweep rewriting the same chunks gets past (sweeps run every COMPACT_INTERVAL_S).
WRITE_BACKOFF_S = 0.002
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
        self._write_sha: str | None = None
        self._read_sha: str | None = None

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
            result, alerts, events = await self._write_sorted(conn, s, users, now_ms)
        duplicate = np.empty(n, dtype=np.bool_)
        duplicate[s.order] = result == write_plan.DUPLICATE
        return WriteResult(
            duplicate,
            {users[c]: a for c, a in alerts.items()},
            {users[c]: e for c, e in events.items()},
        )

    async def _write_sorted(
        self, conn: RedisClient, s: write_plan.Sorted, users: list[str], now_ms: int
    ) -> tuple[NDArray[np.uint8], dict[int, tuple[int, int]], dict[int, tuple[int, int]]]:
        """Runs store.lua until no reading is left 'not looked at'; a code per sorted reading."""
        params = self._params(now_ms)
        result = np.zeros(len(s.members), np.uint8)
        todo = np.ones(len(s.members), np.bool_)
        checked: dict[int, str] = {}
        alerts: dict[int, tuple[int, int]] = {}
        events: dict[int, tuple[int, int]] = {}
        for attempt in range(WRITE_ATTEMPTS):
            if attempt >= 2:  # a compaction changed a chunk between search and write
                await asyncio.sleep(random.uniform(0, WRITE_BACKOFF_S * attempt))
            idx = np.flatnonzero(todo)
            sub = write_plan.Sorted(
                s.order[idx], s.codes[idx], s.slots[idx], [s.members[i] for i in idx.tolist()]
            )
            calls = write_plan.plan_calls(sub, users, params, checked)
            replies = await self._run_write(conn, calls)
            out = write_plan.read_replies(calls, replies)
            result[idx] = out.codes
            alerts.update(out.alerts)
            for code, (up, down) in out.events.items():
                old_up, old_down = events.get(code, (0, 0))
                events[code] = (old_up + up, old_down + down)
            blocked = out.codes == write_plan.NOT_LOOKED_AT
            todo[idx[~blocked]] = False
            if not blocked.any():
                return result, alerts, events
            plan = write_plan.search_plan(sub, blocked, chunk_start)
            if attempt >= 1:  # lost a race with compaction: pause it for these users
                await self._pin(conn, [users[code] for code in plan])
            found, checked = await self._search_chunks(conn, users, plan)
            for j in np.flatnonzero(blocked).tolist():
                code, ts = int(sub.codes[j]), int(sub.members[j][:13])
                if ts in found.get(code, ()):
                    result[idx[j]] = write_plan.DUPLICATE
                    todo[idx[j]] = False
        raise StoreUnavailable(
            f"compaction changed the chunks of this write {WRITE_ATTEMPTS} times in a row; retry"
        )

    async def _pin(self, conn: RedisClient, users: list[str]) -> None:
        """Pauses compaction of these users for PIN_MS (compact.lua checks the pin key)."""
        replies = await conn.run_many(
            [("SET", PIN_KEY.format(user=u), 1, "PX", PIN_MS) for u in users]
        )
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    async def _run_write(self, conn: RedisClient, calls: list[write_plan.Call]) -> list[Any]:
        self._write_sha = self._write_sha or await conn.load_script(WRITE_SCRIPT)
        replies = await conn.evalsha_many(
            self._write_sha, WRITE_SCRIPT, [(c.keys, c.args) for c in calls]
        )
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _search_chunks(
        self, conn: RedisClient, users: list[str], plan: dict[int, list[int]]
    ) -> tuple[dict[int, set[int]], dict[int, str]]:
        """Timestamps stored in the given compacted chunks, and the checked_u text per user."""
        wanted = [(code, start) for code, starts in plan.items() for start in starts]
        blobs = await conn.run_many(
            [("ZRANGEBYSCORE", CHUNKS_KEY.format(user=users[c]), s, s) for c, s in wanted]
        )
        for reply in blobs:
            if isinstance(reply, Exception):
                raise reply
        found: dict[int, set[int]] = {code: set() for code in plan}
        checked: dict[int, list[str]] = {code: [] for code in plan}
        for (code, start), members in zip(wanted, blobs, strict=True):
            if not members:
                continue  # not compacted (any more): the hot part holds the whole chunk
            blob = bytes(members[0])
            checked[code].append(f"{start}={_sha1(blob)}")
            try:
                found[code].update(decode_chunk(blob)[0].tolist())
            except CorruptChunk as error:
                # Stored anyway (in the hot part): better a possible duplicate than a lost reading.
                log.error("user %r, chunk %d: cannot search it for duplicates: %s",
                          users[code], start, error)  # fmt: skip
        return found, {code: ",".join(texts) for code, texts in checked.items()}

    def _params(self, now_ms: int) -> list[int]:
        """The fixed ARGV head of store.lua: now_ms, retention_ms, sustain_ms, clear_readings."""
        rules = self._rules
        return [int(now_ms), self._retention_ms, rules.sustain_ms, rules.clear_readings]

    async def _read(self, op: str, user_id: str, args: list[Any]) -> Readings:
        keys = [k.format(user=user_id) for k in (READINGS_KEY, CHUNKS_KEY, ALERT_KEY)]
        with _guard(op):
            conn = await self.client()
            self._read_sha = self._read_sha or await conn.load_script(READ_SCRIPT)
            (reply,) = await conn.evalsha_many(self._read_sha, READ_SCRIPT, [(keys, args)])
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

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored profiles of the given users (users without one are absent); MGET per slot."""
        unique = list(dict.fromkeys(user_ids))
        if not unique:
            return {}
        with _guard("get_profiles"):
            conn = await self.client()
            raws = await conn.mget([PROFILE_KEY.format(user=u) for u in unique])
        return {u: dict(json.loads(r)) for u, r in zip(unique, raws, strict=True) if r is not None}

    async def ping(self) -> bool:
        """True when Redis answers PING; False (never an exception) when it does not."""
        try:
            conn = await self.client()
        except StoreUnavailable:
            return False
        return await conn.ping()

    async def aclose(self) -> None:
        """Closes the client and every pooled connection."""
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


def _sha1(blob: bytes) -> str:
    """Hex sha1 as Redis Lua's redis.sha1hex gives it."""
    return hashlib.sha1(blob, usedforsecurity=False).hexdigest()


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
