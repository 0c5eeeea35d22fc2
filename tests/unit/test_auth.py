"""service/auth.py: token verification (real keys, real signatures) and the rights table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from heartrate_serve.core.errors import PermissionDenied
from heartrate_serve.service.auth import (
    Authenticator,
    AuthFailed,
    FailReason,
    KeySet,
    Principal,
    Right,
    authenticator_from_settings,
)
from heartrate_serve.settings import Settings

NOW = 1_800_000_000


def _pem_public(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(key: Any, alg: str, **claims: Any) -> str:
    body = {"sub": "alice", "scope": "heartrate:write", "exp": NOW + 600, **claims}
    kid = body.pop("kid", None)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


def auth_with(path: Path, **kw: Any) -> Authenticator:
    failures: list[FailReason] = []
    a = Authenticator(KeySet.from_public_file(path), clock_s=lambda: NOW, **kw)
    a.on_failure = failures.append
    a.failures = failures  # type: ignore[attr-defined]
    return a


def test_es256_and_rs256_tokens_verify(tmp_path: Path, ec_key: Any, rsa_key: Any) -> None:
    for name, key, alg in (("ec", ec_key, "ES256"), ("rsa", rsa_key, "RS256")):
        path = tmp_path / f"{name}.pem"
        path.write_bytes(_pem_public(key))
        p = auth_with(path).authenticate("Bearer " + token(key, alg, users=["bob"]))
        assert p == Principal(
            "alice", frozenset({"heartrate:write"}), frozenset({"bob"}), NOW + 600
        )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, FailReason.MISSING),
        ("", FailReason.MISSING),
        ("Basic abc", FailReason.MALFORMED),
        ("Bearer", FailReason.MALFORMED),
        ("Bearer not.a.jwt", FailReason.MALFORMED),
        ("Bearer " + "a" * 9000, FailReason.MALFORMED),
    ],
)
def test_missing_and_malformed(tmp_path: Path, ec_key: Any, header: Any, reason: Any) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(_pem_public(ec_key))
    a = auth_with(path)
    with pytest.raises(AuthFailed) as info:
        a.authenticate(header)
    assert info.value.reason is reason
    assert a.failures == [reason]  # type: ignore[attr-defined]


def test_refused_tokens(tmp_path: Path, ec_key: Any, rsa_key: Any) -> None:
    """Expired (beyond the leeway), no exp, wrong issuer/audience, another key, alg none, and
    HS256 signed with the public key's bytes (algorithm confusion) are all refused."""
    path = tmp_path / "k.pem"
    public = _pem_public(ec_key)
    path.write_bytes(public)
    a = auth_with(path, issuer="idp", audience="hr")
    ok = {"iss": "idp", "aud": "hr"}
    other = ec.generate_private_key(ec.SECP256R1())
    unsigned = jwt.encode({"sub": "alice", "exp": NOW + 60}, None, algorithm="none")
    cases = [
        (token(ec_key, "ES256", exp=NOW - 31, **ok), FailReason.EXPIRED),
        (jwt.encode({"sub": "alice", **ok}, ec_key, algorithm="ES256"), FailReason.BAD_CLAIMS),
        (token(ec_key, "ES256", iss="evil", aud="hr"), FailReason.WRONG_ISSUER),
        (token(ec_key, "ES256", iss="idp", aud="other"), FailReason.WRONG_AUDIENCE),
        (token(other, "ES256", **ok), FailReason.BAD_SIGNATURE),
        (unsigned, FailReason.BAD_SIGNATURE),
        (_hs256_with(public, ok), FailReason.BAD_SIGNATURE),
        (token(rsa_key, "RS256", **ok), FailReason.BAD_SIGNATURE),
    ]
    for text, reason in cases:
        with pytest.raises(AuthFailed) as info:
            a.authenticate("Bearer " + text)
        assert info.value.reason is reason, text
        assert text not in str(info.value)
    # Within the leeway an expired token still passes.
    assert a.authenticate("Bearer " + token(ec_key, "ES256", exp=NOW - 29, **ok)).sub == "alice"


def _hs256_with(secret: bytes, claims: dict[str, Any]) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = {"sub": "alice", "scope": "heartrate:admin", "exp": NOW + 60, **claims}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(body).encode())
    sig = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64(sig)}"


def test_jwks_rotation_picks_the_key_by_kid(tmp_path: Path, ec_key: Any, rsa_key: Any) -> None:
    keys = []
    for kid, key in (("old", rsa_key), ("new", ec_key)):
        jwk = json.loads(_jwk(key))
        keys.append({**jwk, "kid": kid})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    a = auth_with(path)
    assert a.authenticate("Bearer " + token(rsa_key, "RS256", kid="old")).sub == "alice"
    assert a.authenticate("Bearer " + token(ec_key, "ES256", kid="new")).sub == "alice"
    with pytest.raises(AuthFailed) as info:
        a.authenticate("Bearer " + token(ec_key, "ES256", kid="gone"))
    assert info.value.reason is FailReason.UNKNOWN_KEY
    with pytest.raises(AuthFailed):  # the right key id, the wrong key
        a.authenticate("Bearer " + token(ec_key, "ES256", kid="old"))


def _jwk(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return str(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return str(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))


def test_hs256_secret_and_its_minimum_length(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * 40 + b"\n")
    a = Authenticator(KeySet.from_secret_file(secret), clock_s=lambda: NOW)
    good = jwt.encode({"sub": "bob", "exp": NOW + 5}, "s" * 40, algorithm="HS256")
    assert a.authenticate(f"Bearer {good}").sub == "bob"
    secret.write_bytes(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        KeySet.from_secret_file(secret)


def test_cached_token_expires_on_time(tmp_path: Path, ec_key: Any) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(_pem_public(ec_key))
    clock = [float(NOW)]
    a = Authenticator(KeySet.from_public_file(path), clock_s=lambda: clock[0])
    text = "Bearer " + token(ec_key, "ES256", exp=NOW + 10)
    assert a.authenticate(text).sub == "alice"
    clock[0] = NOW + 41  # exp + leeway passed: the cached principal is not served
    with pytest.raises(AuthFailed) as info:
        a.authenticate(text)
    assert info.value.reason is FailReason.EXPIRED


def test_rights_table() -> None:
    writer = Principal("alice", frozenset({"heartrate:write"}), frozenset({"bob"}), NOW)
    reader = Principal("carol", frozenset({"heartrate:read"}), frozenset({"alice"}), NOW)
    admin = Principal("root", frozenset({"heartrate:admin"}), frozenset(), NOW)
    assert writer.may(Right.WRITE, "alice") and not writer.may(Right.WRITE, "bob")
    assert not writer.may(Right.READ, "alice")  # write does not imply read
    assert reader.may(Right.READ, "carol") and reader.may(Right.READ, "alice")
    assert not reader.may(Right.READ, "bob") and not reader.may(Right.WRITE, "carol")
    assert admin.may(Right.WRITE, "anyone") and admin.may(Right.READ, "anyone")
    a = Authenticator(KeySet({"": _any_key()}))
    with pytest.raises(PermissionDenied, match="lacks scope heartrate:write"):
        a.require(reader, Right.WRITE, "carol")
    with pytest.raises(PermissionDenied, match="'bob'"):
        a.require(reader, Right.READ, "bob")


def _any_key() -> Any:
    from heartrate_serve.service.auth import _Key

    return _Key(b"x" * 32, "HS256")


def test_settings_pick_the_mode_and_refuse_jwt_without_a_key(tmp_path: Path) -> None:
    assert authenticator_from_settings(Settings()) is None  # loopback: none
    with pytest.raises(ValueError, match="AUTH_JWT_PUBLIC_KEY_FILE"):
        authenticator_from_settings(Settings(grpc_host="0.0.0.0"))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ValueError, match="not a usable key"):
        authenticator_from_settings(Settings(auth_mode="jwt", auth_jwt_public_key_file=bad))
