"""StreamHeartRate's answers: one per reading, in order, each reading validated and stored with
everyone else's (the reading pipeline). Every problem with a reading is answered in its
response (success=false, a reject reason), never raised, so a stream goes on past it.

Readings of one stream are pipelined: up to STREAM_WINDOW are in flight at once (a device that
sends faster than one round trip gets its readings into the same group-commit round).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

from heartrate_serve.core.constants import RejectReason
from heartrate_serve.core.errors import (
    DependencyUnavailable,
    InvalidRequest,
    Overloaded,
    PermissionDenied,
    StoreUnavailable,
    Unauthenticated,
)
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service import convert
from heartrate_serve.service.access import Access
from heartrate_serve.service.ordered_window import ordered_map
from heartrate_serve.service.pipeline import ReadingBatch, ReadingPipeline
from heartrate_serve.service.principal import Principal, Right
from heartrate_serve.service.wire import Undecodable

# Readings of one stream in flight at once (validated and stored together, answered in order).
STREAM_WINDOW = 64


class StreamAnswers:
    """Answers the readings of StreamHeartRate calls."""

    def __init__(
        self,
        pipeline: ReadingPipeline,
        reading: Callable[[pb.HeartRateRequest], ReadingBatch],
        access: Access,
    ) -> None:
        """reading: a request as a batch of one (InvalidRequest for a bad user_id); access: the
        service core's authorization checks."""
        self._pipeline = pipeline
        self._reading = reading
        self._access = access

    def answers(
        self, requests: AsyncIterator[pb.HeartRateRequest], caller: Principal | None
    ) -> AsyncIterator[pb.HeartRateResponse]:
        """One answer per request, in order. caller None: auth off; else every reading is
        checked against the caller's token first."""
        if caller is None:
            return ordered_map(requests, self._one, STREAM_WINDOW)

        async def one(request: pb.HeartRateRequest) -> pb.HeartRateResponse:
            return await self._one_checked(caller, request)

        return ordered_map(requests, one, STREAM_WINDOW)

    async def _one_checked(
        self, caller: Principal, request: pb.HeartRateRequest
    ) -> pb.HeartRateResponse:
        """_one after the reading's auth check (answered, never raised)."""
        if isinstance(request, Undecodable):
            return rejected(RejectReason.INVALID_MESSAGE, request.error().message)
        try:
            self._access.still_valid(caller)
            request.user_id = self._access.for_user(caller, request.user_id, Right.WRITE)
        except Unauthenticated as error:
            return rejected(RejectReason.UNAUTHENTICATED, str(error))
        except PermissionDenied as error:
            return rejected(RejectReason.PERMISSION_DENIED, str(error))
        except InvalidRequest as error:
            return rejected(RejectReason.INVALID_USER_ID, str(error))
        return await self._one(request)

    async def _one(self, request: pb.HeartRateRequest) -> pb.HeartRateResponse:
        """One reading of a stream: every problem is answered in the response, never raised."""
        if isinstance(request, Undecodable):
            return rejected(RejectReason.INVALID_MESSAGE, request.error().message)
        try:
            batch = self._reading(request)
            out = await self._pipeline.submit(batch, "StreamHeartRate")
        except InvalidRequest as error:
            return rejected(RejectReason.INVALID_USER_ID, str(error))
        except StoreUnavailable as error:
            return rejected(RejectReason.STORE_UNAVAILABLE, str(error))
        except DependencyUnavailable as error:
            return rejected(RejectReason.SERVICE_UNAVAILABLE, str(error))
        except Overloaded as error:
            return rejected(RejectReason.OVERLOADED, str(error))
        return convert.reading_response(out, 0, request.bpm, int(batch.ts_ms[0]), out.rules)


def rejected(reason: RejectReason, error: str) -> pb.HeartRateResponse:
    """A stream answer for a reading that was not stored."""
    return pb.HeartRateResponse(
        success=False,
        error=error,
        reject_reason=int(reason),  # type: ignore[arg-type]
        error_detail=error,
    )


class StreamSlots:
    """Streams and watches open on this replica, at most `limit` (user_config max_open_streams)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        """Holds one slot for the block; Overloaded (before anything is read) when all are taken."""
        if self.open >= self.limit:
            raise Overloaded(
                f"the service is at capacity: {self.open} streams and watches are open on this "
                f"replica (max_open_streams {self.limit}); retry later"
            )
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1
