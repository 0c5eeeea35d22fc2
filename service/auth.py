"""Per-user authorization with JWTs: who the caller is (verify) and what it may do (allow).

The service core (service/service.py) calls this once per call, before any work, with the value
of the call's `authorization` metadata; the adapters only hand that value on.

Tokens: `Authorization: Bearer <jwt>`, signed RS256 or ES256 (a PEM public key, or a JWKS file
whose keys are chosen by `kid`, for rotation) or HS256 (a shared secret file, small setups).
The algorithm is pinned by the key: never `none`, never HS256 with a public key. `exp` is
required (LEEWAY_S of clock skew allowed); `iss` and `aud` are checked when configured.

Claims: `sub` is the caller's user_id; `scope` (space-separated) grants
  heartrate:write  submit, stream, batch and set profile, for sub;
  heartrate:read   status, get profile and zones over stored readings, for sub and for the users
                   listed in a `users` claim (caregivers, clinicians);
  heartrate:admin  both, for any user.
Zones over readings sent in the request need any valid token. The rights model (scopes,
Right, Principal, refusal reasons) is in service/principal.py.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from heartrate_serve.core.errors import PermissionDenied
from heartrate_serve.service.principal import (
    SCOPE_ADMIN,
    SCOPE_READ,
    SCOPE_WRITE,
    AuthFailed,
    FailReason,
    Principal,
    Right,
    principal_from_claims,
)
from heartrate_serve.settings import Settings

# Clock skew tolerated on exp / nbf / iat, seconds.
LEEWAY_S = 30
# Verified tokens kept (each until its exp): a repeated token costs a dict lookup, not a
# signature check (ES256 verify ~0.1 ms, RS256 ~0.05 ms).
CACHE_SIZE = 10_000
# Longest accepted authorization value: a JWT is a few hundred bytes; this bounds the work a
# hostile caller can ask for.
MAX_TOKEN_BYTES = 8192
# Public-key algorithms accepted, per key type; HS256 only with a secret.
_ASYMMETRIC = {"RSA": "RS256", "EC": "ES256"}


@dataclass(frozen=True)
class _Key:
    key: Any
    algorithm: str


class KeySet:
    """Verification keys by kid ('' for a single unnamed key), each pinned to one algorithm."""

    def __init__(self, keys: dict[str, _Key]) -> None:
        if not keys:
            raise ValueError("no verification key")
        self._keys = keys

    @classmethod
    def from_public_file(cls, path: Path) -> KeySet:
        """A PEM public key (RSA -> RS256, EC P-256 -> ES256) or a JWKS JSON file."""
        data = path.read_bytes()
        if data.lstrip().startswith(b"{"):
            return cls._from_jwks(json.loads(data), path)
        key = serialization.load_pem_public_key(data)
        if isinstance(key, rsa.RSAPublicKey):
            return cls({"": _Key(key, "RS256")})
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            return cls({"": _Key(key, "ES256")})
        raise ValueError(f"{path}: only RSA and EC P-256 public keys are supported")

    @classmethod
    def _from_jwks(cls, doc: Any, path: Path) -> KeySet:
        entries = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{path}: a JWKS needs a non-empty 'keys' list")
        keys: dict[str, _Key] = {}
        for entry in entries:
            kty = entry.get("kty") if isinstance(entry, dict) else None
            if kty not in _ASYMMETRIC:
                raise ValueError(f"{path}: key type {kty!r} not supported (RSA or EC keys only)")
            algorithm = _ASYMMETRIC[kty]
            if entry.get("alg", algorithm) != algorithm:
                raise ValueError(f"{path}: {kty} keys are used with {algorithm} only")
            kid = str(entry.get("kid", ""))
            if kid in keys:
                raise ValueError(f"{path}: two keys with kid {kid!r}")
            keys[kid] = _Key(jwt.PyJWK(entry, algorithm).key, algorithm)
        if len(keys) > 1 and "" in keys:
            raise ValueError(f"{path}: with several keys every key needs a kid")
        return cls(keys)

    @classmethod
    def from_secret_file(cls, path: Path) -> KeySet:
        """An HS256 shared secret (the file's bytes, a trailing newline dropped)."""
        secret = path.read_bytes().rstrip(b"\r\n")
        if len(secret) < 32:
            raise ValueError(f"{path}: an HS256 secret needs at least 32 bytes")
        return cls({"": _Key(secret, "HS256")})

    def pick(self, header: dict[str, Any]) -> _Key:
        """The key for a token header; AuthFailed when none fits."""
        kid = header.get("kid")
        if kid is not None and str(kid) in self._keys:
            key = self._keys[str(kid)]
        elif len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        else:
            raise AuthFailed(FailReason.UNKNOWN_KEY, "token kid matches no configured key")
        if header.get("alg") != key.algorithm:
            raise AuthFailed(
                FailReason.BAD_SIGNATURE,
                f"token algorithm {header.get('alg')!r} not accepted (expected {key.algorithm})",
            )
        return key


class Authenticator:
    """Verifies bearer tokens and answers what their holder may do."""

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: int = LEEWAY_S,
        clock_s: Callable[[], float] = time.time,
        on_failure: Callable[[FailReason], None] | None = None,
    ) -> None:
        self._keys = keys
        self._issuer, self._audience = issuer, audience
        self._leeway = leeway_s
        self._clock = clock_s
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self.on_failure = on_failure or (lambda reason: None)

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller of a call whose `authorization` metadata is this; AuthFailed otherwise."""
        try:
            return self._authenticate(authorization)
        except AuthFailed as error:
            self.on_failure(error.reason)
            raise

    def _authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthFailed(
                FailReason.MISSING, "missing authorization metadata: send 'Bearer <token>'"
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthFailed(
                FailReason.MALFORMED, "authorization metadata must be 'Bearer <token>'"
            )
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthFailed(FailReason.MALFORMED, f"token longer than {MAX_TOKEN_BYTES} bytes")
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.exp + self._leeway >= now:
                self._cache.move_to_end(token)
                return cached
            del self._cache[token]
            raise AuthFailed(FailReason.EXPIRED, "token expired")
        principal = self._verify(token, now)
        self._cache[token] = principal
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str, now: float) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthFailed(FailReason.MALFORMED, "token is not a JWT") from None
        key = self._keys.pick(header)
        # Time claims are checked below against this Authenticator's clock (PyJWT's own
        # check would read the system clock).
        options: dict[str, Any] = {
            "require": ["exp", "sub"],
            "verify_aud": bool(self._audience),
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        }
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailed(FailReason.EXPIRED, "token expired") from None
        except jwt.InvalidIssuerError:
            raise AuthFailed(FailReason.WRONG_ISSUER, "token issuer not accepted") from None
        except jwt.InvalidAudienceError:
            raise AuthFailed(FailReason.WRONG_AUDIENCE, "token audience not accepted") from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthFailed(FailReason.BAD_CLAIMS, f"token lacks claim {error.claim!r}") from None
        except jwt.InvalidSignatureError:
            raise AuthFailed(FailReason.BAD_SIGNATURE, "token signature does not verify") from None
        except jwt.PyJWTError as error:
            raise AuthFailed(FailReason.MALFORMED, f"token rejected: {_safe(error)}") from None
        principal = principal_from_claims(claims)
        if principal.exp + self._leeway < now:
            raise AuthFailed(FailReason.EXPIRED, "token expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf - self._leeway > now:
            raise AuthFailed(FailReason.BAD_CLAIMS, "token not valid yet (nbf)")
        return principal

    def require(self, principal: Principal, right: Right, user: str) -> None:
        """PermissionDenied (saying what is missing) unless principal has right on user."""
        if not principal.may(right, user):
            self.on_failure(FailReason.FORBIDDEN)
            raise PermissionDenied(principal.deny_reason(right, user))

    def still_valid(self, principal: Principal) -> None:
        """AuthFailed when the token of a long call (a stream) has expired since it began."""
        if principal.exp + self._leeway < self._clock():
            self.on_failure(FailReason.EXPIRED)
            raise AuthFailed(FailReason.EXPIRED, "token expired during the stream")


def _safe(error: Exception) -> str:
    """An error's text, cut short (PyJWT's texts never contain the token)."""
    return str(error)[:200]


def authenticator_from_settings(
    settings: Settings, on_failure: Callable[[FailReason], None] | None = None
) -> Authenticator | None:
    """The Authenticator AUTH_MODE asks for (None for none); ValueError with a clear message
    when jwt has no usable key."""
    if settings.effective_auth_mode == "none":
        return None
    public, secret = settings.auth_jwt_public_key_file, settings.auth_jwt_secret_file
    if public is None and secret is None:
        raise ValueError(
            "AUTH_MODE=jwt (the default when GRPC_HOST is not loopback) needs "
            "AUTH_JWT_PUBLIC_KEY_FILE (PEM or JWKS) or AUTH_JWT_SECRET_FILE; `make run` creates "
            "a development key pair in DATA_DIR/auth when neither is set"
        )
    path = public or secret
    assert path is not None
    try:
        keys = KeySet.from_public_file(path) if public else KeySet.from_secret_file(path)
    except (OSError, ValueError, TypeError, jwt.PyJWTError) as error:
        var = "AUTH_JWT_PUBLIC_KEY_FILE" if public else "AUTH_JWT_SECRET_FILE"
        raise ValueError(f"{var}={path}: not a usable key: {error}") from None
    return Authenticator(
        keys,
        issuer=settings.auth_jwt_issuer,
        audience=settings.auth_jwt_audience,
        on_failure=on_failure,
    )


__all__ = [
    "SCOPE_ADMIN",
    "SCOPE_READ",
    "SCOPE_WRITE",
    "AuthFailed",
    "Authenticator",
    "FailReason",
    "KeySet",
    "Principal",
    "Right",
    "authenticator_from_settings",
]
