"""How one write_batch becomes EVALSHA calls of store.lua, and how their replies map back.

Readings are sorted by (hash slot, user, ts_ms) and cut into calls of at most CALL_READINGS
readings that never span two slots (on one Redis every key is in "slot" 0), so that on Redis
Cluster each call runs on the node that owns all of its keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.store.keys import (
    ALERT_KEY,
    ALERTS_CHANNEL,
    CHUNK_MS,
    CHUNKS_KEY,
    EVENTS_KEEP_MS,
    EVENTS_KEY,
    READING_MEMBER,
    READINGS_KEY,
)

# Readings per EVALSHA: keeps Lua's argument tables and one script's run time small.
CALL_READINGS = 5_000
# Per-reading outcome codes in the script's reply (store.lua).
STORED, DUPLICATE, NOT_LOOKED_AT = 0, 1, 2


@dataclass(frozen=True)
class Call:
    """One EVALSHA of store.lua: its KEYS and ARGV and the user codes in KEYS order."""

    keys: list[str]
    args: list[Any]
    users: list[int]


@dataclass
class Sorted:
    """A write's readings sorted by (slot, user, ts): `order` indexes the caller's arrays."""

    order: NDArray[np.intp]
    codes: NDArray[np.int64]  # user code per sorted reading
    slots: NDArray[np.int64]  # hash slot per sorted reading
    members: list[str]  # READING_MEMBER per sorted reading


def sort_readings(
    user_code: NDArray[np.int64],
    ts_ms: NDArray[np.int64],
    bpm: NDArray[np.int32],
    classification: NDArray[np.uint8],
    slot_of_code: NDArray[np.int64],
) -> Sorted:
    """The readings in call order; equal (user, ts) keep caller order (the first one wins)."""
    slots = slot_of_code[user_code]
    order = np.lexsort((ts_ms, user_code, slots))
    cols = (ts_ms[order].tolist(), bpm[order].tolist(), classification[order].tolist())
    members = list(map(READING_MEMBER.format, *cols))
    return Sorted(order, user_code[order], slots[order], members)


def plan_calls(
    s: Sorted, users: list[str], params: list[int], checked: Mapping[int, str]
) -> list[Call]:
    """KEYS and ARGV (see store.lua) per run of at most CALL_READINGS readings of one slot."""
    calls: list[Call] = []
    n = len(s.members)
    slot_starts = np.flatnonzero(np.r_[True, s.slots[1:] != s.slots[:-1]]).tolist()
    for lo_slot, hi_slot in zip(slot_starts, [*slot_starts[1:], n], strict=True):
        for lo in range(lo_slot, hi_slot, CALL_READINGS):
            hi = min(lo + CALL_READINGS, hi_slot)
            chunk = s.codes[lo:hi]
            starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
            counts = np.diff(np.r_[starts, len(chunk)]).tolist()
            firsts = chunk[starts].tolist()
            keys = [
                k.format(user=users[c])
                for c in firsts
                for k in (READINGS_KEY, ALERT_KEY, CHUNKS_KEY, EVENTS_KEY)
            ]
            args: list[Any] = [
                *params,
                len(firsts),
                CHUNK_MS,
                EVENTS_KEEP_MS,
                ALERTS_CHANNEL,
                *counts,
                *(checked.get(c, "") for c in firsts),
            ]
            calls.append(Call(keys, [*args, ",".join(s.members[lo:hi])], firsts))
    return calls


@dataclass
class Outcome:
    """What a write did: a code per sorted reading, the state and events per user code."""

    codes: NDArray[np.uint8]  # STORED, DUPLICATE or NOT_LOOKED_AT per sorted reading
    alerts: dict[int, tuple[int, int]]  # user code -> (active alert type, since_ms)
    events: dict[int, tuple[int, int]]  # user code -> (raised, cleared)


def read_replies(calls: list[Call], replies: list[Any]) -> Outcome:
    """The script replies of `calls` (in order) as one Outcome."""
    codes = np.frombuffer(b"".join(r[0] for r in replies), dtype=np.uint8) - ord("0")
    alerts: dict[int, tuple[int, int]] = {}
    events: dict[int, tuple[int, int]] = {}
    for call, (_, flat) in zip(calls, replies, strict=True):
        for j, code in enumerate(call.users):
            active, since, raised, cleared = flat[4 * j : 4 * j + 4]
            alerts[code] = (int(active), int(since))  # a later call's state is the newer one
            up, down = events.get(code, (0, 0))
            events[code] = (up + int(raised), down + int(cleared))
    return Outcome(codes.astype(np.uint8), alerts, events)


def search_plan(
    s: Sorted, blocked: NDArray[np.bool_], chunk_of: Callable[[int], int]
) -> dict[int, list[int]]:
    """User code -> distinct chunk starts of its readings that were not looked at."""
    plan: dict[int, set[int]] = {}
    for i in np.flatnonzero(blocked).tolist():
        ts = int(s.members[i][:13])
        plan.setdefault(int(s.codes[i]), set()).add(chunk_of(ts))
    return {code: sorted(starts) for code, starts in plan.items()}
