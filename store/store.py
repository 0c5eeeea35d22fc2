"""The readings store: the only module that talks to Redis.

Key schema (every key of a user carries the hash tag {<user_id>}, so all of a user's keys live in
one Redis Cluster slot):
  hr:{<user_id>}:readings  sorted set; score ts_ms, member "%013d:%d:%d" (ts_ms, bpm, class)
  hr:{<user_id>}:alert     hash; the AlertState fields (active, since_ms, pending, ...)
  hr:{<user_id>}:profile   string; the user's profile as JSON
A batch write is one Lua script (store.lua) over several users' keys: fine on one Redis; on Redis
Cluster the store would split each batch (and MGET of profiles) per slot.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any, cast

import numpy as np
import redis.asyncio as aioredis
from numpy.typing import NDArray
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from heartrate_serve.core.alerts import AlertRules, AlertState
from heartrate_serve.core.errors import StoreUnavailable
from heartrate_serve.service.metrics import redis_timed
from heartrate_serve.settings import Settings

# Sorted set of a user's readings: score ts_ms, member READING_MEMBER (ts_ms, bpm, class).
READINGS_KEY = "hr:{{{user}}}:readings"
# Hash of a user's alert state; fields are the AlertState field names.
ALERT_KEY = "hr:{{{user}}}:alert"
# String holding a user's profile as JSON.
PROFILE_KEY = "hr:{{{user}}}:profile"
# ts_ms as exactly 13 digits (Unix ms up to year 2286), so store.lua can cut it off by position.
READING_MEMBER = "{:013d}:{}:{}"
MAX_TS_MS = 10**13 - 1
# The batch-write script, shipped as package data next to this module.
SCRIPT_FILE = resources.files("heartrate_serve.store") / "store.lua"
# Readings per EVALSHA: keeps Lua's argument tables and one script's run time small.
CHUNK_READINGS = 5_000
HEALTH_CHECK_INTERVAL_S = 30  # idle seconds after which a pooled connection is PINGed on use
_ALERT_FIELDS = tuple(f.name for f in fields(AlertState))
# One EVALSHA of store.lua: (KEYS, ARGV, user codes in KEYS order).
_Call = tuple[list[str], list[Any], list[int]]
# Server replies that mean "Redis cannot take writes right now", not a bug in the request.
_UNAVAILABLE_REPLIES = ("MISCONF", "READONLY", "MASTERDOWN", "LOADING", "BUSY ")


__all__ = ["ReadingStore", "Readings", "StoreUnavailable", "WriteResult"]


@dataclass(frozen=True)
class WriteResult:
    """Outcome of write_batch: per reading in caller order, per user after the batch."""

    duplicate: NDArray[np.bool_]
    alerts: dict[str, tuple[int, int]]  # user -> (active alert type, since_ms) after the batch
    events: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (raised, cleared)


@dataclass(frozen=True)
class Readings:
    """Stored readings of one user."""

    ts_ms: NDArray[np.int64]
    bpm: NDArray[np.int32]
    classification: NDArray[np.uint8]


@redis_timed  # latency and errors of every Redis call, by op
@contextlib.contextmanager
def _guard(op: str) -> Iterator[None]:
    """Turns 'Redis is not there' errors into StoreUnavailable."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise StoreUnavailable(f"Redis is down or unreachable during {op}: {e}") from e
    except ResponseError as e:
        if str(e).startswith(_UNAVAILABLE_REPLIES):
            raise StoreUnavailable(f"Redis cannot serve {op} right now: {e}") from e
        raise


def _parse_members(members: Sequence[bytes]) -> Readings:
    """Decodes READING_MEMBER strings into arrays."""
    if not members:
        return Readings(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint8))
    cols = np.array(b":".join(members).split(b":")).reshape(-1, 3)
    return Readings(
        cols[:, 0].astype(np.int64), cols[:, 1].astype(np.int32), cols[:, 2].astype(np.uint8)
    )


class ReadingStore:
    """Readings, alert state and profiles of all users, in Redis."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 64,
        timeout_s: float = 2.0,
        retention_ms: int,
        alert_rules: AlertRules,
    ) -> None:
        # One retry after a short backoff: a dropped pooled connection (Redis restarted) is
        # reconnected transparently, and a dead Redis fails a call within ~2 * timeout_s.
        retry = Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=1)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=timeout_s,  # wait for a free pooled connection, s
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            retry=retry,
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._retention_ms = retention_ms
        self._rules = alert_rules
        self._script = SCRIPT_FILE.read_text(encoding="utf-8")
        self._sha: str | None = None

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
        """Stores readings of any users in any order; one round trip; results in caller order."""
        n = len(user_ids)
        if not len(ts_ms) == len(bpm) == len(classification) == n:
            raise ValueError("user_ids, ts_ms, bpm and classification differ in length")
        if n == 0:
            return WriteResult(np.zeros(0, np.bool_), {})
        ts_ms, bpm, classification = _check_values(ts_ms, bpm, classification)
        codes: dict[str, int] = {}
        user_code = np.fromiter((codes.setdefault(u, len(codes)) for u in user_ids), np.int64, n)
        users = list(codes)
        order = np.lexsort((ts_ms, user_code))  # stable: equal (user, ts) keep caller order
        cols = (ts_ms[order].tolist(), bpm[order].tolist(), classification[order].tolist())
        members = list(map(READING_MEMBER.format, *cols))
        calls = _chunk_calls(users, user_code[order], members, self._params(now_ms))
        with _guard("write_batch"):
            replies = await self._run_chunks(calls)
        return _write_result(users, calls, order, replies)

    def _params(self, now_ms: int) -> list[int]:
        """The fixed ARGV head of store.lua: now_ms, retention_ms, sustain_ms, clear_readings."""
        rules = self._rules
        return [int(now_ms), self._retention_ms, rules.sustain_ms, rules.clear_readings]

    async def _run_chunks(self, calls: list[_Call]) -> list[Any]:
        """EVALSHA per chunk, all in one pipelined round trip; reloads the script on NOSCRIPT."""
        sha = self._sha = self._sha or await self._redis.script_load(self._script)
        replies = await self._evalsha(sha, calls)
        todo = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if todo:  # Redis restarted or SCRIPT FLUSH: its script cache is empty.
            sha = self._sha = await self._redis.script_load(self._script)
            retried = await self._evalsha(sha, [calls[i] for i in todo])
            for i, reply in zip(todo, retried, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _evalsha(self, sha: str, calls: list[_Call]) -> list[Any]:
        """The calls in order in one non-transactional pipeline; errors are returned as values."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in calls:
                pipe.evalsha(sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def recent(self, user_id: str, n: int) -> Readings:
        """The user's newest n readings, newest first."""
        if n <= 0:
            return _parse_members([])
        with _guard("recent"):
            members = await self._redis.zrevrange(READINGS_KEY.format(user=user_id), 0, n - 1)
        return _parse_members(cast(list[bytes], members))  # decode_responses=False

    async def range(
        self, user_id: str, from_ms: int, to_ms: int, limit: int | None = None
    ) -> Readings:
        """The user's readings with from_ms <= ts_ms <= to_ms, ascending (at most `limit`)."""
        key = READINGS_KEY.format(user=user_id)
        start, num = (None, None) if limit is None else (0, limit)
        with _guard("range"):
            members = await self._redis.zrangebyscore(key, from_ms, to_ms, start=start, num=num)
        return _parse_members(cast(list[bytes], members))  # decode_responses=False

    async def alert_state(self, user_id: str) -> AlertState:
        """The user's alert state (all zero for a user never seen)."""
        with _guard("alert_state"):
            raw = await self._redis.hmget(ALERT_KEY.format(user=user_id), list(_ALERT_FIELDS))
        return AlertState(*(int(v or 0) for v in raw))  # HMGET answers in _ALERT_FIELDS order

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """The user's stored profile, None when there is none."""
        with _guard("get_profile"):
            raw = await self._redis.get(PROFILE_KEY.format(user=user_id))
        return None if raw is None else dict(json.loads(raw))

    async def set_profile(self, user_id: str, profile: Mapping[str, Any]) -> None:
        """Stores (replaces) the user's profile."""
        data = json.dumps(dict(profile), separators=(",", ":"), sort_keys=True)
        with _guard("set_profile"):
            await self._redis.set(PROFILE_KEY.format(user=user_id), data)

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored profiles of the given users (users without one are absent); one MGET."""
        unique = list(dict.fromkeys(user_ids))
        if not unique:
            return {}
        with _guard("get_profiles"):
            raws = await self._redis.mget([PROFILE_KEY.format(user=u) for u in unique])
        return {u: dict(json.loads(r)) for u, r in zip(unique, raws, strict=True) if r is not None}

    async def ping(self) -> bool:
        """True when Redis answers PING; False (never an exception) when it does not."""
        try:
            return bool(await self._redis.ping())
        except (RedisConnectionError, RedisTimeoutError, ResponseError, OSError):
            return False

    async def aclose(self) -> None:
        """Closes the client and every pooled connection."""
        await self._redis.aclose()


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


def _chunk_calls(
    users: list[str], codes: NDArray[np.int64], members: list[str], params: list[int]
) -> list[_Call]:
    """KEYS and ARGV (see store.lua) per chunk of CHUNK_READINGS sorted readings."""
    calls: list[_Call] = []
    for lo in range(0, len(members), CHUNK_READINGS):
        chunk = codes[lo : lo + CHUNK_READINGS]
        starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
        counts = np.diff(np.r_[starts, len(chunk)])
        firsts = chunk[starts].tolist()
        keys = [k.format(user=users[c]) for c in firsts for k in (READINGS_KEY, ALERT_KEY)]
        args: list[Any] = [*params, len(starts), *counts.tolist()]
        calls.append((keys, [*args, ",".join(members[lo : lo + CHUNK_READINGS])], firsts))
    return calls


def _write_result(
    users: list[str], calls: list[_Call], order: NDArray[np.intp], replies: list[Any]
) -> WriteResult:
    """Maps per-chunk script replies back to the caller's order and per-user results."""
    dup_sorted = np.frombuffer(b"".join(r[0] for r in replies), dtype=np.uint8) == ord("1")
    duplicate = np.empty(len(order), dtype=np.bool_)
    duplicate[order] = dup_sorted
    alerts: dict[str, tuple[int, int]] = {}
    events: dict[str, tuple[int, int]] = {}
    for (_, _, firsts), (_, flat) in zip(calls, replies, strict=True):
        for j, code in enumerate(firsts):
            active, since, raised, cleared = flat[4 * j : 4 * j + 4]
            user = users[code]
            alerts[user] = (int(active), int(since))  # a later chunk's state is the newer one
            up, down = events.get(user, (0, 0))
            events[user] = (up + int(raised), down + int(cleared))
    return WriteResult(duplicate, alerts, events)
