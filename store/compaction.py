"""Compaction: closed chunks of each user's hot sorted set become one compressed blob each.

Where it runs: as a background asyncio task in every process that serves requests (each
HeartRateIngress replica, the plain baseline), started by `Compactor.run()`. Only the holder of a
short Redis lease (keys.COMPACTOR_LEASE_KEY) sweeps, so N replicas do the work once; if the holder
dies the lease expires and another replica takes over. A loop rather than a deployment of its own:
the work is small (one encode of ~3 600 readings per user-hour, ~1 ms) and a fourth deployment
would cost a Ray worker (~150 MB) for it.

One sweep: SCAN the server (every primary of a cluster) for hot parts (hr:{*}:readings), ask each
user's oldest hot reading, and compact the users whose oldest reading lies in a chunk that closed
more than `grace_ms` ago: per chunk, read its hot members and current blob, merge, encode, and
commit with compact.lua, which writes only if neither changed in between (else the chunk is
retried next sweep). Killing Redis or this process at any point leaves every reading exactly once:
in the hot part or the blob. A cluster node that is down fails the sweep (StoreUnavailable) after
the users of the other nodes were compacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray
from redis.utils import str_if_bytes

from heartrate_serve.core.errors import CorruptChunk, StoreUnavailable
from heartrate_serve.store.codec import decode_chunk, encode_chunk
from heartrate_serve.store.keys import (
    ALERT_KEY,
    CHUNK_MS,
    CHUNKS_KEY,
    COMPACTOR_LEASE_KEY,
    PIN_KEY,
    READINGS_KEY,
    READINGS_PATTERN,
    chunk_start,
    user_of_readings_key,
)
from heartrate_serve.store.readings import Readings, parse_joined
from heartrate_serve.store.redis_client import RedisClient, store_errors

log = logging.getLogger(__name__)

_SCRIPTS = resources.files("heartrate_serve.store")
COMPACT_SCRIPT = (_SCRIPTS / "compact.lua").read_text("utf-8")
SHRINK_SCRIPT = (_SCRIPTS / "shrink.lua").read_text("utf-8")
READ_SCRIPT = (_SCRIPTS / "read.lua").read_text("utf-8")
# A pass that moved more than SHRINK_RATIO times the readings it left (and at least SHRINK_MIN)
# rebuilds the hot part (shrink.lua): it would keep the hash table of its largest size.
SHRINK_RATIO, SHRINK_MIN = 4, 10_000
# Users whose oldest hot reading is asked for in one pipeline, and compacted concurrently.
_SWEEP_BATCH = 500
_CONCURRENT_USERS = 8


@dataclass
class SweepStats:
    """What one sweep did."""

    users_seen: int = 0
    chunks_written: int = 0
    readings_moved: int = 0
    conflicts: int = 0  # chunks that changed under the compactor (retried next sweep)
    corrupt: int = 0  # chunks whose blob cannot be decoded (left as they are, reported)


class Compactor:
    """Moves readings of closed chunks from users' hot parts into compressed blobs."""

    def __init__(self, conn: RedisClient, *, retention_ms: int, grace_ms: int) -> None:
        self._conn = conn
        self._retention_ms = retention_ms
        self._grace_ms = grace_ms
        self._sha: str | None = None
        self._shrink_sha: str | None = None
        self._read_sha: str | None = None
        self._owner = f"{os.uname().nodename}:{os.getpid()}:{id(self):x}"

    def closed_before(self, now_ms: int) -> int:
        """Readings with ts_ms below this are in chunks closed long enough to compact."""
        return chunk_start(now_ms - self._grace_ms)

    async def sweep(self, now_ms: int) -> SweepStats:
        """Compacts every user's closed chunks once (see the module docstring). Redis (or a
        cluster node) down: StoreUnavailable, with what was done until then done."""
        stats = SweepStats()
        batch: list[str] = []
        with store_errors("compaction sweep"):
            keys = self._conn.scan_keys(READINGS_PATTERN)
            unscanned: Exception | None = None  # a cluster node down: the others are swept
            while True:
                try:
                    key = await anext(keys)
                except StopAsyncIteration:
                    break
                except Exception as error:
                    unscanned = error
                    break
                user = user_of_readings_key(key.decode())
                if user is not None:
                    batch.append(user)
                if len(batch) >= _SWEEP_BATCH:
                    await self._sweep_users(batch, now_ms, stats)
                    batch = []
            await self._sweep_users(batch, now_ms, stats)
            if unscanned is not None:
                raise unscanned
        return stats

    async def _sweep_users(self, users: list[str], now_ms: int, stats: SweepStats) -> None:
        if not users:
            return
        stats.users_seen += len(users)
        limit = self.closed_before(now_ms)
        oldest = await self._conn.run_many(
            [("ZRANGE", READINGS_KEY.format(user=u), 0, 0, "WITHSCORES") for u in users]
        )
        _raise_first(oldest)
        due = [u for u, o in zip(users, oldest, strict=True) if _first_score(o) < limit]
        gate = asyncio.Semaphore(_CONCURRENT_USERS)

        async def one(user: str) -> None:
            async with gate:
                await self._compact_user(user, now_ms, stats)

        await asyncio.gather(*(one(u) for u in due))

    async def compact_user(self, user: str, now_ms: int, stats: SweepStats | None = None) -> int:
        """Compacts every closed chunk of one user; returns the number of chunks written.
        Redis (or the user's cluster node) down: StoreUnavailable."""
        with store_errors("compaction"):
            return await self._compact_user(user, now_ms, stats or SweepStats())

    async def _compact_user(self, user: str, now_ms: int, stats: SweepStats) -> int:
        limit = self.closed_before(now_ms)
        hot_key, chunks_key = READINGS_KEY.format(user=user), CHUNKS_KEY.format(user=user)
        # This user's moved readings: not from `stats`, which users compacted at the same
        # time also add to.
        written, low, moved = 0, "-inf", 0
        while True:
            first = await self._conn.call(
                "ZRANGEBYSCORE", hot_key, low, f"({limit}", "WITHSCORES", "LIMIT", 0, 1
            )
            if not first:
                if moved >= SHRINK_MIN:
                    await self._shrink(hot_key, moved // SHRINK_RATIO)
                return written
            start = chunk_start(int(_first_score(first)))
            low = str(start + CHUNK_MS)  # the next chunk, whatever happens to this one
            n = await self._compact_chunk(user, hot_key, chunks_key, start, stats)
            if n:
                written, moved = written + 1, moved + n

    async def _shrink(self, hot_key: str, max_left: int) -> None:
        """Rebuilds the hot part when at most max_left readings are left in it (shrink.lua)."""
        self._shrink_sha = self._shrink_sha or await self._conn.load_script(SHRINK_SCRIPT)
        (reply,) = await self._conn.evalsha_many(
            self._shrink_sha, SHRINK_SCRIPT, [([hot_key], [max_left])]
        )
        if isinstance(reply, Exception):
            raise reply

    async def _compact_chunk(
        self, user: str, hot_key: str, chunks_key: str, start: int, stats: SweepStats
    ) -> int:
        """Compacts one chunk; the number of hot readings it moved (0: nothing or a conflict)."""
        keys = [hot_key, chunks_key, ALERT_KEY.format(user=user)]
        self._read_sha = self._read_sha or await self._conn.load_script(READ_SCRIPT)
        (reply,) = await self._conn.evalsha_many(
            self._read_sha, READ_SCRIPT, [(keys, ["chunk", start, CHUNK_MS])]
        )
        if isinstance(reply, Exception):
            raise reply
        joined, old, _ = reply
        if not joined:
            return 0
        joined = bytes(joined)
        hot = parse_joined(joined)
        old_blob = bytes(old[1]) if old else b""
        try:
            merged = _merge(decode_chunk(old_blob), hot) if old_blob else hot
        except CorruptChunk as error:
            stats.corrupt += 1
            log.error("user %r, chunk %d: blob cannot be decoded, left as it is (its late "
                      "readings stay in the hot part): %s", user, start, error)  # fmt: skip
            return 0
        blob = encode_chunk(merged.ts_ms, merged.bpm, merged.classification)
        args = [start, CHUNK_MS, _sha1(joined), _sha1(old_blob) if old_blob else ""]
        args += [blob, self._retention_ms]
        self._sha = self._sha or await self._conn.load_script(COMPACT_SCRIPT)
        (reply,) = await self._conn.evalsha_many(
            self._sha,
            COMPACT_SCRIPT,
            [([hot_key, chunks_key, PIN_KEY.format(user=user), keys[2]], args)],
        )
        if isinstance(reply, Exception):
            raise reply
        if int(reply) != 1:
            stats.conflicts += 1
            return 0
        stats.chunks_written += 1
        stats.readings_moved += len(hot)
        return len(hot)

    async def run(
        self, interval_s: float, stop: asyncio.Event, clock_ms: Callable[[], int] | None = None
    ) -> None:
        """Sweeps every `interval_s` while this process holds the lease, until `stop` is set.

        (An event as well as task cancellation: redis-py can swallow a CancelledError that
        arrives during a command, and the loop must still end.)"""
        clock = clock_ms or (lambda: int(time.time() * 1000))
        lease_ms = int(interval_s * 3000) + 10_000
        while not stop.is_set():
            try:
                if await self._hold_lease(lease_ms):
                    stats = await self.sweep(clock())
                    if stats.chunks_written or stats.conflicts or stats.corrupt:
                        log.info("compaction: %s", stats)
            except StoreUnavailable as error:
                log.warning("compaction sweep skipped, Redis unavailable: %s", error)
            except Exception:  # a bug must not stop the loop (or the replica)
                log.exception("compaction sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def _hold_lease(self, lease_ms: int) -> bool:
        """Takes or renews the sweep lease (one key: on a cluster, on the node of its slot);
        True when this process holds it."""
        conn, key = self._conn, COMPACTOR_LEASE_KEY
        with store_errors("compaction lease"):
            if await conn.call("SET", key, self._owner, "NX", "PX", lease_ms):
                return True
            holder = await conn.call("GET", key)
            if holder is not None and str_if_bytes(holder) == self._owner:
                await conn.call("PEXPIRE", key, lease_ms)
                return True
        return False


def _merge(
    old: tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.uint8]], hot: Readings
) -> Readings:
    """The chunk's readings and its hot ones, ascending; a timestamp in both keeps the old one."""
    ts = np.concatenate([old[0], hot.ts_ms])
    bpm = np.concatenate([old[1], hot.bpm])
    cls = np.concatenate([old[2], hot.classification])
    order = np.argsort(ts, kind="stable")
    ts, keep = ts[order], np.r_[True, np.diff(ts[order]) != 0]
    return Readings(ts[keep], bpm[order][keep], cls[order][keep])


def _first_score(reply: Any) -> float:
    """The score of a ZRANGE ... WITHSCORES reply's first member (inf when empty); redis-py
    answers [[member, score]] or [member, score] depending on the client mode."""
    if not reply:
        return float("inf")
    first = reply[0]
    return float(first[1] if isinstance(first, list | tuple) else reply[1])


def _raise_first(replies: list[Any]) -> list[Any]:
    """The replies of run_many, or the first error among them raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _sha1(data: bytes) -> str:
    """Hex sha1 as Redis Lua's redis.sha1hex gives it."""
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()
