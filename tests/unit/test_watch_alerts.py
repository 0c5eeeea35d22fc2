"""WatchAlerts in the service core over the in-memory store: arguments, events, replay, auth."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from heartrate_serve.core.alert_feed import parse_cursor, watched_users
from heartrate_serve.core.errors import InvalidRequest, Overloaded, PermissionDenied
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service.auth import Authenticator, KeySet
from heartrate_serve.service.local_ports import LocalValidator, LocalZones
from heartrate_serve.service.service import HeartRateService
from heartrate_serve.service.tunables import IngressTunables
from tests.support.store_fake import FakeStore

NOW = 1_700_000_000_000
SECRET = "s" * 40


def _service(store: FakeStore, **kw: object) -> HeartRateService:
    return HeartRateService(
        store, LocalValidator(ValidationRules()), LocalZones(), clock_ms=lambda: NOW, **kw
    )  # type: ignore[arg-type]


async def _submit(svc: HeartRateService, user: str, bpms: list[int], start: int) -> None:
    for i, bpm in enumerate(bpms):
        req = pb.HeartRateRequest(user_id=user, bpm=bpm, timestamp_ms=NOW - 60_000 + start + i)
        resp = await svc.SubmitHeartRate(req)
        assert resp.success or resp.reject_reason == 0, resp


async def _stop(pending: asyncio.Future[pb.AlertEvent], watch: AsyncIterator[object]) -> None:
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    await watch.aclose()  # type: ignore[attr-defined]


async def _next(events: AsyncIterator[pb.AlertEvent]) -> pb.AlertEvent:
    return await asyncio.wait_for(anext(events), 5)


@pytest.mark.parametrize(
    ("users", "text"),
    [
        ([], "user_ids is empty"),
        ([f"u{i}" for i in range(1001)], "at most 1000"),
        (["ok", "bad id"], r"user_ids\[1\]"),
        ([""], r"user_ids\[0\]"),
    ],
)
def test_user_ids_must_be_1_to_1000_valid_ids(users: list[str], text: str) -> None:
    with pytest.raises(InvalidRequest, match=text) as info:
        watched_users(users)
    assert info.value.field == "user_ids"


def test_one_thousand_ids_with_duplicates_are_fine() -> None:
    assert watched_users([f"u{i}" for i in range(1000)] + ["u1"]) == [f"u{i}" for i in range(1000)]


@pytest.mark.parametrize("text", ["x", "12-0", "12-0:", "a-b:u", "12-0:bad id", "1:u"])
def test_malformed_after_event_id_is_invalid(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_cursor(text)
    assert info.value.field == "after_event_id"


def test_cursor_floor_is_exclusive_for_its_user_only() -> None:
    cursor = parse_cursor("1700000000123-4:a:b")
    assert cursor is not None and cursor.user_id == "a:b"
    assert cursor.floor("a:b") == ((1700000000123, 4), True)
    assert cursor.floor("c") == ((1700000000123, 0), False)


async def test_bad_request_raises_before_any_event() -> None:
    svc = _service(FakeStore())
    with pytest.raises(InvalidRequest, match="user_ids"):
        await anext(svc.WatchAlerts(pb.WatchAlertsRequest(user_ids=[])))
    with pytest.raises(InvalidRequest, match="after_event_id"):
        await anext(svc.WatchAlerts(pb.WatchAlertsRequest(user_ids=["a"], after_event_id="z")))


async def test_raise_and_clear_are_watched_live_and_replayed() -> None:
    store = FakeStore()
    svc = _service(store)
    watch = svc.WatchAlerts(pb.WatchAlertsRequest(user_ids=["u1", "u2"]))
    first = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0)
    await _submit(svc, "u1", [170, 70, 70, 70], 0)  # raise HIGH, then 3 normals clear it
    raised = await asyncio.wait_for(first, 5)
    cleared = await _next(watch)
    assert (raised.user_id, raised.alert_type, raised.active, raised.bpm) == (
        "u1",
        pb.HIGH_HEART_RATE,
        True,
        170,
    )
    assert raised.at_ms == NOW - 60_000
    assert (cleared.alert_type, cleared.active, cleared.at_ms) == (
        pb.HIGH_HEART_RATE,
        False,
        NOW - 60_000 + 3,
    )
    await watch.aclose()
    again = svc.WatchAlerts(pb.WatchAlertsRequest(user_ids=["u1"], after_event_id=raised.event_id))
    assert (await _next(again)).event_id == cleared.event_id
    await again.aclose()


async def test_watches_count_towards_max_open_streams() -> None:
    svc = _service(FakeStore(), tunables=IngressTunables(max_open_streams=1))
    watch = svc.WatchAlerts(pb.WatchAlertsRequest(user_ids=["a"]))
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded, match="max_open_streams 1"):
        await anext(svc.WatchAlerts(pb.WatchAlertsRequest(user_ids=["b"])))
    await _stop(pending, watch)


async def test_with_auth_a_watcher_must_read_every_user(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    auth = Authenticator(KeySet.from_secret_file(secret), clock_s=lambda: NOW / 1000)
    svc = _service(FakeStore(), auth=auth)
    claims = {"sub": "carer", "scope": "heartrate:read", "users": ["p1"], "exp": NOW // 1000 + 60}
    token = "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(PermissionDenied, match="'p2'"):
        await anext(svc.WatchAlerts(pb.WatchAlertsRequest(user_ids=["p1", "p2"]), token))
    watch = svc.WatchAlerts(pb.WatchAlertsRequest(user_ids=["p1", "carer"]), token)
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.01)
    assert not pending.done()  # accepted: waiting for events
    await _stop(pending, watch)
