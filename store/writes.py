"""A write's execution: store.lua per call (store/write_plan.py), and the second pass for users
whose readings reach into compacted chunks (searched here: Lua cannot decompress them)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.errors import CorruptChunk, StoreUnavailable
from heartrate_serve.store import write_plan
from heartrate_serve.store.codec import decode_chunk
from heartrate_serve.store.keys import CHUNKS_KEY, PIN_KEY, PIN_MS, chunk_start
from heartrate_serve.store.redis_client import RedisClient

log = logging.getLogger(__name__)

WRITE_SCRIPT = (resources.files("heartrate_serve.store") / "store.lua").read_text("utf-8")
WRITE_SHA = hashlib.sha1(WRITE_SCRIPT.encode(), usedforsecurity=False).hexdigest()
# A write whose users' compacted chunks keep changing under it (a compaction between its calls)
# is tried this many times before it answers StoreUnavailable (from the third try on, the users
# are pinned: compaction leaves their chunks alone for PIN_MS).
WRITE_ATTEMPTS = 8
# Between such attempts a random pause of up to this many seconds times the attempt number.
WRITE_BACKOFF_S = 0.002


async def write_sorted(
    conn: RedisClient, s: write_plan.Sorted, users: list[str], params: list[int]
) -> tuple[NDArray[np.uint8], dict[int, tuple[int, int]], dict[int, tuple[int, int]]]:
    """Runs store.lua until no reading is left 'not looked at'; a code per sorted reading,
    and the alert state and events per user code. params: store.lua's ARGV head."""
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
        replies = await _run_write(conn, calls)
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
            await _pin(conn, [users[code] for code in plan])
        found, checked = await _search_chunks(conn, users, plan)
        for j in np.flatnonzero(blocked).tolist():
            code, ts = int(sub.codes[j]), int(sub.members[j][:13])
            if ts in found.get(code, ()):
                result[idx[j]] = write_plan.DUPLICATE
                todo[idx[j]] = False
    raise StoreUnavailable(
        f"compaction changed the chunks of this write {WRITE_ATTEMPTS} times in a row; retry"
    )


async def _pin(conn: RedisClient, users: list[str]) -> None:
    """Pauses compaction of these users for PIN_MS (compact.lua checks the pin key)."""
    replies = await conn.run_many([("SET", PIN_KEY.format(user=u), 1, "PX", PIN_MS) for u in users])
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


async def _run_write(conn: RedisClient, calls: list[write_plan.Call]) -> list[Any]:
    calls_ = [(c.keys, c.args) for c in calls]
    replies = await conn.evalsha_many(WRITE_SHA, WRITE_SCRIPT, calls_)  # loads on NOSCRIPT
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _search_chunks(
    conn: RedisClient, users: list[str], plan: dict[int, list[int]]
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


def _sha1(blob: bytes) -> str:
    """Hex sha1 as Redis Lua's redis.sha1hex gives it."""
    return hashlib.sha1(blob, usedforsecurity=False).hexdigest()
