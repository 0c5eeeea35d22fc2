"""Clients that resend: reconnect with backoff after transient failures and resend the readings
not acknowledged, which is safe because the service identifies a reading by (user_id, timestamp)
and answers a resent copy as a duplicate instead of storing it twice.

`call_with_retry` does this for unary calls (SubmitHeartRate, SubmitHeartRateBatch);
`ResendingStream` (blocking gRPC) and `AsyncResendingStream` (grpc.aio) for StreamHeartRate.
The feature is three modules; this one is its entry and re-exports the names of the other two:

* cli/retrying.py: the rules (README, "Clients that resend"): which failures and answers are
  transient (`is_transient`, `is_retryable_answer`), the wait between tries and when to give up
  (`Backoff`, `RetryPolicy`), the client-side stamp (`Stamper`), and `call_with_retry`;
* cli/stream_core.py: `StreamCore`, the state and decisions of a stream, shared by both stream
  drivers (readings in flight, answers in input order, what to resend), without I/O;
* this module: the two stream drivers, which only wait and move messages.

They need only grpcio and the generated heartrate_service_pb2: an app can copy them.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from typing import Any

import grpc

from heartrate_serve.cli.retrying import (
    AIO_LOST_STATUS,
    DEFAULT_RETRY,
    LOCAL_CANCEL,
    MESSAGE_SIZE_MARKERS,
    NO_RETRY,
    RETRYABLE_REASONS,
    TRANSIENT_CODES,
    Answer,
    Attempts,
    Backoff,
    Metadata,
    OnRetry,
    RetryPolicy,
    Stamper,
    batch_needs_resend,
    call_with_retry,
    describe,
    is_retryable_answer,
    is_retryable_reason,
    is_transient,
    needs_resend,
)
from heartrate_serve.cli.stream_core import Pair, StreamCore, StreamEndedEarly, StreamStats
from heartrate_serve.proto import heartrate_service_pb2 as pb

__all__ = [
    "AIO_LOST_STATUS",
    "DEFAULT_RETRY",
    "DEFAULT_WINDOW",
    "LOCAL_CANCEL",
    "MESSAGE_SIZE_MARKERS",
    "NO_RETRY",
    "RETRYABLE_REASONS",
    "TRANSIENT_CODES",
    "Answer",
    "AsyncResendingStream",
    "Attempts",
    "Backoff",
    "Metadata",
    "OnRetry",
    "Pair",
    "ResendingStream",
    "RetryPolicy",
    "Stamper",
    "StreamEndedEarly",
    "StreamStats",
    "batch_needs_resend",
    "call_with_retry",
    "describe",
    "is_retryable_answer",
    "is_retryable_reason",
    "is_transient",
    "needs_resend",
]

# Readings a stream takes from its source before their answers are handed out.
DEFAULT_WINDOW = 1024


def _cancel(call: object) -> None:
    """Cancels a call that can be cancelled (no-op when it has ended)."""
    cancel = getattr(call, "cancel", None)
    if callable(cancel):
        cancel()


class ResendingStream:
    """StreamHeartRate that resends (blocking gRPC): iterating it gives (request, final answer)
    pairs, one per reading of `readings`, in input order.

    open_call(requests) starts one call, e.g. `lambda r: stub.StreamHeartRate(r, metadata=md)`;
    it is called again for each reconnection, so it may also build a new channel. A thread takes
    the readings from `readings` (at most `window` ahead of the answers handed out), stamps them
    and sends them. A stream that breaks transiently is reopened after a backoff, and its
    unanswered readings resent first; retryable rejections are resent after a backoff. Raises
    final errors, and the last error once the retry budget is spent. Counts are in `stats`."""

    def __init__(
        self,
        open_call: Callable[[Iterator[pb.HeartRateRequest]], Iterable[pb.HeartRateResponse]],
        readings: Iterable[pb.HeartRateRequest],
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        stats: StreamStats | None = None,
        stamper: Stamper | None = None,
        on_retry: OnRetry | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self._open_call = open_call
        self._readings = readings
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(window)
        self._core = StreamCore(retry, stats, stamper, on_retry, queue.Queue, self._slots)
        self.stats = self._core.stats
        self._closed = False
        self._pairs = self._run()

    def __iter__(self) -> ResendingStream:
        return self

    def __next__(self) -> Pair:
        return next(self._pairs)

    def __enter__(self) -> ResendingStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops: cancels the call; readings not yet answered get no answer."""
        self._pairs.close()

    def _feed(self) -> None:
        """The feeder thread: readings from the source onto the current call."""
        error: BaseException | None = None
        try:
            for request in self._readings:
                self._slots.acquire()
                if self._closed:
                    return
                with self._lock:
                    self._core.take(request)
        except Exception as exc:
            error = exc
        finally:
            with self._lock:
                self._core.end_source(error)

    def _run(self) -> Generator[Pair, None, None]:
        core, lock = self._core, self._lock
        threading.Thread(target=self._feed, name="resending-feeder", daemon=True).start()
        call: Any = None
        try:
            while True:
                error: BaseException | None = None
                try:
                    call = self._open_call(iter(core.outbox.get, None))
                    for resp in call:
                        with lock:
                            resend = core.answered(resp)
                        if resend is not None:
                            if resend[1] > 0:
                                core.retry.sleep(resend[1])
                                core.waited()
                            with lock:
                                core.resend(resend[0])
                        with lock:
                            pairs = core.ready()
                        yield from pairs
                except grpc.RpcError as exc:
                    error = exc
                with lock:
                    delay = core.ended(error)
                if delay is None:
                    return
                core.retry.sleep(delay)
                core.waited()
        finally:
            self._closed = True
            self._slots.release()
            with lock:
                core.outbox.put_nowait(None)
            _cancel(call)


async def _aiter(readings: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    """An async iterator over a sync or async iterable."""
    if isinstance(readings, AsyncIterable):
        async for item in readings:
            yield item
    else:
        for item in readings:
            yield item


class AsyncResendingStream:
    """ResendingStream for grpc.aio: `async for request, answer in AsyncResendingStream(...)`.

    open_call(requests) starts one call, e.g. `lambda r: stub.StreamHeartRate(r, timeout=60)`;
    readings may be an async or a plain iterable. Same decisions (`StreamCore`), same counts."""

    def __init__(
        self,
        open_call: Callable[[AsyncIterator[pb.HeartRateRequest]], AsyncIterable[Any]],
        readings: AsyncIterable[pb.HeartRateRequest] | Iterable[pb.HeartRateRequest],
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        stats: StreamStats | None = None,
        stamper: Stamper | None = None,
        on_retry: OnRetry | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self._open_call = open_call
        self._readings = readings
        self._slots = asyncio.Semaphore(window)
        self._core = StreamCore(retry, stats, stamper, on_retry, asyncio.Queue, self._slots)
        self.stats = self._core.stats
        self._pairs = self._run()

    def __aiter__(self) -> AsyncResendingStream:
        return self

    async def __anext__(self) -> Pair:
        return await self._pairs.__anext__()

    async def aclose(self) -> None:
        """Stops: cancels the call; readings not yet answered get no answer."""
        await self._pairs.aclose()

    async def _feed(self) -> None:
        """The feeder task: readings from the source onto the current call."""
        error: BaseException | None = None
        try:
            async for request in _aiter(self._readings):
                await self._slots.acquire()
                self._core.take(request)
        except Exception as exc:
            error = exc
        finally:
            self._core.end_source(error)

    @staticmethod
    async def _requests(
        outbox: asyncio.Queue[pb.HeartRateRequest | None],
    ) -> AsyncIterator[pb.HeartRateRequest]:
        while (request := await outbox.get()) is not None:
            yield request

    async def _run(self) -> AsyncGenerator[Pair, None]:
        core = self._core
        feeder = asyncio.create_task(self._feed())
        call: Any = None
        try:
            while True:
                error: BaseException | None = None
                try:
                    call = self._open_call(self._requests(core.outbox))
                    async for resp in call:
                        resend = core.answered(resp)
                        if resend is not None:
                            if resend[1] > 0:
                                await core.retry.async_sleep(resend[1])
                                core.waited()
                            core.resend(resend[0])
                        for pair in core.ready():
                            yield pair
                except grpc.RpcError as exc:
                    error = exc
                delay = core.ended(error)
                if delay is None:
                    return
                await core.retry.async_sleep(delay)
                core.waited()
        finally:
            feeder.cancel()
            _cancel(call)
