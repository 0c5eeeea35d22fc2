"""Alert webhooks through the real service: a profile's webhook_url on a loopback receiver gets
the raised and cleared events as signed JSON POSTs."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import pytest

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from tests.support.service import Service
from tests.support.webhook_receiver import receiver

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
Stub = pb_grpc.HeartRateMonitorStub


async def test_profile_webhook_receives_signed_events(stub: Stub, service: Service) -> None:
    u = f"h-{uuid.uuid4().hex[:12]}"
    async with receiver() as rec:
        profile = pb.UserProfile(user_id=u, age=40, webhook_url=rec.url)
        saved = await stub.SetUserProfile(pb.SetUserProfileRequest(profile=profile))
        assert saved.profile.webhook_url == rec.url
        t0 = int(time.time() * 1000) - 60_000
        for i, bpm in enumerate([175, 70, 70, 70]):
            req = pb.HeartRateRequest(user_id=u, bpm=bpm, timestamp_ms=t0 + 1000 * i)
            assert (await stub.SubmitHeartRate(req)).success
        # Guard: a lease left by an ingress replica an earlier test killed lapses within 10 s.
        got = await rec.wait_for(2, timeout_s=40)
    assert [(b["user_id"], b["event"], b["alert_type"], b["bpm"]) for b in got] == [
        (u, "raised", "HIGH_HEART_RATE", 175),
        (u, "cleared", "HIGH_HEART_RATE", 70),
    ]
    secret = (service.launcher.workdir / "data" / "webhook.secret").read_bytes().strip()
    for _body, headers, raw in rec.got:
        want = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
        assert headers["X-Heartrate-Signature"] == want


async def test_a_bad_webhook_url_is_invalid_argument(stub: Stub) -> None:
    import grpc

    profile = pb.UserProfile(user_id="h-bad", webhook_url="ftp://x")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.SetUserProfile(pb.SetUserProfileRequest(profile=profile))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "webhook_url" in (info.value.details() or "")
