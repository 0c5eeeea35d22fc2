"""The live dashboard on the real service's HTTP port, in headless Chromium from Debian's packages
(/usr/bin/chromium; `make test` installs it with apt-get when missing) driven by Playwright.
Nothing downloads a browser: Playwright is pointed at the system one.

Readings go in over gRPC; the pages must show what the service stored: the alert on `/`, then
the user's page with its chart and alert state, updating by itself as more readings arrive. A
screenshot of the user page is saved to the test's tmp_path and to test-artifacts/dashboard.png.
With AUTH_MODE=jwt (a service of its own): the JSON needs a token (401 / 403 / 200), and the
page works with one handed over as ?token=.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import grpc
import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.dev_keys import dev_key_paths, issue_token
from tests.support.service import Service, running_service

pytestmark = [pytest.mark.e2e]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard.png"
READY_S = 60.0  # the HTTP port answers soon after gRPC SERVING (HAProxy's backend check)
UPDATE_S = 5_000  # ms: the page polls every second; an update must show within a few seconds


def user() -> str:
    return f"d-{uuid.uuid4().hex[:10]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def submit(address: str, u: str, bpms: list[int], token: str = "", spread_ms: int = 0) -> None:
    """Readings one call each (acknowledged: stored), `spread_ms` apart up to now (0: stamped
    now, each after the one before: they count for the alert state, none is late)."""
    metadata = [("authorization", f"Bearer {token}")] if token else None
    start = now_ms() - spread_ms * len(bpms)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.HeartRateMonitorStub(channel)
        for i, bpm in enumerate(bpms):
            ts = start + spread_ms * i if spread_ms else now_ms()
            req = pb.HeartRateRequest(user_id=u, bpm=bpm, timestamp_ms=ts)
            resp = stub.SubmitHeartRate(req, timeout=30, metadata=metadata)
            assert resp.success, resp


def set_age(address: str, u: str, age: int, token: str = "") -> None:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(address) as channel:
        profile = pb.UserProfile(user_id=u, age=age)
        pb_grpc.HeartRateMonitorStub(channel).SetUserProfile(
            pb.SetUserProfileRequest(profile=profile), timeout=30, metadata=metadata
        )


def get(url: str, token: str = "") -> tuple[int, dict[str, Any], Message]:
    """GET a JSON endpoint: status, body, headers (errors included)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, json.loads(resp.read()), resp.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def wait_http(base: str) -> None:
    """Until the dashboard answers (any JSON answer from the application)."""
    deadline = time.monotonic() + READY_S
    last = ""
    while time.monotonic() < deadline:
        try:
            status, body, _ = get(f"{base}/api/alerts")
            if status in (200, 401):
                return
            last = f"{status} {body}"
        except (OSError, ValueError) as error:
            last = str(error)
        time.sleep(0.5)
    pytest.fail(f"the dashboard at {base} did not answer within {READY_S:.0f} s: {last}")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's headless Chromium with a fresh profile (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    """A new tab that fails the test on any script error."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield tab
    finally:
        tab.close()
    assert errors == [], errors


def test_alert_list_and_live_user_page(service: Service, page: Page, tmp_path: Path) -> None:
    """An alert raised over gRPC shows on `/`; its user's page shows the chart, the alert, the
    thresholds and the zones, and follows new readings without a reload."""
    u = user()
    set_age(service.address, u, 40)
    # Ten minutes of a workout, the last reading HIGH (raised at once: alert_sustain_s 0).
    workout = [85 + 3 * i for i in range(23)] + [166]
    submit(service.address, u, workout, spread_ms=25_000)
    wait_http(service.http_url)

    page.goto(f"{service.http_url}/")
    row = page.locator(f'tr[data-user="{u}"]')
    expect(row).to_be_visible(timeout=UPDATE_S)
    expect(row).to_contain_text("HIGH")
    expect(row.locator("td.bpm")).to_have_text("166")

    row.get_by_role("link", name=u).click()
    page.wait_for_url(f"**/users/{u}")
    expect(page.locator("#alert-state")).to_have_attribute("data-alert", "HIGH_HEART_RATE")
    expect(page.locator("#alert-state")).to_have_text("HIGH heart rate")
    expect(page.locator("#latest-bpm")).to_have_text("166")
    expect(page.locator("#chart path.line")).to_have_count(1)
    expect(page.locator("#chart")).to_have_attribute("data-points", str(len(workout)))
    expect(page.locator("#threshold-rows")).to_contain_text("50–150 bpm")
    expect(page.locator("#zones")).to_be_visible()
    expect(page.locator("#zone-rows tr")).to_have_count(6)  # 5 zones and below them

    before = time.monotonic()
    submit(service.address, u, [72, 74, 77])  # 3 normal readings clear the alert
    expect(page.locator("#latest-bpm")).to_have_text("77", timeout=UPDATE_S)
    expect(page.locator("#alert-state")).to_have_text("no active alert", timeout=UPDATE_S)
    points = str(len(workout) + 3)
    expect(page.locator("#chart")).to_have_attribute("data-points", points, timeout=UPDATE_S)
    took = time.monotonic() - before
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_path / "dashboard.png", ARTIFACT)
    print(f"user page followed the cleared alert {took:.1f} s after the readings were sent")

    page.goto(f"{service.http_url}/")  # cleared: no longer listed
    expect(page.locator("#status")).to_contain_text("updated", timeout=UPDATE_S)
    expect(page.locator(f'tr[data-user="{u}"]')).to_have_count(0)


def test_unknown_and_bad_users_answer_json_errors(service: Service) -> None:
    wait_http(service.http_url)
    status, body, _ = get(f"{service.http_url}/api/users/{user()}")
    assert status == 404 and "no readings" in body["error"]
    status, body, _ = get(f"{service.http_url}/api/users/bad%20id")
    assert status == 400 and "user_id" in body["error"]


# --- with AUTH_MODE=jwt -------------------------------------------------------------------------


def test_with_auth_the_dashboard_takes_the_same_tokens(
    tmp_path_factory: pytest.TempPathFactory, page: Page
) -> None:
    """401 without a token, 403 without read rights on the user, 200 with them; the alert list
    holds only the users a token may read; the page works with ?token= (then kept in the tab,
    not in the address)."""
    work = tmp_path_factory.mktemp("dashboard-jwt")
    with running_service(work, AUTH_MODE="jwt") as svc:
        private, _ = dev_key_paths(work / "data")
        admin = issue_token(private, user="ops", scopes=["heartrate:admin"])
        bob, eve = user(), user()
        for u in (bob, eve):
            submit(svc.address, u, [170], token=admin)
        base = f"http://127.0.0.1:{svc.http_port}"
        wait_http(base)
        status, body, headers = get(f"{base}/api/users/{bob}")
        assert status == 401 and "authorization" in body["error"]
        assert str(headers.get("WWW-Authenticate")).startswith("Bearer")
        assert get(f"{base}/api/alerts")[0] == 401
        writer = issue_token(private, user=bob, scopes=["heartrate:write"])
        assert get(f"{base}/api/users/{bob}", writer)[0] == 403
        carer = issue_token(private, user="carer", scopes=["heartrate:read"], users=[bob])
        assert get(f"{base}/api/users/{eve}", carer)[0] == 403
        status, body, _ = get(f"{base}/api/users/{bob}", carer)
        assert status == 200 and body["alert"]["active"] and body["latest"]["bpm"] == 170
        listed = {a["user_id"] for a in get(f"{base}/api/alerts", carer)[1]["alerts"]}
        assert listed == {bob}
        assert {bob, eve} <= {a["user_id"] for a in get(f"{base}/api/alerts", admin)[1]["alerts"]}

        page.goto(f"{base}/users/{bob}")  # no token: the page asks for one
        expect(page.locator("#token-form")).to_be_visible(timeout=UPDATE_S)
        page.goto(f"{base}/users/{bob}?token={carer}")
        expect(page.locator("#latest-bpm")).to_have_text("170", timeout=UPDATE_S)
        assert "token=" not in page.url
        page.goto(f"{base}/")  # the same tab keeps the token
        expect(page.locator(f'tr[data-user="{bob}"]')).to_be_visible(timeout=UPDATE_S)
        expect(page.locator(f'tr[data-user="{eve}"]')).to_have_count(0)
