"""What one alert webhook POST carries: the JSON body of an event, its HMAC-SHA256 signature and
the secret it is signed with (notify/webhooks.py sends them).

Body: {"event": "raised"|"cleared", "event_id", "user_id", "alert_type" ("LOW_HEART_RATE" |
"HIGH_HEART_RATE"), "active", "at_ms", "bpm"}. Headers: Content-Type application/json,
X-Heartrate-Event-Id, and X-Heartrate-Signature: sha256=<hex HMAC-SHA256 of the body under
the webhook secret>.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
from pathlib import Path

from heartrate_serve.core.alert_feed import AlertRecord

SIGNATURE_HEADER = "X-Heartrate-Signature"
EVENT_ID_HEADER = "X-Heartrate-Event-Id"


def signature(secret: bytes, body: bytes) -> str:
    """The X-Heartrate-Signature value: sha256=<hex HMAC-SHA256 of body under secret>."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def body_of(record: AlertRecord) -> bytes:
    """The JSON body of an event's POST."""
    data = {"event": "raised" if record.active else "cleared", **record.to_json()}
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def load_secret(path: Path | None, data_dir: Path) -> bytes:
    """The webhook secret: WEBHOOK_SECRET_FILE's content, or DATA_DIR/webhook.secret (made with
    32 random bytes, mode 0600, on first use)."""
    if path is not None:
        secret = path.read_bytes().strip()
        if len(secret) < 16:
            raise ValueError(f"WEBHOOK_SECRET_FILE {path}: the secret needs at least 16 bytes")
        return secret
    own = data_dir / "webhook.secret"
    if not own.exists():
        own.parent.mkdir(parents=True, exist_ok=True)
        # "x": another replica may win the race to create it.
        with contextlib.suppress(FileExistsError), open(own, "x", encoding="ascii") as f:
            own.chmod(0o600)
            f.write(secrets.token_hex(32) + "\n")
    return own.read_bytes().strip()
