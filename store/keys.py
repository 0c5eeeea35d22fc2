"""Redis key schema and the storage layout's fixed numbers (one place).

Every key of a user carries the hash tag {<user_id>}, so all of a user's keys live in one Redis
Cluster slot and every Lua call touches one slot:
  hr:{<user_id>}:readings  the hot part: sorted set, score ts_ms, member READING_MEMBER
  hr:{<user_id>}:chunks    compacted history: sorted set, score = chunk start (ts_ms of a multiple
                           of CHUNK_MS), member = one compressed blob (store/codec.py) holding the
                           user's readings with start <= ts_ms < start + CHUNK_MS
  hr:{<user_id>}:alert     hash; the AlertState fields (active, since_ms, pending, ...)
  hr:{<user_id>}:profile   string; the user's profile as JSON
  hr:{<user_id>}:events    alert events: stream, one entry per raise/clear (store.lua, XADD)
  hr:{<user_id>}:hooks     hash; webhook target -> id of the last event it acknowledged
  hr:{<user_id>}:pin       string, expires in PIN_MS; compaction pauses for the user while it exists
A reading is in the hot part or in its chunk, never both (the compaction script moves it in one
atomic step). Late readings into an already compacted period wait in the hot part and are merged
into their chunk by the next compaction.
"""

from __future__ import annotations

READINGS_KEY = "hr:{{{user}}}:readings"
CHUNKS_KEY = "hr:{{{user}}}:chunks"
ALERT_KEY = "hr:{{{user}}}:alert"
PROFILE_KEY = "hr:{{{user}}}:profile"
EVENTS_KEY = "hr:{{{user}}}:events"
EVENTS_PATTERN = "hr:{*}:events"
HOOKS_KEY = "hr:{{{user}}}:hooks"
# Every alert event is also published here by store.lua ("<id> <user> <type> <active> <at> <bpm>");
# on Redis Cluster a PUBLISH reaches the subscribers of every node.
ALERTS_CHANNEL = "hr:alerts"
# Alert events are kept this long (issue 14: replay "kept at least 24 h"; twice that here so a
# watcher or webhook that was away for a day still finds what it missed, with margin).
EVENTS_KEEP_MS = 48 * 3600 * 1000
# Set (with a short expiry) by a write whose duplicate search lost a race with compaction twice:
# while it exists compact.lua leaves the user's chunks alone, so the write's next try succeeds.
PIN_KEY = "hr:{{{user}}}:pin"
PIN_MS = 2_000
# SCAN pattern of every user's hot part, and how to get the user back from such a key.
READINGS_PATTERN = "hr:{*}:readings"
_READINGS_PREFIX, _READINGS_SUFFIX = "hr:{", "}:readings"
# One compaction sweeper at a time across ingress replicas: holder's id, expires unless renewed.
COMPACTOR_LEASE_KEY = "hr:compactor:lease"

# ts_ms as exactly 13 digits (Unix ms up to year 2286), so the Lua scripts cut it off by position.
READING_MEMBER = "{:013d}:{}:{}"
MAX_TS_MS = 10**13 - 1

# Span of one compacted chunk, ms. Chosen by measurement (README "Capacity"; measured 2026-11-30
# with a week of 1 Hz data, ±150 ms jitter, 3 users): Redis memory per reading, hot part at its
# average size included, was 1.98 B with 20 min chunks, 1.91 B with 30 min, 2.19 B (estimated
# from 1.54 B/compacted reading + 3 600 hot readings at ~110 B) with 60 min. Longer chunks
# compress better (store/codec.py: 1.64 / 1.60 / 1.54 B per compacted reading incl. Redis
# overhead) but keep more readings in the ~110 B/reading hot part before they can be compacted.
CHUNK_MS = 1_800_000


def user_of_readings_key(key: str) -> str | None:
    """The user id of an hr:{<user>}:readings key; None for any other key."""
    if key.startswith(_READINGS_PREFIX) and key.endswith(_READINGS_SUFFIX):
        return key[len(_READINGS_PREFIX) : -len(_READINGS_SUFFIX)]
    return None


def chunk_start(ts_ms: int) -> int:
    """Start of the chunk that holds a reading at ts_ms."""
    return ts_ms - ts_ms % CHUNK_MS
