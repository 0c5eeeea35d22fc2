"""Who a call acts for: the verified caller and the user it may touch.

With authorization off (AUTH_MODE=none, no Authenticator) every call acts for the user_id it
names; with it on, the bearer token is verified first (service/auth.py) and an empty user_id
means the token's own subject.
"""

from __future__ import annotations

from heartrate_serve.core.validation import canonical_user_id
from heartrate_serve.service.auth import Authenticator
from heartrate_serve.service.principal import Principal, Right


class Access:
    """The authorization checks of the service core's RPCs."""

    def __init__(self, auth: Authenticator | None) -> None:
        self.auth = auth

    def caller(self, authorization: str | None) -> Principal | None:
        """The verified caller (None with auth off); Unauthenticated otherwise."""
        return None if self.auth is None else self.auth.authenticate(authorization)

    def for_user(self, caller: Principal | None, user_id: str, right: Right) -> str:
        """The user_id a call acts on: as sent, or the token's sub when empty (auth on);
        InvalidRequest for a malformed one, PermissionDenied without the right."""
        if caller is None or self.auth is None:
            return user_id
        user = user_id or caller.sub
        self.auth.require(caller, right, canonical_user_id(user))
        return user

    def require(self, caller: Principal | None, right: Right, user: str) -> None:
        """PermissionDenied unless the caller may act on user with right (auth off: nothing)."""
        if caller is not None and self.auth is not None:
            self.auth.require(caller, right, user)

    def still_valid(self, caller: Principal | None) -> None:
        """Unauthenticated once the caller's token has expired (auth off: nothing); for calls
        that last, checked again on every message."""
        if caller is not None and self.auth is not None:
            self.auth.still_valid(caller)
