"""The one table from domain errors to gRPC status codes."""

from __future__ import annotations

import grpc

from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.store.store import StoreUnavailable


class NotFound(LookupError):
    """A requested entity (e.g. a user's profile) does not exist."""


# Most specific first. Anything not listed is a bug: it propagates and Serve answers INTERNAL.
ERROR_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (NotFound, grpc.StatusCode.NOT_FOUND),
)


def status_for(error: Exception) -> grpc.StatusCode | None:
    """The status code for an expected domain error, None for a bug."""
    for kind, code in ERROR_CODES:
        if isinstance(error, kind):
            return code
    return None
