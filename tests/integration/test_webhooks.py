"""Alert webhooks against real Redis and a real HTTP receiver on loopback: signed JSON POSTs in
order, at least once, retried with backoff past a dead endpoint without slowing writes, profile
webhooks from their registration on, and the give-up after GIVE_UP_AFTER_S."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from heartrate_serve.notify import webhooks
from heartrate_serve.notify.webhooks import RunningDispatcher, WebhookDispatcher
from heartrate_serve.store.store import ReadingStore
from heartrate_serve.store.webhook_state import WebhookState
from tests.support.webhook_receiver import receiver

NOW_MS = 1_700_000_000_000
T0 = NOW_MS - 3_600_000
N, LOW, HIGH = 0, 1, 2
SECRET = b"a-webhook-secret-for-tests"
GUARD_S = 15.0


@contextlib.asynccontextmanager
async def dispatching(
    store: ReadingStore, url: str | None, wait: bool = True
) -> AsyncIterator[WebhookDispatcher]:
    async def state() -> WebhookState:
        return WebhookState(await store.client())

    dispatcher = WebhookDispatcher(state, store.alerts, SECRET, url)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    await store.alerts.wait_subscribed()
    if wait:
        await asyncio.wait_for(dispatcher.holding.wait(), 5)
    try:
        yield dispatcher
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def write(store: ReadingStore, user: str, start: int, cls: list[int]) -> float:
    """Writes readings 1 s apart; how long the write took, s."""
    t = time.monotonic()
    await store.write_batch(
        [user] * len(cls),
        np.array([start + 1000 * i for i in range(len(cls))], np.int64),
        np.array([{N: 70, LOW: 45, HIGH: 160}[c] for c in cls], np.int32),
        np.array(cls, np.uint8),
        NOW_MS,
    )
    return time.monotonic() - t


async def test_events_are_posted_signed_and_in_order(store: ReadingStore) -> None:
    async with receiver() as rec, dispatching(store, rec.url):
        await write(store, "u1", T0, [HIGH, N, N, N, LOW])
        got = await rec.wait_for(3)
    assert [(b["event"], b["alert_type"], b["at_ms"], b["bpm"]) for b in got] == [
        ("raised", "HIGH_HEART_RATE", T0, 160),
        ("cleared", "HIGH_HEART_RATE", T0 + 3000, 70),
        ("raised", "LOW_HEART_RATE", T0 + 4000, 45),
    ]
    for body, headers, raw in rec.got:
        assert body["user_id"] == "u1" and headers["X-Heartrate-Event-Id"] == body["event_id"]
        want = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        assert headers["X-Heartrate-Signature"] == want
        assert headers["Content-Type"] == "application/json"


async def test_a_dead_endpoint_is_retried_in_order_and_never_slows_writes(
    store: ReadingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint hangs, then fails, then recovers: writes stay fast meanwhile, and every
    event arrives, in order (an event may come twice: at least once)."""
    monkeypatch.setattr(webhooks, "RETRY_FIRST_S", 0.2)
    async with receiver() as rec, dispatching(store, rec.url) as dispatcher:
        rec.delay_s, rec.status = 3.0, 500  # hangs 3 s, then answers 500
        took = [await write(store, "u2", T0, [HIGH])]
        await asyncio.sleep(0.5)  # its POST is in flight, hanging
        took += [await write(store, "u2", T0 + 1000 + 1000 * i, [N]) for i in range(3)]
        took += [await write(store, "u2", T0 + 4000, [LOW])]
        assert max(took) < rec.delay_s  # no write waited for the hanging POST
        async with asyncio.timeout(GUARD_S):
            while rec.tries < 3:  # tried again after failures
                await asyncio.sleep(0.1)
        rec.delay_s, rec.status = 0.0, 200
        got = await rec.wait_for(3)
    assert [(b["event"], b["at_ms"]) for b in got] == [
        ("raised", T0),
        ("cleared", T0 + 3000),
        ("raised", T0 + 4000),
    ]
    assert dispatcher.delivered == 3 and dispatcher.dropped == 0


async def test_profile_webhook_gets_the_events_after_it_was_set(store: ReadingStore) -> None:
    async with receiver() as rec:
        await write(store, "u3", T0, [HIGH])  # before the webhook: not sent
        await store.set_profile("u3", {"user_id": "u3", "webhook_url": rec.url})
        await store.start_user_webhook("u3")
        async with dispatching(store, None):
            await write(store, "u3", T0 + 1000, [N, N, N])
            got = await rec.wait_for(1)
            await asyncio.sleep(0.5)
    assert [(b["user_id"], b["event"]) for b in got] == [("u3", "cleared")]
    assert len(rec.got) == 1


async def test_an_event_failing_for_longer_than_the_limit_is_dropped(
    store: ReadingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "GIVE_UP_AFTER_S", 0)
    monkeypatch.setattr(webhooks, "RETRY_FIRST_S", 0.1)
    async with receiver() as rec, dispatching(store, rec.url) as dispatcher:
        rec.status = 503
        await write(store, "u4", T0, [HIGH])
        async with asyncio.timeout(GUARD_S):
            while dispatcher.dropped < 1:
                await asyncio.sleep(0.05)
        rec.status = 200
        await write(store, "u4", T0 + 1000, [N, N, N])
        got = await rec.wait_for(1)
    assert [b["event"] for b in got] == ["cleared"]


async def test_two_dispatchers_deliver_each_event_once(store: ReadingStore) -> None:
    """The lease: only one of two replicas' dispatchers POSTs."""
    async with receiver() as rec, dispatching(store, rec.url), dispatching(store, rec.url, False):
        await write(store, "u5", T0, [HIGH, N, N, N])
        await rec.wait_for(2)
        await asyncio.sleep(1.5)
    assert [g[0]["event"] for g in rec.got] == ["raised", "cleared"]


async def test_the_lease_holder_keeps_delivering_across_renewals(
    store: ReadingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many renewals later the same dispatcher still holds the lease: an event is delivered long
    before the lease could have lapsed and been taken again."""
    monkeypatch.setattr(webhooks, "LEASE_S", 0.05)
    monkeypatch.setattr(webhooks, "LEASE_TTL_S", 30.0)
    async with receiver() as rec, dispatching(store, rec.url):
        await asyncio.sleep(1.0)  # about 20 renewals
        await write(store, "u6", T0, [HIGH])
        async with asyncio.timeout(5):  # far below LEASE_TTL_S
            await rec.wait_for(1)


async def test_a_stopped_dispatcher_hands_the_lease_over_at_once(
    store: ReadingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica that stops on purpose gives the lease back: the other delivers at once."""
    monkeypatch.setattr(webhooks, "LEASE_S", 0.05)
    monkeypatch.setattr(webhooks, "LEASE_TTL_S", 30.0)

    async def state() -> WebhookState:
        return WebhookState(await store.client())

    async with receiver() as rec:
        first = RunningDispatcher(WebhookDispatcher(state, store.alerts, SECRET, rec.url))
        await asyncio.wait_for(first.dispatcher.holding.wait(), 5)
        second = RunningDispatcher(WebhookDispatcher(state, store.alerts, SECRET, rec.url))
        try:
            await asyncio.sleep(0.3)
            assert not second.dispatcher.holding.is_set()
            await first.aclose()
            await asyncio.wait_for(second.dispatcher.holding.wait(), 5)  # far below the TTL
            await write(store, "u7", T0, [LOW])
            got = await rec.wait_for(1)
            assert [(b["user_id"], b["event"]) for b in got] == [("u7", "raised")]
        finally:
            await second.aclose()
