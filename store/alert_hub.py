"""Alert events from Redis to the watchers of this process: one subscription, fanned out.

store.lua appends every raise and clear to the user's stream hr:{<user>}:events and PUBLISHes it
on ALERTS_CHANNEL in the same atomic step. Each process (ingress replica, baseline server) holds
one subscription to that channel (on Redis Cluster, to one node: a PUBLISH reaches every node)
and hands each event to the watchers of its user and to the listeners (webhooks, dashboard).
Nothing polls: Redis is read only to replay (after_event_id) and to catch up after the
subscription was lost or a watcher fell WATCH_QUEUE_EVENTS behind, from each watcher's last
delivered event per user, so a watcher misses nothing and gets each user's events in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from heartrate_serve.core.alert_feed import AlertRecord, Cursor, StreamId, parse_stream_id
from heartrate_serve.core.constants import WATCH_QUEUE_EVENTS
from heartrate_serve.core.errors import StoreUnavailable
from heartrate_serve.store.keys import ALERTS_CHANNEL, EVENTS_KEY
from heartrate_serve.store.redis_client import RedisClient, store_errors

log = logging.getLogger(__name__)

# Events read per XRANGE while replaying one user.
READ_PAGE = 1000
# How long a new watch waits for the subscription before it answers UNAVAILABLE, s.
SUBSCRIBE_WAIT_S = 5.0
# Pause between attempts to subscribe again after losing the subscription, s (doubling).
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 5.0
# See AlertHub.watch: how far before a live-only watch's start a catch-up reads, ms.
CATCH_UP_MARGIN_MS = 1000


def records_from_message(data: bytes | str) -> list[AlertRecord]:
    """A published message (one line per event, in order) as AlertRecords."""
    text = data.decode() if isinstance(data, bytes) else data
    return [record_from_line(line) for line in text.split("\n") if line]


def record_from_line(line: str) -> AlertRecord:
    """A published event ("<id> <user> <type> <active> <at_ms> <bpm>") as an AlertRecord."""
    sid, user, alert_type, active, at_ms, bpm = line.split(" ")
    return AlertRecord(
        parse_stream_id(sid), user, int(alert_type), active == "1", int(at_ms), int(bpm)
    )


def _record(user: str, sid: bytes | str, fields: dict[Any, Any]) -> AlertRecord:
    f = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
    return AlertRecord(
        parse_stream_id(sid.decode() if isinstance(sid, bytes) else sid),
        user,
        int(f["t"]),
        int(f["a"]) == 1,
        int(f["at"]),
        int(f["bpm"]),
    )


def _fields(flat: Sequence[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def read_events(
    conn: RedisClient, user: str, start: StreamId, exclusive: bool
) -> list[AlertRecord]:
    """The user's stored events from `start` on (after it when exclusive), oldest first."""
    out: list[AlertRecord] = []
    key = EVENTS_KEY.format(user=user)
    if exclusive and start[1] < 0:  # "after (ms, -1)" is "from (ms, 0)"
        start, exclusive = (start[0], 0), False
    lo = f"{'(' if exclusive else ''}{start[0]}-{start[1]}"
    while True:
        page = await conn.call("XRANGE", key, lo, "+", "COUNT", READ_PAGE)
        for sid, flat in page:
            out.append(_record(user, sid, flat if isinstance(flat, dict) else _fields(flat)))
        if len(page) < READ_PAGE:
            return out
        last = out[-1].stream_id
        lo = f"({last[0]}-{last[1]}"


@dataclass(eq=False)
class _Watcher:
    users: frozenset[str]
    queue: asyncio.Queue[AlertRecord | None] = field(
        default_factory=lambda: asyncio.Queue(WATCH_QUEUE_EVENTS)
    )

    def offer(self, record: AlertRecord | None) -> None:
        """Queues an event (None: catch up from Redis); a full queue is replaced by a catch-up."""
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


Listener = Callable[[AlertRecord], None]


class AlertHub:
    """This process's subscription to the alert events, and its watchers and listeners."""

    def __init__(self, client: Callable[[], Awaitable[RedisClient]]) -> None:
        """client: the store's connected RedisClient (store/store.py ReadingStore.client)."""
        self._client = client
        self._by_user: dict[str, set[_Watcher]] = {}
        self._listeners: list[Listener] = []
        self._resync_listeners: list[Callable[[], None]] = []
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.received = 0  # events received over the subscription (tests, metrics)

    # --- the subscription ---------------------------------------------------------------------

    def start(self) -> None:
        """Starts the subscription task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="alert-hub")

    async def wait_subscribed(self, timeout_s: float = SUBSCRIBE_WAIT_S) -> None:
        """Returns once subscribed; StoreUnavailable when that takes longer than timeout_s."""
        self.start()
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout_s)
        except TimeoutError:
            raise StoreUnavailable(
                "alert events are not available: cannot subscribe to Redis; retry later"
            ) from None

    async def _run(self) -> None:
        pause = RETRY_FIRST_S
        lost = False
        while True:
            pubsub = None
            try:
                conn = await self._client()
                pubsub = _pubsub(conn)
                await pubsub.subscribe(ALERTS_CHANNEL)
                self._subscribed.set()
                if lost:  # events published while unsubscribed: everyone catches up
                    log.info("alert events: subscribed again; watchers catch up from Redis")
                    self._resync_all()
                pause, lost = RETRY_FIRST_S, False
                confirmed = False
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    if msg.get("type") == "message":
                        for record in records_from_message(msg["data"]):
                            self._dispatch(record)
                    elif msg.get("type") == "subscribe":
                        # redis-py reconnects a dropped PubSub by itself and subscribes again:
                        # a second confirmation means events may have been missed meanwhile.
                        if confirmed:
                            log.info("alert events: resubscribed; watchers catch up from Redis")
                            self._resync_all()
                        confirmed = True
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis gone, restarted, failed over: subscribe again
                if not lost:
                    log.warning("alert events: subscription lost (%s); retrying", error)
                self._subscribed.clear()
                lost = True
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_S)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    def _dispatch(self, record: AlertRecord) -> None:
        self.received += 1
        for watcher in self._by_user.get(record.user_id, ()):
            watcher.offer(record)
        for listener in self._listeners:
            try:
                listener(record)
            except Exception:
                log.exception("alert event listener failed")

    def _resync_all(self) -> None:
        for watcher in {w for ws in self._by_user.values() for w in ws}:
            watcher.offer(None)
        for resync in self._resync_listeners:
            resync()

    def add_listener(self, listener: Listener, resync: Callable[[], None] | None = None) -> None:
        """Calls listener(record) for every event received (in the event loop; keep it short);
        resync() after events may have been missed (the subscription was lost)."""
        self._listeners.append(listener)
        if resync is not None:
            self._resync_listeners.append(resync)
        self.start()

    # --- watching -----------------------------------------------------------------------------

    async def watch(self, users: Sequence[str], after: Cursor | None) -> AsyncIterator[AlertRecord]:
        """Events of `users`: those after `after` from Redis first (none when None), then live
        ones as they are published; each user's in order, none twice unless the cursor's
        millisecond holds events of other users. Raises StoreUnavailable when Redis cannot be
        reached at the start; later outages only delay events."""
        await self.wait_subscribed()
        watcher = _Watcher(frozenset(users))
        for user in watcher.users:
            self._by_user.setdefault(user, set()).add(watcher)
        try:
            # Per user: the newest event delivered (or the floor below which nothing is due).
            last: dict[str, StreamId] = {}
            if after is not None:
                floors = {u: after.floor(u) for u in users}
                for user, (sid, exclusive) in floors.items():
                    last[user] = sid if exclusive else (sid[0], sid[1] - 1)
                for record in await self._read(users, floors):
                    if record.stream_id > last[record.user_id]:
                        last[record.user_id] = record.stream_id
                        yield record
            # A catch-up for a user with nothing delivered yet (live only) reads from a little
            # before the watch began (this clock against Redis's: an old event may come).
            start = (int(time.time() * 1000) - CATCH_UP_MARGIN_MS, -1)
            while True:
                item = await watcher.queue.get()
                if item is None:
                    floors = {u: (last.get(u, start), True) for u in users}
                    records = await self._read_quietly(users, floors)
                else:
                    records = [item]
                for record in records:
                    seen = last.get(record.user_id)
                    if seen is None or record.stream_id > seen:
                        last[record.user_id] = record.stream_id
                        yield record
        finally:
            for user in watcher.users:
                watchers = self._by_user.get(user)
                if watchers is not None:
                    watchers.discard(watcher)
                    if not watchers:
                        del self._by_user[user]

    async def _read(
        self, users: Sequence[str], floors: dict[str, tuple[StreamId, bool]]
    ) -> list[AlertRecord]:
        """Stored events of the users from their floors, merged in stream id order."""
        with store_errors("read_events"):
            conn = await self._client()
            per_user = await asyncio.gather(*(read_events(conn, u, *floors[u]) for u in users))
        return sorted((r for rs in per_user for r in rs), key=lambda r: (r.stream_id, r.user_id))

    async def _read_quietly(
        self, users: Sequence[str], floors: dict[str, tuple[StreamId, bool]]
    ) -> list[AlertRecord]:
        """_read, retried until Redis answers (a catch-up must not end the watch)."""
        pause = RETRY_FIRST_S
        while True:
            try:
                return await self._read(users, floors)
            except StoreUnavailable as error:
                log.warning("alert events: catch-up read failed (%s); retrying", error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_S)

    @property
    def watchers(self) -> int:
        """Open watches in this process."""
        return len({w for ws in self._by_user.values() for w in ws})

    async def aclose(self) -> None:
        """Stops the subscription."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._subscribed.clear()


def _pubsub(conn: RedisClient) -> Any:
    """A PubSub on the single Redis, or on one node of the cluster (PUBLISH reaches all),
    on a connection of its own (closed with it)."""
    raw: Any = conn.raw
    if conn.is_cluster:
        node = raw.get_random_node()
        kwargs = {**node.connection_kwargs, "host": node.host, "port": node.port}
        kwargs.pop("event_dispatcher", None)
        pool = aioredis.ConnectionPool(connection_class=node.connection_class, **kwargs)
        return aioredis.Redis(connection_pool=pool, auto_close_connection_pool=True).pubsub()
    return raw.pubsub()
