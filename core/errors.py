"""Every error of the project, in one module.

The first group is what the service answers with a status, mapped to gRPC codes in one table
(service/status_codes.py); anything else reaching that table is a bug. The second group belongs
to the rooms around the service core (store codec, settings, CLI, dashboard, local runtime): each
is caught in its room and becomes an exit code, an HTTP answer or one of the first group."""

from __future__ import annotations


class InvalidRequest(ValueError):
    """A request field is missing, malformed or inconsistent (gRPC INVALID_ARGUMENT).

    Attributes:
        field: The name of the offending request field, e.g. "user_id".
        message: The human-readable explanation; it always names the field.
    """

    def __init__(
        self, field: str, message: str = "", detail: str = "", exact: bool = False
    ) -> None:
        """Builds the error for `field`; the message is prefixed with the field when it lacks it,
        unless `exact` (a text the replaced service answered, kept word for word). `detail`: a
        more precise explanation for the rich error details (default: the message)."""
        text = message or "is invalid"
        if field not in text and not exact:
            text = f"{field}: {text}"
        super().__init__(text)
        self.field = field
        self.message = text
        self.detail = detail or text
        self.exact = exact

    def __reduce__(self) -> tuple[type[InvalidRequest], tuple[str, str, str, bool]]:
        """Pickles every argument so the error survives Ray's process boundaries."""
        return (type(self), (self.field, self.message, self.detail, self.exact))


class NotFound(LookupError):
    """A requested entity (e.g. a user's profile) does not exist (gRPC NOT_FOUND)."""


class StoreUnavailable(Exception):
    """Redis is down or unreachable; the operation did not happen or its outcome is unknown
    (gRPC UNAVAILABLE)."""


class DependencyUnavailable(Exception):
    """Another part of the service (a Validator or ZoneCalculator replica) failed or could not be
    reached for this part of the work; retrying later can succeed (gRPC UNAVAILABLE)."""


class Overloaded(Exception):
    """The service is beyond capacity and sheds this work instead of queueing it
    (gRPC RESOURCE_EXHAUSTED)."""


class DeadlineExceeded(Exception):
    """The call ran out of its time (the ingress's request_timeout_s for unary calls); its work
    was dropped, or its result discarded (gRPC DEADLINE_EXCEEDED)."""


class CorruptData(Exception):
    """Stored data of one user cannot be decoded (gRPC DATA_LOSS). The message names the user and
    the part (e.g. the compacted chunk) that is damaged; other users and other parts are served."""


class Unauthenticated(Exception):
    """The call carries no usable credentials: no token, or one that is malformed, expired, badly
    signed or for another issuer/audience (gRPC UNAUTHENTICATED). The message says which, never
    the token."""


class PermissionDenied(Exception):
    """A valid token without the right for this call: the message says what is missing
    (gRPC PERMISSION_DENIED)."""


# --- The rooms around the service core ----------------------------------------------------------


class CorruptChunk(ValueError):
    """A blob is not a chunk store/codec.py wrote: bad version, truncated, checksum, codec
    error... The store turns it into CorruptData naming the user and the chunk."""


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use (heartrate_serve/settings.py);
    the message names the variable."""


class InputError(Exception):
    """Input the `heartrate` client cannot use (unreadable file, no readings, bad settings): the
    client exits 1 with the message (cli/exit_codes.py)."""


class HttpError(Exception):
    """A dashboard answer other than success (dashboard/router.py): HTTP status and a message for
    people (JSON or plain)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started (runtime/embedded_redis.py)."""


class StopRequested(Exception):
    """SIGTERM or SIGINT reached `make run`'s launcher: it unwinds and stops all it started."""
