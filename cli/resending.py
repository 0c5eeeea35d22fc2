"""Clients that resend: reconnect with backoff after transient failures and resend the readings
not acknowledged, which is safe because the service identifies a reading by (user_id, timestamp)
and answers a resent copy as a duplicate instead of storing it twice.

The rules (README, "Clients that resend"):

* Stamp every reading before its first send (`Stamper`). A reading sent without a timestamp is
  stamped by the server on arrival, so each resent copy would be stored as a new reading.
* A call that fails UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED (overload shed; not a
  message over the size limit, which never fits), or CANCELLED without this client cancelling
  it (the proxy reset it because the replica died), is transient: wait (`Backoff`) and send it
  again. Every other status code is final (`is_transient`).
* In a stream, an answer with success=false and reject_reason STORE_UNAVAILABLE,
  SERVICE_UNAVAILABLE or OVERLOADED means "not stored, may be resent": resend it after a wait.
  Other rejections are final: the reading itself is bad (`is_retryable_answer`).
* When a stream breaks, the readings sent but not answered are unknown: resend them on a new
  stream. A duplicate answer (success, duplicate=true) is an acknowledgement.
* Give up after a while of continuous failure (`RetryPolicy`, default 60 s) and raise the last
  error; any acknowledgement resets the count.

`call_with_retry` does this for unary calls (SubmitHeartRate, SubmitHeartRateBatch);
`ResendingStream` (blocking gRPC) and `AsyncResendingStream` (grpc.aio) for StreamHeartRate. The
two streams share `_StreamCore`, which keeps the readings in flight and makes every decision; the
drivers only wait and move messages. The module needs only grpcio and the generated
heartrate_service_pb2: an app can copy it.
"""

from __future__ import annotations

import asyncio
import math
import queue
import random
import threading
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc

from heartrate_serve.proto import heartrate_service_pb2 as pb

Pair = tuple[pb.HeartRateRequest, pb.HeartRateResponse]
Metadata = Sequence[tuple[str, str]]
# Told about every retry: what failed, and the wait (seconds) before trying again.
OnRetry = Callable[[str, float], None]
Answer = TypeVar("Answer")

# Per-reading answers meaning "not stored, may be resent later"; other reject reasons are final.
RETRYABLE_REASONS = frozenset(
    {
        pb.REJECT_REASON_STORE_UNAVAILABLE,
        pb.REJECT_REASON_SERVICE_UNAVAILABLE,
        pb.REJECT_REASON_OVERLOADED,
    }
)
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
# RESOURCE_EXHAUSTED for a message over gRPC's size limit ("Received message larger than max
# (N vs. M)"): sending it again can never succeed.
MESSAGE_SIZE_MARKERS = ("larger than max", "message size", "too large")
# grpc.aio reports a stream whose server ended it while the client was still writing as INTERNAL
# with this text, losing the server's status (grpc/grpc#36066): the stream broke, say why unknown.
AIO_LOST_STATUS = "Internal error from Core"
# grpc's details when this client cancelled a call itself; any other CANCELLED came from the other
# side: HAProxy resets a call (RST_STREAM CANCEL, "Stream removed") whose replica was killed.
LOCAL_CANCEL = "locally cancelled"
# Readings a stream takes from its source before their answers are handed out.
DEFAULT_WINDOW = 1024


def _sleep(seconds: float) -> None:
    """time.sleep, looked up at call time (gevent patches it after this module may be imported)."""
    time.sleep(seconds)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: retry n waits uniformly in
    [0, min(max_delay, initial * factor**n)), so clients that failed together do not come back
    together."""

    initial: float = 0.2
    factor: float = 2.0
    max_delay: float = 5.0
    rand: Callable[[], float] = random.random

    def delay(self, retry: int) -> float:
        """The wait before retry `retry` (0 for the first), seconds."""
        return self.rand() * min(self.max_delay, self.initial * self.factor ** min(retry, 64))


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying: at most max_retries retries in a row (None: no limit) and at most
    max_seconds from the first failure of a streak (None: no limit). sleep/async_sleep/clock are
    injectable for tests."""

    backoff: Backoff = field(default_factory=Backoff)
    max_retries: int | None = None
    max_seconds: float | None = 60.0
    sleep: Callable[[float], None] = _sleep
    async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic

    def attempts(self) -> Attempts:
        """A fresh failure streak under this policy."""
        return Attempts(self)


DEFAULT_RETRY = RetryPolicy()
# The first transient failure is raised (and a retryable answer is final), as without a helper.
NO_RETRY = RetryPolicy(max_retries=0)


class Attempts:
    """One streak of consecutive failures: the wait before the next try, until the budget is
    spent. `reset` on progress (an acknowledgement) starts a new streak."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.retries = 0
        self._start: float | None = None

    def next_delay(self) -> float | None:
        """The wait before the next try, seconds; None when the budget is spent (give up)."""
        p = self.policy
        now = p.clock()
        if self._start is None:
            self._start = now
        if p.max_retries is not None and self.retries >= p.max_retries:
            return None
        left = math.inf if p.max_seconds is None else self._start + p.max_seconds - now
        if left <= 0:
            return None
        delay = min(p.backoff.delay(self.retries), left)
        self.retries += 1
        return delay

    def reset(self) -> None:
        """Progress was made: the next failure starts a new streak."""
        self.retries = 0
        self._start = None


def _status(error: BaseException) -> tuple[grpc.StatusCode | None, str]:
    """(status code, details) of an RpcError from a blocking or asyncio call."""
    code_of: Callable[[], grpc.StatusCode | None] = getattr(error, "code", lambda: None)
    details_of: Callable[[], str | None] = getattr(error, "details", lambda: None)
    return code_of(), str(details_of() or "")


def describe(error: BaseException) -> str:
    """'CODE: details' of an RpcError."""
    code, details = _status(error)
    return f"{code.name if code is not None else 'UNKNOWN'}: {details or error}"


def is_transient(error: BaseException) -> bool:
    """True when the same call may succeed later: UNAVAILABLE, DEADLINE_EXCEEDED,
    RESOURCE_EXHAUSTED other than a message over the size limit, and CANCELLED that this client
    did not cause (a proxy reset the call: RST_STREAM when the replica serving it died)."""
    code, details = _status(error)
    if code == grpc.StatusCode.CANCELLED:
        return LOCAL_CANCEL not in details.lower()
    if code not in TRANSIENT_CODES:
        return False
    lowered = details.lower()
    return code != grpc.StatusCode.RESOURCE_EXHAUSTED or not any(
        m in lowered for m in MESSAGE_SIZE_MARKERS
    )


def _broke_transiently(error: BaseException) -> bool:
    """is_transient for a stream that ended in error, also counting grpc.aio's lost status."""
    code, details = _status(error)
    return is_transient(error) or (code == grpc.StatusCode.INTERNAL and details == AIO_LOST_STATUS)


def is_retryable_reason(reason: int) -> bool:
    """True for the reject reasons meaning "not stored, may be resent later"."""
    return reason in RETRYABLE_REASONS


def is_retryable_answer(resp: pb.HeartRateResponse) -> bool:
    """True when the reading was not stored and may be resent (store or service unavailable,
    overloaded); False for acknowledgements and final rejections (a bad reading)."""
    return not resp.success and is_retryable_reason(resp.reject_reason)


def batch_needs_resend(resp: pb.HeartRateBatchResponse) -> bool:
    """True when some readings of a batch answer were rejected with a retryable reason. The whole
    batch is resent: the readings already stored answer as duplicates."""
    return any(not r.success and is_retryable_reason(r.reject_reason) for r in resp.results)


def needs_resend(answer: object) -> bool:
    """The default retry test of call_with_retry: a retryable reading or batch answer."""
    if isinstance(answer, pb.HeartRateResponse):
        return is_retryable_answer(answer)
    if isinstance(answer, pb.HeartRateBatchResponse):
        return batch_needs_resend(answer)
    return False


def _now_ms() -> int:
    """The client's clock, Unix milliseconds."""
    return time.time_ns() // 1_000_000


class Stamper:
    """Stamps readings sent without a timestamp (timestamp and timestamp_ms both 0) with the
    client's clock, Unix ms, strictly increasing: the reading then keeps one identity across
    resends, and two readings of the same millisecond are not taken for one."""

    def __init__(self, clock_ms: Callable[[], int] = _now_ms) -> None:
        self._clock_ms = clock_ms
        self._last = 0

    def stamp(self, request: pb.HeartRateRequest) -> pb.HeartRateRequest:
        """The request, stamped in place when it had no timestamp."""
        if not request.timestamp_ms and not request.timestamp:
            self._last = max(self._clock_ms(), self._last + 1)
            request.timestamp_ms = self._last
        return request


def call_with_retry(
    call: Callable[..., Answer],
    request: Any,
    *,
    timeout: float | None = None,
    metadata: Metadata | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    retry_answer: Callable[[Answer], bool] = needs_resend,
    on_retry: OnRetry | None = None,
) -> Answer:
    """A unary call, made again after a transient failure or an answer `retry_answer` says may be
    resent, with backoff. Final errors, and the last error once the budget is spent, are raised;
    a retryable answer is returned once the budget is spent. The request must be stamped.

    metadata is only passed when given (a stub that adds its own keeps it)."""
    attempts = retry.attempts()
    kwargs: dict[str, Any] = {"timeout": timeout}
    if metadata is not None:
        kwargs["metadata"] = metadata
    while True:
        try:
            answer = call(request, **kwargs)
        except grpc.RpcError as error:
            if not is_transient(error) or (delay := attempts.next_delay()) is None:
                raise
            what = describe(error)
        else:
            if not retry_answer(answer) or (delay := attempts.next_delay()) is None:
                return answer
            what = "readings answered 'not stored, may be resent' (store or service unavailable)"
        if on_retry is not None:
            on_retry(what, delay)
        retry.sleep(delay)


@dataclass
class StreamStats:
    """Counts of a resending stream (several streams may share one)."""

    sent: int = 0  # readings taken from the source (first sends)
    resent: int = 0  # further sends: after a broken stream or a retryable rejection
    acknowledged: int = 0  # final answers success=true (stored or duplicate)
    duplicates: int = 0  # of which duplicate=true (an earlier copy was stored)
    rejected: int = 0  # final answers success=false
    reconnects: int = 0  # calls opened after a broken one


class StreamEndedEarly(grpc.RpcError):  # type: ignore[misc]
    """The server ended a stream without error before every reading was answered (or before the
    input ended): handled as UNAVAILABLE."""

    def __init__(self, unanswered: int) -> None:
        super().__init__(f"the stream ended with {unanswered} readings unanswered")
        self._details = str(self)

    def code(self) -> grpc.StatusCode:
        """UNAVAILABLE: resend on a new stream."""
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        """What happened."""
        return self._details


class _Releasable(Protocol):
    """A window slot semaphore (threading or asyncio)."""

    def release(self) -> None: ...


@dataclass
class _Item:
    """A reading of the stream: its place in the input, and when it was last sent."""

    seq: int
    request: pb.HeartRateRequest
    sent_at: float = 0.0


class _StreamCore:
    """The state and decisions of a resending stream, shared by both drivers, without I/O.

    Readings in flight on the current call are kept in send order (the service answers each
    reading once, in order); final answers are held until every earlier reading has its own, so
    answers come out in input order. The blocking driver calls it under a lock; the asyncio one
    from its single thread."""

    def __init__(
        self,
        retry: RetryPolicy,
        stats: StreamStats | None,
        stamper: Stamper | None,
        on_retry: OnRetry | None,
        new_outbox: Callable[[], Any],
        slots: _Releasable,
    ) -> None:
        self.retry = retry
        self.stats = stats if stats is not None else StreamStats()
        self._stamper = stamper or Stamper()
        self._on_retry = on_retry
        self._attempts = retry.attempts()
        self._new_outbox = new_outbox
        self._slots = slots
        self.outbox: Any = new_outbox()  # of the current call, or of the next one after a break
        self._in_flight: deque[_Item] = deque()
        self._held: dict[int, Pair] = {}
        self._taken = 0
        self._handed_out = 0
        self._waited_until = -math.inf
        self.source_done = False
        self.source_error: BaseException | None = None

    @property
    def finished(self) -> bool:
        """The source is exhausted and every reading has its final answer."""
        return self.source_done and self._handed_out == self._taken

    def _send(self, item: _Item) -> None:
        item.sent_at = self.retry.clock()
        self._in_flight.append(item)
        self.outbox.put_nowait(item.request)

    def _notify(self, what: str, delay: float) -> None:
        if self._on_retry is not None:
            self._on_retry(what, delay)

    def take(self, request: pb.HeartRateRequest) -> None:
        """A new reading from the source: stamped, numbered and sent on the current call."""
        item = _Item(self._taken, self._stamper.stamp(request))
        self._taken += 1
        self.stats.sent += 1
        self._send(item)

    def end_source(self, error: BaseException | None) -> None:
        """The source is exhausted (or raised `error`): end the call once nothing is left."""
        self.source_done = True
        self.source_error = error
        if error is not None or self.finished:
            self.outbox.put_nowait(None)

    def answered(self, resp: pb.HeartRateResponse) -> tuple[_Item, float] | None:
        """Matches an answer to the oldest reading in flight. None: the answer is final (see
        `ready`). Else (reading, delay): resend the reading after waiting `delay` seconds (0: the
        reading was sent before the last wait ended, so that wait counts for it too)."""
        if not self._in_flight:
            raise RuntimeError("the service answered more readings than were sent")
        item = self._in_flight.popleft()
        if is_retryable_answer(resp):
            if item.sent_at < self._waited_until:
                return item, 0.0
            delay = self._attempts.next_delay()
            if delay is not None:
                reason = pb.RejectReason.Name(resp.reject_reason).removeprefix("REJECT_REASON_")
                self._notify(f"a reading was not stored ({reason}: {resp.error})", delay)
                return item, delay
        else:
            self._attempts.reset()
        self._held[item.seq] = (item.request, resp)
        if resp.success:
            self.stats.acknowledged += 1
            self.stats.duplicates += resp.duplicate
        else:
            self.stats.rejected += 1
        return None

    def waited(self) -> None:
        """A backoff wait just ended."""
        self._waited_until = self.retry.clock()

    def resend(self, item: _Item) -> None:
        """Sends a reading again on the current call."""
        self.stats.resent += 1
        self._send(item)

    def ready(self) -> list[Pair]:
        """The final answers that can be handed out in input order; ends the call's requests
        when the stream is complete."""
        out = []
        while self._handed_out in self._held:
            out.append(self._held.pop(self._handed_out))
            self._handed_out += 1
            self._slots.release()
        if self.finished:
            self.outbox.put_nowait(None)
        return out

    def ended(self, error: BaseException | None) -> float | None:
        """The call ended: with `error`, or None when it ended OK. None: the stream is complete
        (every reading has its final answer, whatever the call's status). Else the wait (seconds)
        before the next call, whose outbox already holds the readings to resend. Raises the
        source's error, a final error, or the last error once the budget is spent."""
        if self.source_error is not None:
            raise self.source_error
        if self.finished:
            return None
        self.outbox.put_nowait(None)  # lets the old call's request reader finish
        unanswered = list(self._in_flight)
        self._in_flight.clear()
        failure = error if error is not None else StreamEndedEarly(len(unanswered))
        if not _broke_transiently(failure) or (delay := self._attempts.next_delay()) is None:
            raise failure
        self._notify(
            f"the stream failed ({describe(failure)}) with {len(unanswered)} readings unanswered",
            delay,
        )
        self.stats.reconnects += 1
        self.outbox = self._new_outbox()
        for item in unanswered:
            self.resend(item)
        return delay


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
        self._core = _StreamCore(retry, stats, stamper, on_retry, queue.Queue, self._slots)
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
    readings may be an async or a plain iterable. Same decisions (`_StreamCore`), same counts."""

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
        self._core = _StreamCore(retry, stats, stamper, on_retry, asyncio.Queue, self._slots)
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
