"""The webhook's pure parts: body, signature, secret file, and the profile's webhook_url check."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from heartrate_serve.core.alert_feed import AlertRecord
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.profiles import UserProfile, validate_profile
from heartrate_serve.notify.webhook_message import body_of, load_secret, signature


def test_body_and_signature() -> None:
    record = AlertRecord((1700000000123, 2), "u1", 1, False, 1699999999000, 71)
    body = body_of(record)
    assert json.loads(body) == {
        "event": "cleared",
        "event_id": "1700000000123-2:u1",
        "user_id": "u1",
        "alert_type": "LOW_HEART_RATE",
        "active": False,
        "at_ms": 1699999999000,
        "bpm": 71,
    }
    assert (
        signature(b"k" * 16, body)
        == "sha256=" + hmac.new(b"k" * 16, body, hashlib.sha256).hexdigest()
    )


def test_secret_file_or_one_made_in_data_dir(tmp_path: Path) -> None:
    made = load_secret(None, tmp_path / "data")
    assert len(made) == 64 and load_secret(None, tmp_path / "data") == made
    assert (tmp_path / "data" / "webhook.secret").stat().st_mode & 0o777 == 0o600
    given = tmp_path / "secret"
    given.write_text("x" * 20 + "\n")
    assert load_secret(given, tmp_path) == b"x" * 20
    given.write_text("short")
    with pytest.raises(ValueError, match="16 bytes"):
        load_secret(given, tmp_path)


@pytest.mark.parametrize("url", ["", "http://127.0.0.1:9/x", "https://hooks.example.org/a?b=c"])
def test_webhook_url_accepted(url: str) -> None:
    assert validate_profile(UserProfile("u", webhook_url=url)).webhook_url == url


@pytest.mark.parametrize(
    "url", ["ftp://x", "http://", "hooks.example.org", "http://a b", "x" * 3000]
)
def test_webhook_url_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_profile(UserProfile("u", webhook_url=url))
    assert info.value.field == "webhook_url"


def test_profile_round_trip_keeps_the_url() -> None:
    p = UserProfile("u", age=30, webhook_url="http://h/x")
    assert UserProfile.from_dict(p.to_dict()) == p


async def test_an_unwritable_data_dir_turns_webhooks_off_not_the_replica(tmp_path: Path) -> None:
    from heartrate_serve.core.alerts import AlertRules
    from heartrate_serve.notify.webhooks import start_dispatcher
    from heartrate_serve.store.store import ReadingStore

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = ReadingStore("redis://127.0.0.1:1", retention_ms=1, alert_rules=AlertRules())
    assert start_dispatcher(store, None, None, blocker / "data") is None
    with pytest.raises(OSError):  # a named secret file that is missing is a setup error
        start_dispatcher(store, None, tmp_path / "missing", tmp_path)
