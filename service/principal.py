"""Who a verified caller is and what it may do: the scopes and rights of the service's JWTs,
why a token is refused, and the Principal built from a verified token's claims. service/auth.py
verifies tokens and documents the claims; it re-exports these names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from heartrate_serve.core.errors import Unauthenticated

SCOPE_READ = "heartrate:read"
SCOPE_WRITE = "heartrate:write"
SCOPE_ADMIN = "heartrate:admin"


class Right(Enum):
    """What a call needs for a user."""

    READ = SCOPE_READ
    WRITE = SCOPE_WRITE


class FailReason(Enum):
    """Why a token was refused (the label of the auth-failure metric)."""

    MISSING = "missing"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    BAD_CLAIMS = "bad_claims"
    FORBIDDEN = "forbidden"  # valid token, missing right (PERMISSION_DENIED)


class AuthFailed(Unauthenticated):
    """Unauthenticated with its reason, for the metric."""

    def __init__(self, reason: FailReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[AuthFailed], tuple[FailReason, str]]:
        return (type(self), (self.reason, str(self)))


@dataclass(frozen=True)
class Principal:
    """A verified caller."""

    sub: str
    scopes: frozenset[str]
    users: frozenset[str]  # whom a reader may read besides sub
    exp: int  # Unix seconds

    def may(self, right: Right, user: str) -> bool:
        """True when this caller has `right` on `user`."""
        if SCOPE_ADMIN in self.scopes:
            return True
        if right.value not in self.scopes:
            return False
        return user == self.sub or (right is Right.READ and user in self.users)

    def deny_reason(self, right: Right, user: str) -> str:
        """What is missing for `right` on `user` (the PERMISSION_DENIED message)."""
        if right.value not in self.scopes:
            return f"the token lacks scope {right.value} (or {SCOPE_ADMIN})"
        if right is Right.READ:
            return (
                f"the token may read its sub and its users claim, not user_id {user!r} "
                f"(needs {SCOPE_ADMIN} or {user!r} in users)"
            )
        return f"the token may write only its sub, not user_id {user!r} (needs {SCOPE_ADMIN})"


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """The Principal a verified token's claims describe; AuthFailed (BAD_CLAIMS) when a claim
    has the wrong shape."""
    sub, scope, users = claims.get("sub"), claims.get("scope", ""), claims.get("users", [])
    if not isinstance(sub, str) or not sub:
        raise AuthFailed(FailReason.BAD_CLAIMS, "token sub must be a non-empty string")
    if not isinstance(scope, str):
        raise AuthFailed(FailReason.BAD_CLAIMS, "token scope must be a space-separated string")
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise AuthFailed(FailReason.BAD_CLAIMS, "token users must be a list of user_ids")
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise AuthFailed(FailReason.BAD_CLAIMS, "token exp must be a number")
    return Principal(sub, frozenset(scope.split()), frozenset(users), int(exp))
