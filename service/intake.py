"""From protobuf readings to the pipeline and back: one path for every way readings arrive.

Shared by the ingress deployment and the plain baseline server (loadtest/), so the benchmark
compares the same code with and without Ray Serve around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from heartrate_serve.core.constants import RejectReason
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service import convert
from heartrate_serve.service.pipeline import (
    BatchOutcome,
    ReadingBatch,
    ReadingPipeline,
    ServerStamps,
)
from heartrate_serve.store.store import StoreUnavailable

STORE_DOWN = "Redis is down or unreachable: readings were not stored; retry later"


def now_ms() -> int:
    """The server clock, Unix milliseconds."""
    return time.time_ns() // 1_000_000


class Intake:
    """Converts, stamps and submits readings; answers in the contract's terms."""

    def __init__(self, pipeline: ReadingPipeline, rules: Callable[[], ValidationRules]) -> None:
        self._pipeline = pipeline
        self._rules = rules
        self._stamps = ServerStamps()

    def reading(self, request: pb.HeartRateRequest) -> ReadingBatch:
        """One request as a batch of one; raises InvalidRequest for a bad user_id."""
        batch = convert.reading_from_request(request, now_ms())
        unset = request.timestamp == 0 and request.timestamp_ms == 0
        return self._stamps.fix(batch, np.array([unset]))

    def batch(self, request: pb.HeartRateBatchRequest) -> ReadingBatch:
        """A columnar batch; raises InvalidRequest naming the bad field."""
        batch = convert.batch_from_request(request, now_ms())
        unset = np.asarray(request.timestamps_ms or request.timestamps, dtype=np.int64) == 0
        return self._stamps.fix(batch, unset)

    async def submit(self, batch: ReadingBatch, rpc: str) -> BatchOutcome:
        """Validates and stores; raises StoreUnavailable when Redis did not take the readings."""
        out = await self._pipeline.submit(batch, rpc)
        if out.store_down:
            raise StoreUnavailable(STORE_DOWN)
        return out

    async def submit_one(self, request: pb.HeartRateRequest) -> pb.HeartRateResponse:
        """SubmitHeartRate: raises InvalidRequest / StoreUnavailable for the status table."""
        batch = self.reading(request)
        out = await self.submit(batch, "SubmitHeartRate")
        return convert.reading_response(out, 0, request.bpm, int(batch.ts_ms[0]), self._rules())

    async def stream_one(self, request: pb.HeartRateRequest) -> pb.HeartRateResponse:
        """One reading of a stream: every problem is answered in the response, never raised."""
        try:
            batch = self.reading(request)
        except InvalidRequest as error:
            return pb.HeartRateResponse(
                success=False,
                error=str(error),
                reject_reason=RejectReason.INVALID_USER_ID,  # type: ignore[arg-type]
            )
        out = await self._pipeline.submit(batch, "StreamHeartRate")
        return convert.reading_response(out, 0, request.bpm, int(batch.ts_ms[0]), self._rules())
