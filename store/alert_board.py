"""The users with an active alert, kept in memory per process for the dashboard.

Filled by one SCAN of the alert hashes (hr:{<user>}:alert, fields active and since_ms, written by
store.lua) and then kept current from the live alert events of this process's subscription
(store/alert_hub.py): a raise sets the user's row, a clear of the same type removes it. When the
subscription was lost (events may have been missed) the board is marked stale and the next read
scans again. Events that arrive while a scan runs are applied again on top of its result, in
order, so a raise or clear that races the scan is never lost.

Nothing here polls Redis: a read costs nothing but the newest reading of the users it shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from heartrate_serve.core.alert_feed import AlertRecord
from heartrate_serve.store.keys import ALERT_KEY
from heartrate_serve.store.redis_client import RedisClient, store_errors
from heartrate_serve.store.store import ReadingStore

log = logging.getLogger(__name__)

ALERT_PATTERN = "hr:{*}:alert"
_ALERT_PREFIX, _ALERT_SUFFIX = "hr:{", "}:alert"
# Alert hashes read per pipeline while scanning.
SCAN_BATCH = 500
# Newest-reading reads in flight at once.
NEWEST_PARALLEL = 32


@dataclass(frozen=True)
class ActiveAlert:
    """A user's active sustained alert: alert_type 1 LOW, 2 HIGH; since_ms: the timestamp of
    the reading that raised it."""

    user_id: str
    alert_type: int
    since_ms: int


@dataclass(frozen=True)
class Newest:
    """A user's newest stored reading."""

    ts_ms: int
    bpm: int


def user_of_alert_key(key: str) -> str | None:
    """The user id of an hr:{<user>}:alert key; None for any other key."""
    if key.startswith(_ALERT_PREFIX) and key.endswith(_ALERT_SUFFIX):
        return key[len(_ALERT_PREFIX) : -len(_ALERT_SUFFIX)]
    return None


async def scan_active_alerts(conn: RedisClient) -> dict[str, ActiveAlert]:
    """Every user whose alert hash says active (SCAN on the server or every primary; not
    atomic: a user raised or cleared meanwhile may be seen either way). Raises on Redis errors."""
    found: dict[str, ActiveAlert] = {}
    batch: list[str] = []

    async def read(users: list[str]) -> None:
        replies = await conn.run_many(
            [("HMGET", ALERT_KEY.format(user=u), "active", "since_ms") for u in users]
        )
        for user, reply in zip(users, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            active, since = (int(v or 0) for v in reply)
            if active:
                found[user] = ActiveAlert(user, active, since)

    async for key in conn.scan_keys(ALERT_PATTERN):
        user = user_of_alert_key(key.decode() if isinstance(key, bytes) else str(key))
        if user is not None:
            batch.append(user)
        if len(batch) >= SCAN_BATCH:
            await read(batch)
            batch = []
    if batch:
        await read(batch)
    return found


class AlertBoard:
    """The active alerts of every user, for this process (see the module docstring)."""

    def __init__(self, store: ReadingStore) -> None:
        self._store = store
        self._rows: dict[str, ActiveAlert] = {}
        self._listening = False
        self._stale = True  # nothing scanned yet, or events may have been missed since
        self._during_scan: list[AlertRecord] | None = None
        self._scan_lock = asyncio.Lock()
        self.scans = 0  # full scans done (tests)

    # --- events ---------------------------------------------------------------------------------

    def apply(self, record: AlertRecord) -> None:
        """One raise or clear (the AlertHub listener; also used by tests)."""
        if self._during_scan is not None:
            self._during_scan.append(record)
        self._apply(record)

    def _apply(self, record: AlertRecord) -> None:
        if record.active:
            self._rows[record.user_id] = ActiveAlert(
                record.user_id, record.alert_type, record.at_ms
            )
            return
        row = self._rows.get(record.user_id)
        if row is not None and row.alert_type == record.alert_type:
            del self._rows[record.user_id]

    def resync(self) -> None:
        """Events may have been missed (the subscription was lost): scan again on next read."""
        self._stale = True

    # --- reads ----------------------------------------------------------------------------------

    async def active(self) -> list[ActiveAlert]:
        """Every active alert, newest first. The first read subscribes and scans; later ones
        scan only after a lost subscription. Raises StoreUnavailable when Redis is down then."""
        if not self._listening:
            self._store.alerts.add_listener(self.apply, self.resync)
            self._listening = True
        if self._stale:
            await self._rescan()
        return sorted(self._rows.values(), key=lambda r: (-r.since_ms, r.user_id))

    async def _rescan(self) -> None:
        async with self._scan_lock:
            if not self._stale:
                return  # another read scanned meanwhile
            # Subscribed first: every event after this point reaches apply().
            await self._store.alerts.wait_subscribed()
            self._stale = False
            self._during_scan = []
            try:
                with store_errors("alert_board scan"):
                    found = await scan_active_alerts(await self._store.client())
            except BaseException:
                self._stale = True
                raise
            finally:
                replay, self._during_scan = self._during_scan, None
            self._rows = found
            for record in replay:
                self._apply(record)
            self.scans += 1
            log.info("alert board: %d active alerts", len(self._rows))

    async def newest(self, users: Sequence[str]) -> dict[str, Newest]:
        """The newest stored reading of each user (users without readings are absent); one
        read per user, NEWEST_PARALLEL at a time. Raises StoreUnavailable."""
        gate = asyncio.Semaphore(NEWEST_PARALLEL)

        async def one(user: str) -> tuple[str, Newest | None]:
            async with gate:
                readings = await self._store.recent(user, 1)
            if len(readings) == 0:
                return user, None
            return user, Newest(int(readings.ts_ms[0]), int(readings.bpm[0]))

        pairs = await asyncio.gather(*(one(u) for u in dict.fromkeys(users)))
        return {user: newest for user, newest in pairs if newest is not None}
