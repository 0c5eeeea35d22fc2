"""What the webhook dispatcher (notify/webhooks.py) keeps in Redis: its lease, the users with
alert events, each user's events after a cursor, and per (user, target) the id of the last
event the target acknowledged (hr:{<user>}:hooks, a hash: target kind -> stream id)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

from redis.utils import str_if_bytes

from heartrate_serve.core.alert_feed import AlertRecord, StreamId, parse_stream_id
from heartrate_serve.store.alert_hub import read_events
from heartrate_serve.store.keys import (
    EVENTS_KEEP_MS,
    EVENTS_KEY,
    EVENTS_PATTERN,
    HOOKS_KEY,
    PROFILE_KEY,
)
from heartrate_serve.store.redis_client import RedisClient, store_errors

# One dispatcher at a time across ingress replicas: holder's id, expires unless renewed.
WEBHOOK_LEASE_KEY = "hr:webhooks:lease"
# When the global webhook was first served (ms): users without a cursor start there.
GLOBAL_SINCE_KEY = "hr:webhooks:global_since"
# Target kinds: the global WEBHOOK_URL, and the webhook_url of the user's profile.
GLOBAL_TARGET, USER_TARGET = "global", "user"
_EVENTS_PREFIX, _EVENTS_SUFFIX = "hr:{", "}:events"


def user_of_events_key(key: str) -> str | None:
    """The user id of an hr:{<user>}:events key; None for any other key."""
    if key.startswith(_EVENTS_PREFIX) and key.endswith(_EVENTS_SUFFIX):
        return key[len(_EVENTS_PREFIX) : -len(_EVENTS_SUFFIX)]
    return None


class WebhookState:
    """The dispatcher's Redis operations (single Redis or Cluster; StoreUnavailable on errors)."""

    def __init__(self, conn: RedisClient) -> None:
        self._conn = conn
        self.owner = uuid.uuid4().hex

    async def hold_lease(self, lease_ms: int) -> bool:
        """Takes or renews the dispatch lease; True when this process holds it."""
        conn, key = self._conn, WEBHOOK_LEASE_KEY
        with store_errors("webhook lease"):
            if await conn.call("SET", key, self.owner, "NX", "PX", lease_ms):
                return True
            holder = await conn.call("GET", key)
            if holder is not None and str_if_bytes(holder) == self.owner:
                await conn.call("PEXPIRE", key, lease_ms)
                return True
        return False

    async def release_lease(self) -> None:
        """Gives the lease back if this process holds it (another may take it at once)."""
        with store_errors("webhook lease"):
            holder = await self._conn.call("GET", WEBHOOK_LEASE_KEY)
            if holder is not None and str_if_bytes(holder) == self.owner:
                await self._conn.call("DEL", WEBHOOK_LEASE_KEY)

    async def global_since(self, now_ms: int) -> StreamId:
        """When the global webhook started (set once, at the first call)."""
        with store_errors("webhook since"):
            await self._conn.call("SET", GLOBAL_SINCE_KEY, now_ms, "NX")
            raw = await self._conn.call("GET", GLOBAL_SINCE_KEY)
        return (int(raw or now_ms), 0)

    async def users_with_events(self) -> AsyncIterator[str]:
        """Every user with a kept alert event (SCAN; every node of a cluster)."""
        with store_errors("webhook scan"):
            async for raw in self._conn.scan_keys(EVENTS_PATTERN):
                user = user_of_events_key(str_if_bytes(raw))
                if user is not None:
                    yield user

    async def cursor(self, user: str, kind: str) -> StreamId | None:
        """The last event `kind`'s target acknowledged for the user; None: never set."""
        with store_errors("webhook cursor"):
            raw = await self._conn.call("HGET", HOOKS_KEY.format(user=user), kind)
        return None if raw is None else parse_stream_id(str_if_bytes(raw))

    async def set_cursor(self, user: str, kind: str, sid: StreamId) -> None:
        """Records that `kind`'s target acknowledged the user's events up to sid."""
        key = HOOKS_KEY.format(user=user)
        with store_errors("webhook cursor"):
            await self._conn.run_many(
                [
                    ("HSET", key, kind, f"{sid[0]}-{sid[1]}"),
                    ("PEXPIRE", key, 2 * EVENTS_KEEP_MS),
                ]
            )

    async def start_from_newest(self, user: str, kind: str) -> None:
        """A newly registered target of the user gets the events from now on."""
        with store_errors("webhook cursor"):
            newest = await self._conn.call("XREVRANGE", EVENTS_KEY.format(user=user), "+", "-",
                                           "COUNT", 1)  # fmt: skip
        sid = parse_stream_id(str_if_bytes(newest[0][0])) if newest else (0, 0)
        await self.set_cursor(user, kind, sid)

    async def events_after(self, user: str, sid: StreamId, inclusive: bool) -> list[AlertRecord]:
        """The user's kept events after sid (from it when inclusive), oldest first."""
        with store_errors("webhook events"):
            return await read_events(self._conn, user, sid, not inclusive)

    async def profile_webhook(self, user: str) -> str | None:
        """The webhook_url of the user's profile, None when there is none."""
        with store_errors("webhook profile"):
            raw = await self._conn.call("GET", PROFILE_KEY.format(user=user))
        if raw is None:
            return None
        url = json.loads(raw).get("webhook_url")
        return str(url) if url else None
