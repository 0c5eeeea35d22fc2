"""The one table from domain errors (core/errors.py) to gRPC status codes."""

from __future__ import annotations

import grpc

from heartrate_serve.core.errors import (
    CorruptData,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    StoreUnavailable,
    Unauthenticated,
)

# Most specific first. Anything not listed is a bug: the adapters answer INTERNAL and log it.
ERROR_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (DependencyUnavailable, grpc.StatusCode.UNAVAILABLE),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (CorruptData, grpc.StatusCode.DATA_LOSS),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
)


def status_for(error: BaseException) -> grpc.StatusCode | None:
    """The status code for an expected domain error, None for a bug."""
    for kind, code in ERROR_CODES:
        if isinstance(error, kind):
            return code
    return None
