"""The one table from domain errors (core/errors.py) to gRPC status codes."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from heartrate_serve.core.errors import (
    CorruptData,
    DeadlineExceeded,
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
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (CorruptData, grpc.StatusCode.DATA_LOSS),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
)


# The trailing-metadata key of gRPC's rich error model (google.rpc.Status, binary).
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def rich_details(error: BaseException) -> bytes | None:
    """google.rpc.Status with a BadRequest field violation (the field and the precise detail) for
    an InvalidRequest, serialized for `grpc-status-details-bin`; None for other errors.
    Clients read it with grpc_status.rpc_status.from_call()."""
    if not isinstance(error, InvalidRequest):
        return None
    violation = error_details_pb2.BadRequest.FieldViolation(
        field=error.field, description=error.detail
    )
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    status = status_pb2.Status(code=code, message=str(error), details=[detail])
    return bytes(status.SerializeToString())


def status_for(error: BaseException) -> grpc.StatusCode | None:
    """The status code for an expected domain error, None for a bug."""
    for kind, code in ERROR_CODES:
        if isinstance(error, kind):
            return code
    return None
