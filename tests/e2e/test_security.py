"""TLS, mutual TLS and per-user JWT authorization on the real service (issue 11's rules).

Two services of their own: (1) TLS + AUTH_MODE=jwt with no key configured (the launcher makes the
development key pair; tokens are signed here with it, and by the CLI) and an issuer check;
(2) mutual TLS + an HS256 secret, on GRPC_HOST=::1. Certificates are made by the test
(tests/support/certs.py). Every call goes to the real gRPC port over loopback.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.loadtest.service import ServiceProcess
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.dev_keys import dev_key_paths, issue_token
from tests.support.certs import Pki, make_pki
from tests.support.service import running_service

pytestmark = [pytest.mark.e2e]
ISSUER = "hr-test"
SECRET = "an HS256 secret of more than thirty-two bytes"
Code = grpc.StatusCode
RW = ["heartrate:read", "heartrate:write"]
T0 = 1_790_000_000_000  # a fixed past instant for zone requests


@dataclass
class Secured:
    svc: ServiceProcess
    pki: Pki
    target: str

    def channel(self, *, client_cert: bool = False, pki: Pki | None = None) -> grpc.Channel:
        p = pki or self.pki
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca.read_bytes(),
            private_key=p.client_key.read_bytes() if client_cert else None,
            certificate_chain=p.client_cert.read_bytes() if client_cert else None,
        )
        return grpc.secure_channel(self.target, creds)


def user() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def tls_jwt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    work = tmp_path_factory.mktemp("tls-jwt")
    pki = make_pki(work / "pki")
    env = {
        "TLS_CERT_FILE": str(pki.server_cert),
        "TLS_KEY_FILE": str(pki.server_key),
        "AUTH_MODE": "jwt",
        "AUTH_JWT_ISSUER": ISSUER,
        "LOG_LEVEL": "INFO",
    }
    with running_service(work, **env) as svc:
        yield Secured(svc, pki, f"localhost:{svc.grpc_port}")


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    work = tmp_path_factory.mktemp("mtls")
    pki = make_pki(work / "pki")
    secret = work / "jwt-secret"
    secret.write_text(SECRET)
    env = {
        "GRPC_HOST": "::1",
        "TLS_CERT_FILE": str(pki.server_cert),
        "TLS_KEY_FILE": str(pki.server_key),
        "TLS_CLIENT_CA_FILE": str(pki.ca),
        "AUTH_JWT_SECRET_FILE": str(secret),
        "AUTH_MODE": "jwt",  # on loopback (::1) the default would be none
    }
    with running_service(work, **env) as svc:
        yield Secured(svc, pki, f"[::1]:{svc.grpc_port}")


def dev_token(s: Secured, sub: str, scopes: list[str], **kw: Any) -> str:
    private, _ = dev_key_paths(s.svc.workdir / "data")
    return issue_token(private, user=sub, scopes=scopes, issuer=ISSUER, **kw)


def md(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def reading(u: str, bpm: int = 72) -> pb.HeartRateRequest:
    return pb.HeartRateRequest(user_id=u, bpm=bpm, timestamp_ms=int(time.time() * 1000))


def code_of(call: Any) -> tuple[Code, str]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return Code.OK, ""


# --- TLS ---------------------------------------------------------------------------------------


def test_tls_only_and_health_without_a_token(tls_jwt: Secured) -> None:
    """The port answers TLS (health needs no token); a plaintext client gets nowhere; the
    development key pair was made in DATA_DIR/auth with mode 0600 and the launcher said how to
    issue a token."""
    with tls_jwt.channel() as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{tls_jwt.svc.grpc_port}") as plain:
        code, _ = code_of(
            lambda: health_pb2_grpc.HealthStub(plain).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        )
        assert code == Code.UNAVAILABLE
    private, _ = dev_key_paths(tls_jwt.svc.workdir / "data")
    assert private.stat().st_mode & 0o777 == 0o600
    assert "heartrate token issue" in tls_jwt.svc.log_tail(100_000)


# --- authentication ----------------------------------------------------------------------------


def _bad_tokens(s: Secured) -> dict[str, str]:
    private, public = dev_key_paths(s.svc.workdir / "data")
    expired = dev_token(s, "alice", RW, ttl_s=-120)
    other_key = make_pki(s.svc.workdir / "other")  # an unrelated EC key
    forged = issue_token(other_key.client_key, user="alice", scopes=RW, issuer=ISSUER)
    wrong_iss = issue_token(private, user="alice", scopes=RW, issuer="evil")
    none_alg = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, None, algorithm="none")
    return {
        "malformed": "not-a-jwt",
        "expired": expired,
        "badly signed": forged,
        "wrong issuer": wrong_iss,
        "alg none": none_alg,
        "HS256 with the public key": _hs256(public.read_bytes()),
    }


def _hs256(secret: bytes) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims = {"sub": "alice", "iss": ISSUER, "scope": "heartrate:admin"}
    claims["exp"] = int(time.time()) + 60  # type: ignore[assignment]
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_every_rpc_needs_a_valid_token(tls_jwt: Secured) -> None:
    """No token, and malformed, expired, badly signed, wrong-issuer, alg-none and algorithm-
    confusion tokens: UNAUTHENTICATED on every RPC (the stream included), nothing stored."""
    u = user()
    calls = {
        "SubmitHeartRate": lambda s, m: s.SubmitHeartRate(reading(u), metadata=m, timeout=10),
        "GetHeartRateStatus": lambda s, m: s.GetHeartRateStatus(
            pb.StatusRequest(user_id=u), metadata=m, timeout=10
        ),
        "SubmitHeartRateBatch": lambda s, m: s.SubmitHeartRateBatch(
            pb.HeartRateBatchRequest(user_id=u, bpm=[70], timestamps_ms=[int(time.time() * 1e3)]),
            metadata=m,
            timeout=10,
        ),
        "CalculateExerciseZones": lambda s, m: s.CalculateExerciseZones(
            pb.ExerciseZoneRequest(
                user_id=u, age=30, bpm=[100, 110], timestamps_ms=[T0, T0 + 1000]
            ),
            metadata=m,
            timeout=10,
        ),
        "SetUserProfile": lambda s, m: s.SetUserProfile(
            pb.SetUserProfileRequest(profile=pb.UserProfile(user_id=u, age=30)),
            metadata=m,
            timeout=10,
        ),
        "GetUserProfile": lambda s, m: s.GetUserProfile(
            pb.GetUserProfileRequest(user_id=u), metadata=m, timeout=10
        ),
        "StreamHeartRate": lambda s, m: list(
            s.StreamHeartRate(iter([reading(u)]), metadata=m, timeout=10)
        ),
    }
    tokens: dict[str, str | None] = {"missing": None, **_bad_tokens(tls_jwt)}
    with tls_jwt.channel() as ch:
        stub = pb_grpc.HeartRateMonitorStub(ch)
        for what, token in tokens.items():
            meta = md(token) if token else None
            for rpc, call in calls.items():
                code, details = code_of(lambda: call(stub, meta))  # noqa: B023
                assert code == Code.UNAUTHENTICATED, (what, rpc, code, details)
                if token:
                    assert token not in details
        admin = md(dev_token(tls_jwt, "root", ["heartrate:admin"]))
        status = stub.GetHeartRateStatus(pb.StatusRequest(user_id=u), metadata=admin, timeout=10)
        assert list(status.recent_measurements) == []


def test_stream_refusal_survives_serve_s_python_proxy(tmp_path: Path) -> None:
    """INGRESS_MODE=proxy (Serve's Python gRPC proxy, also HAProxy mode's fallback path): a
    stream with no or a bad token ends UNAUTHENTICATED, not OK with no answers; a good one works.

    The proxy copies the replica's status onto the call only with an answer; a refused stream
    has none (clean-clone CI once saw OK here in HAProxy mode, when a call took the fallback)."""
    with running_service(
        tmp_path, INGRESS_MODE="proxy", AUTH_MODE="jwt", AUTH_JWT_ISSUER=ISSUER
    ) as svc:
        u = user()
        with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
            stub = pb_grpc.HeartRateMonitorStub(ch)
            call = stub.StreamHeartRate
            for meta in (None, md("not-a-jwt"), md(_hs256(SECRET.encode()))):
                for _ in range(3):  # the proxy path every time here, not by chance
                    code, details = code_of(
                        lambda m=meta: list(call(iter([reading(u)]), metadata=m))
                    )
                    assert code == Code.UNAUTHENTICATED, (meta, code, details)
            code, _ = code_of(lambda: stub.SubmitHeartRate(reading(u), timeout=10))
            assert code == Code.UNAUTHENTICATED
            private, _ = dev_key_paths(svc.workdir / "data")
            w = md(issue_token(private, user=u, scopes=RW, issuer=ISSUER))
            answers = list(stub.StreamHeartRate(iter([reading(u, 80)]), metadata=w, timeout=20))
            assert [a.success for a in answers] == [True]
            got = stub.GetHeartRateStatus(pb.StatusRequest(user_id=u), metadata=w, timeout=10)
            assert [m.bpm for m in got.recent_measurements] == [80]


# --- authorization -----------------------------------------------------------------------------


def test_rights_by_scope_sub_and_users_claim(tls_jwt: Secured) -> None:
    """write: own sub only (empty user_id means sub); read: sub and the users claim; admin:
    anyone; a valid token without the right: PERMISSION_DENIED saying what is missing."""
    alice, bob, carol = user(), user(), user()
    with tls_jwt.channel() as ch:
        stub = pb_grpc.HeartRateMonitorStub(ch)
        w = md(dev_token(tls_jwt, alice, ["heartrate:write"]))
        assert stub.SubmitHeartRate(reading(alice, 70), metadata=w, timeout=10).success
        assert stub.SubmitHeartRate(reading("", 71), metadata=w, timeout=10).success  # = alice
        code, details = code_of(
            lambda: stub.SubmitHeartRate(reading(bob, 72), metadata=w, timeout=10)
        )
        assert code == Code.PERMISSION_DENIED and bob in details
        code, details = code_of(
            lambda: stub.GetHeartRateStatus(pb.StatusRequest(user_id=alice), metadata=w)
        )
        assert code == Code.PERMISSION_DENIED and "heartrate:read" in details

        r = md(dev_token(tls_jwt, carol, ["heartrate:read"], users=[alice]))
        got = stub.GetHeartRateStatus(pb.StatusRequest(user_id=alice), metadata=r, timeout=10)
        assert sorted(m.bpm for m in got.recent_measurements) == [70, 71]
        code, _ = code_of(
            lambda: stub.GetHeartRateStatus(pb.StatusRequest(user_id=bob), metadata=r)
        )
        assert code == Code.PERMISSION_DENIED
        code, details = code_of(lambda: stub.SubmitHeartRate(reading(carol), metadata=r))
        assert code == Code.PERMISSION_DENIED and "heartrate:write" in details

        a = md(dev_token(tls_jwt, "root", ["heartrate:admin"]))
        assert stub.SubmitHeartRate(reading(bob, 90), metadata=a, timeout=10).success
        got = stub.GetHeartRateStatus(pb.StatusRequest(user_id=bob), metadata=a, timeout=10)
        assert [m.bpm for m in got.recent_measurements] == [90]

        # Profiles: write for sub, read for readers of the user.
        rw = md(dev_token(tls_jwt, alice, RW))
        stub.SetUserProfile(
            pb.SetUserProfileRequest(profile=pb.UserProfile(age=40)), metadata=rw, timeout=10
        )
        got_p = stub.GetUserProfile(pb.GetUserProfileRequest(user_id=alice), metadata=r)
        assert got_p.profile.user_id == alice and got_p.profile.age == 40
        code, _ = code_of(
            lambda: stub.SetUserProfile(
                pb.SetUserProfileRequest(profile=pb.UserProfile(user_id=bob, age=40)),
                metadata=rw,
            )
        )
        assert code == Code.PERMISSION_DENIED

        # Zones: sent readings with any valid token; a stored range needs read rights.
        t = int(time.time() * 1000) - 10_000
        zones = pb.ExerciseZoneRequest(
            age=30, bpm=[100, 120, 140], timestamps_ms=[t, t + 1000, t + 2000]
        )
        assert stub.CalculateExerciseZones(zones, metadata=w, timeout=10).reading_count == 3
        now = int(time.time() * 1000)
        stored = pb.ExerciseZoneRequest(
            user_id=alice,
            stored_range=pb.StoredRange(
                from_timestamp_ms=now - 600_000, to_timestamp_ms=now + 1000
            ),
        )
        assert stub.CalculateExerciseZones(stored, metadata=r, timeout=10).reading_count == 2
        code, _ = code_of(lambda: stub.CalculateExerciseZones(stored, metadata=w))
        assert code == Code.PERMISSION_DENIED


def test_stream_checks_every_message(tls_jwt: Secured) -> None:
    """A stream's readings for the token's sub are stored; one for another user is answered
    REJECT_REASON_PERMISSION_DENIED and never stored; the stream goes on."""
    alice, bob = user(), user()
    t0 = int(time.time() * 1000)
    msgs = [
        pb.HeartRateRequest(user_id=alice, bpm=70, timestamp_ms=t0),
        pb.HeartRateRequest(user_id=bob, bpm=71, timestamp_ms=t0 + 1),
        pb.HeartRateRequest(user_id="", bpm=72, timestamp_ms=t0 + 2),
    ]
    with tls_jwt.channel() as ch:
        stub = pb_grpc.HeartRateMonitorStub(ch)
        w = md(dev_token(tls_jwt, alice, ["heartrate:write"]))
        answers = list(stub.StreamHeartRate(iter(msgs), metadata=w, timeout=20))
        assert [a.success for a in answers] == [True, False, True]
        assert answers[1].reject_reason == pb.REJECT_REASON_PERMISSION_DENIED
        assert bob in answers[1].error
        a = md(dev_token(tls_jwt, "root", ["heartrate:admin"]))
        got = {
            u: [m.bpm for m in stub.GetHeartRateStatus(pb.StatusRequest(user_id=u), metadata=a)
                .recent_measurements]
            for u in (alice, bob)
        }  # fmt: skip
        assert sorted(got[alice]) == [70, 72] and got[bob] == []


def test_cli_token_issue_gives_a_working_token(tls_jwt: Secured) -> None:
    """`heartrate token issue` signs with the development key in DATA_DIR; the token works."""
    u = user()
    out = subprocess.run(
        [sys.executable, "-m", "heartrate_serve.cli.main", "token", "issue", "--user", u,
         "--scope", "heartrate:read heartrate:write", "--ttl", "10m"],
        env={"DATA_DIR": str(tls_jwt.svc.workdir / "data"), "AUTH_JWT_ISSUER": ISSUER,
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    token = out.stdout.strip()
    with tls_jwt.channel() as ch:
        stub = pb_grpc.HeartRateMonitorStub(ch)
        assert stub.SubmitHeartRate(reading(""), metadata=md(token), timeout=10).success
        got = stub.GetHeartRateStatus(pb.StatusRequest(), metadata=md(token), timeout=10)
        assert [m.bpm for m in got.recent_measurements] == [72]


def test_tokens_never_reach_the_logs_and_failures_are_counted(tls_jwt: Secured) -> None:
    """No token text in the launcher output or LOG_DIR (LOG_LEVEL=INFO); the auth-failure
    counter has a series per reason."""
    token = dev_token(tls_jwt, user(), ["heartrate:read"])
    with tls_jwt.channel() as ch:
        stub = pb_grpc.HeartRateMonitorStub(ch)
        code_of(lambda: stub.SubmitHeartRate(reading(""), metadata=md(token), timeout=10))
        code_of(lambda: stub.SubmitHeartRate(reading(""), timeout=10))
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = _metrics(tls_jwt.svc.metrics_port)
        if re.search(r'heartrate_auth_failures_total\{[^}]*reason="missing"', text) and re.search(
            r'heartrate_auth_failures_total\{[^}]*reason="forbidden"', text
        ):
            break
        time.sleep(2)
    assert 'reason="missing"' in text and 'reason="forbidden"' in text
    logs = tls_jwt.svc.log_tail(10_000_000)
    for path in (tls_jwt.svc.workdir / "log").rglob("*"):
        if path.is_file():
            logs += path.read_text(errors="replace")
    signature = token.rsplit(".", 1)[1]
    assert signature not in logs


def _metrics(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


# --- mutual TLS --------------------------------------------------------------------------------


def test_mtls_requires_a_client_certificate_from_the_ca(mtls: Secured) -> None:
    """On GRPC_HOST=::1: health works without a client certificate; other calls without one are
    UNAUTHENTICATED; a certificate from another CA fails the handshake; with a good certificate
    and an HS256 token the call succeeds."""
    u = user()
    token = jwt.encode(
        {"sub": u, "scope": "heartrate:write", "exp": int(time.time()) + 300}, SECRET, "HS256"
    )
    with mtls.channel() as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        code, details = code_of(
            lambda: pb_grpc.HeartRateMonitorStub(ch).SubmitHeartRate(
                reading(u), metadata=md(token), timeout=10
            )
        )
        assert code == Code.UNAUTHENTICATED and "client certificate" in details
    stranger = make_pki(mtls.svc.workdir / "stranger")
    with mtls.channel(client_cert=True, pki=stranger) as ch:
        code, _ = code_of(
            lambda: pb_grpc.HeartRateMonitorStub(ch).SubmitHeartRate(
                reading(u), metadata=md(token), timeout=10
            )
        )
        assert code == Code.UNAVAILABLE
    with mtls.channel(client_cert=True) as ch:
        stub = pb_grpc.HeartRateMonitorStub(ch)
        assert stub.SubmitHeartRate(reading(u), metadata=md(token), timeout=10).success
        code, _ = code_of(lambda: stub.SubmitHeartRate(reading(u), timeout=10))
        assert code == Code.UNAUTHENTICATED


def test_bad_key_is_a_clear_start_up_error(tmp_path: Path) -> None:
    """AUTH_MODE=jwt with a file that is not a key: the launcher exits non-zero at once,
    naming the variable (before Ray starts)."""
    bad = tmp_path / "key.pem"
    bad.write_text("not a key")
    svc = ServiceProcess(tmp_path, env={"AUTH_MODE": "jwt", "AUTH_JWT_PUBLIC_KEY_FILE": str(bad)})
    svc.start()
    try:
        assert svc.process is not None
        code = svc.process.wait(timeout=60)
    finally:
        svc.stop()
    assert code != 0
    assert "AUTH_JWT_PUBLIC_KEY_FILE" in svc.log_tail() and "not a usable key" in svc.log_tail()
