"""The dashboard in-process: its router, pages and JSON endpoints over the real service core
(in-process validator and zone ports, the in-memory store), with auth off and on, and the alert
board's bookkeeping of raise and clear events."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import Response

from heartrate_serve.core.alert_feed import AlertRecord
from heartrate_serve.core.errors import HttpError, StoreUnavailable
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.dashboard.app import SECURITY_HEADERS, Dashboard, load_static
from heartrate_serve.dashboard.router import Router, compile_path
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service.auth import Authenticator, KeySet
from heartrate_serve.service.dashboard_reads import DAY_MS, HOUR_MS, DashboardReads
from heartrate_serve.service.local_ports import LocalValidator, LocalZones
from heartrate_serve.service.service import HeartRateService
from heartrate_serve.store.alert_board import ActiveAlert, AlertBoard, Newest, user_of_alert_key
from tests.support.store_fake import FakeStore

NOW = 1_700_000_000_000  # the service clock, Unix ms
HIGH, LOW = 2, 1


class StubBoard:
    """The AlertBoard's two reads, from a list."""

    def __init__(self, rows: list[ActiveAlert], newest: dict[str, Newest] | None = None) -> None:
        self.rows = rows
        self.newest_of = newest or {}
        self.fail: Exception | None = None

    async def active(self) -> list[ActiveAlert]:
        if self.fail is not None:
            raise self.fail
        return list(self.rows)

    async def newest(self, users: list[str]) -> dict[str, Newest]:
        return {u: self.newest_of[u] for u in users if u in self.newest_of}


class CountingZones(LocalZones):
    """The in-process zone port, counting its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def analyse(self, jobs: Any) -> Any:
        self.calls += 1
        return await super().analyse(jobs)


def request(
    path: str, token: str | None = None, method: str = "GET", root: str = "", **query: Any
) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {
        "type": "http",
        "method": method,
        "path": root + path,
        "root_path": root,
        "query_string": urlencode(query).encode(),
        "headers": headers,
    }
    return Request(scope)


def body(response: Response) -> Any:
    return json.loads(bytes(response.body))


def text(response: Response) -> str:
    return bytes(response.body).decode()


class World:
    """A service core over the fake store, and its dashboard."""

    def __init__(self, auth: Authenticator | None = None, rows: list[ActiveAlert] | None = None):
        self.store = FakeStore()
        self.zones = CountingZones()
        self.service = HeartRateService(
            self.store,
            LocalValidator(ValidationRules()),
            self.zones,
            clock_ms=lambda: NOW,
            auth=auth,
        )
        self.board = StubBoard(rows or [])
        reads = DashboardReads(self.service, self.store, auth, clock_ms=lambda: NOW)
        self.dashboard = Dashboard(reads, self.board, clock_ms=lambda: NOW)  # type: ignore[arg-type]

    async def get(self, path: str, token: str | None = None, **query: Any) -> Response:
        return await self.dashboard.handle(request(path, token, **query))

    async def submit(
        self, user: str, bpms: list[int], start_ms: int, step_ms: int = 1000, token: str = ""
    ) -> None:
        batch = pb.HeartRateBatchRequest(
            user_id=user, bpm=bpms, timestamps_ms=[start_ms + i * step_ms for i in range(len(bpms))]
        )
        await self.service.SubmitHeartRateBatch(batch, f"Bearer {token}" if token else None)


# --- the router ---------------------------------------------------------------------------------


def test_paths_compile_to_whole_path_patterns_with_one_segment_per_name() -> None:
    pattern = compile_path("/api/users/{user_id}")
    assert pattern.match("/api/users/bob") is not None
    assert pattern.match("/api/users/bob")["user_id"] == "bob"  # type: ignore[index]
    assert pattern.match("/api/users/") is not None  # empty: the handler answers 400
    assert pattern.match("/api/users/bob/more") is None
    assert pattern.match("/api/users.x/bob") is None


async def test_unknown_paths_are_404_and_other_methods_405_with_allow() -> None:
    router = Router()

    async def ok(_request: Request, _params: dict[str, str]) -> Response:
        return Response("ok")

    router.get("/a")(ok)
    with pytest.raises(HttpError) as info:
        router.match("GET", "/b")
    assert info.value.status == 404
    with pytest.raises(HttpError) as info:
        router.match("POST", "/a")
    assert (info.value.status, info.value.headers["Allow"]) == (405, "GET, HEAD")
    handler, _ = router.match("HEAD", "/a")  # HEAD is answered by GET
    assert handler is ok


# --- pages and static files ---------------------------------------------------------------------


async def test_pages_are_static_shells_with_their_scripts_and_strict_headers() -> None:
    world = World()
    index = await world.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    page = text(index)
    assert 'src="/static/index.js"' in page and 'src="/static/common.js"' in page
    for name, value in SECURITY_HEADERS.items():
        assert index.headers[name] == value
    user = await world.get("/users/bob.smith@x")
    assert user.status_code == 200
    assert 'data-user="bob.smith@x"' in text(user) and "/static/chart.js" in text(user)
    js = await world.get("/static/user.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert (await world.get("/static/nope.js")).status_code == 404
    assert (await world.get("/static/index.html")).status_code == 404  # pages only by route


async def test_links_follow_the_application_route_prefix() -> None:
    world = World()
    page = text(await world.dashboard.handle(request("/users/u1", root="/hr")))
    assert 'href="/hr/static/dashboard.css"' in page and 'data-root="/hr"' in page


async def test_bad_user_id_page_is_a_400_page_and_unknown_paths_are_404_json() -> None:
    world = World()
    bad = await world.get("/users/not ok")
    assert bad.status_code == 400 and "user_id" in text(bad)
    assert bad.headers["content-type"].startswith("text/html")
    missing = await world.get("/api/nothing")
    assert missing.status_code == 404 and body(missing)["status"] == 404
    post = await world.dashboard.handle(request("/api/alerts", method="POST"))
    assert post.status_code == 405 and "error" in body(post)


def test_every_static_file_ships() -> None:
    names = set(load_static())
    assert {"index.html", "user.html", "error.html", "common.js", "index.js", "user.js"} <= names
    assert {"chart.js", "dashboard.css"} <= names


# --- /api/users/<user_id> -----------------------------------------------------------------------


async def test_user_view_has_alert_thresholds_newest_hour_and_zones() -> None:
    world = World()
    await world.service.SetUserProfile(
        pb.SetUserProfileRequest(profile=pb.UserProfile(user_id="u1", age=40))
    )
    await world.submit("u1", [70], NOW - 2 * HOUR_MS)  # outside the hour
    start = NOW - 600_000
    await world.submit("u1", [100, 120, 160, 165, 170], start, 60_000)
    answer = await world.get("/api/users/u1", day_start_ms=NOW - NOW % DAY_MS)
    assert answer.status_code == 200, text(answer)
    assert answer.headers["cache-control"] == "no-store"
    got = body(answer)
    assert got["user_id"] == "u1" and got["now_ms"] == NOW
    assert got["alert"] == {
        "active": True,
        "alert_type": "HIGH_HEART_RATE",
        "since_ms": start + 120_000,
    }
    assert got["thresholds"]["normal_low_bpm"] == 50 and got["thresholds"]["normal_high_bpm"] == 150
    assert got["latest"] == {"ts_ms": start + 240_000, "bpm": 170}
    assert got["readings"]["ts_ms"] == [start + i * 60_000 for i in range(5)]
    assert got["readings"]["bpm"] == [100, 120, 160, 165, 170]
    assert got["readings"]["from_ms"] == NOW - HOUR_MS
    zones = got["zones"]
    assert zones["available"] and zones["hr_max_bpm"] == 180 and zones["note"] == ""
    assert len(zones["zones"]) >= 3 and zones["reading_count"] == 6


async def test_since_ms_returns_only_newer_readings_and_zones_are_reused() -> None:
    world = World()
    await world.service.SetUserProfile(
        pb.SetUserProfileRequest(profile=pb.UserProfile(user_id="u1", age=30))
    )
    await world.submit("u1", [80, 81, 82, 83], NOW - 4000)
    got = body(await world.get("/api/users/u1", since_ms=NOW - 2000))
    assert got["readings"]["ts_ms"] == [NOW - 2000, NOW - 1000]
    assert got["readings"]["from_ms"] == NOW - 2000
    calls = world.zones.calls
    await world.get("/api/users/u1")
    assert world.zones.calls == calls  # within ZONES_TTL_S: not computed again


async def test_zones_without_an_age_say_how_to_get_them() -> None:
    world = World()
    await world.submit("u2", [70, 72], NOW - 5000)
    got = body(await world.get("/api/users/u2"))
    assert not got["zones"]["available"] and "age" in got["zones"]["note"]
    assert got["alert"]["active"] is False and got["alert"]["since_ms"] is None


@pytest.mark.parametrize(
    ("path", "query", "status", "names"),
    [
        ("/api/users/bad id", {}, 400, "user_id"),
        ("/api/users/", {}, 400, "user_id"),
        ("/api/users/" + "x" * 129, {}, 400, "user_id"),
        ("/api/users/nobody", {}, 404, "nobody"),
        ("/api/users/u1", {"since_ms": "soon"}, 400, "since_ms"),
        ("/api/users/u1", {"since_ms": "-5"}, 400, "since_ms"),
        ("/api/users/u1", {"day_start_ms": str(NOW - 3 * DAY_MS)}, 400, "day_start_ms"),
    ],
)
async def test_bad_and_unknown_users_are_clear_json_errors(
    path: str, query: dict[str, str], status: int, names: str
) -> None:
    world = World()
    await world.submit("u1", [70], NOW - 5000)
    answer = await world.get(path, **query)
    assert answer.status_code == status, text(answer)
    got = body(answer)
    assert got["status"] == status and names in got["error"]


async def test_a_user_with_a_profile_but_no_readings_is_shown() -> None:
    world = World()
    await world.service.SetUserProfile(
        pb.SetUserProfileRequest(profile=pb.UserProfile(user_id="new", age=50))
    )
    got = body(await world.get("/api/users/new"))
    assert got["latest"] is None and got["readings"]["ts_ms"] == []
    assert got["zones"]["note"] == "no readings today"


async def test_store_down_is_503_and_a_bug_is_500_never_raised() -> None:
    world = World()
    world.board.fail = StoreUnavailable("Redis is down")
    down = await world.get("/api/alerts")
    assert down.status_code == 503 and body(down)["error"] == "Redis is down"
    assert down.headers["retry-after"] == "1"
    world.board.fail = RuntimeError("boom")
    bug = await world.get("/api/alerts")
    assert bug.status_code == 500 and body(bug)["error"] == "internal error (logged)"


# --- /api/alerts --------------------------------------------------------------------------------


async def test_alerts_list_the_board_with_the_newest_bpm() -> None:
    rows = [ActiveAlert("b", HIGH, NOW - 1000), ActiveAlert("a", LOW, NOW - 9000)]
    world = World(rows=rows)
    world.board.newest_of = {"b": Newest(NOW - 500, 171)}
    got = body(await world.get("/api/alerts"))
    assert (got["now_ms"], got["total"], got["shown"]) == (NOW, 2, 2)
    assert got["alerts"] == [
        {
            "user_id": "b",
            "alert_type": "HIGH_HEART_RATE",
            "since_ms": NOW - 1000,
            "bpm": 171,
            "bpm_at_ms": NOW - 500,
        },
        {
            "user_id": "a",
            "alert_type": "LOW_HEART_RATE",
            "since_ms": NOW - 9000,
            "bpm": None,
            "bpm_at_ms": None,
        },
    ]
    world.dashboard._max_listed = 1
    capped = body(await world.get("/api/alerts"))
    assert (capped["total"], capped["shown"], capped["alerts"][0]["user_id"]) == (2, 1, "b")


# --- auth ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("dash-auth") / "public.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, path


def token(key: ec.EllipticCurvePrivateKey, sub: str, scope: str, **claims: Any) -> str:
    body = {"sub": sub, "scope": scope, "exp": int(time.time()) + 600, **claims}
    return jwt.encode(body, key, algorithm="ES256")


async def test_with_auth_the_json_needs_a_token_with_read_rights(
    keys: tuple[ec.EllipticCurvePrivateKey, Path],
) -> None:
    key, public = keys
    rows = [ActiveAlert(u, HIGH, NOW - i) for i, u in enumerate(["bob", "ann", "eve"])]
    world = World(Authenticator(KeySet.from_public_file(public)), rows)
    admin = token(key, "ops", "heartrate:admin")
    await world.submit("bob", [160], NOW - 5000, token=admin)
    assert (await world.get("/")).status_code == 200  # the page carries no data
    assert (await world.get("/users/bob")).status_code == 200
    for path in ("/api/alerts", "/api/users/bob"):
        missing = await world.get(path)
        assert missing.status_code == 401, path
        assert missing.headers["www-authenticate"].startswith("Bearer")
        bad = await world.get(path, token="not-a-jwt")
        assert bad.status_code == 401 and "JWT" in body(bad)["error"]
    writer = token(key, "bob", "heartrate:write")
    assert (await world.get("/api/alerts", writer)).status_code == 403
    assert (await world.get("/api/users/bob", writer)).status_code == 403
    carer = token(key, "carer", "heartrate:read", users=["bob", "ann"])
    listed = body(await world.get("/api/alerts", carer))
    assert [a["user_id"] for a in listed["alerts"]] == ["bob", "ann"] and listed["total"] == 2
    assert (await world.get("/api/users/bob", carer)).status_code == 200
    denied = await world.get("/api/users/eve", carer)
    assert denied.status_code == 403 and "eve" in body(denied)["error"]
    assert body(await world.get("/api/alerts", admin))["total"] == 3


# --- the alert board's bookkeeping --------------------------------------------------------------


def _event(user: str, alert_type: int, active: bool, at_ms: int) -> AlertRecord:
    return AlertRecord((at_ms, 0), user, alert_type, active, at_ms, 150)


def test_board_applies_raises_and_clears_of_the_same_type() -> None:
    board = AlertBoard(store=None)  # type: ignore[arg-type]
    board.apply(_event("a", HIGH, True, 1))
    board.apply(_event("b", LOW, True, 2))
    board.apply(_event("a", HIGH, False, 3))
    assert set(board._rows) == {"b"}
    board.apply(_event("b", HIGH, False, 4))  # a clear of another type leaves the row
    assert board._rows["b"] == ActiveAlert("b", LOW, 2)
    board.apply(_event("b", LOW, False, 5))
    board.apply(_event("b", HIGH, True, 6))  # LOW over HIGH: clear, then raise
    assert board._rows == {"b": ActiveAlert("b", HIGH, 6)}


def test_alert_keys_give_their_user() -> None:
    assert user_of_alert_key("hr:{a.b@c:d}:alert") == "a.b@c:d"
    assert user_of_alert_key("hr:{a}:readings") is None
