"""Retrying a call safely: which failures and answers are worth sending again, how long to wait
between tries and when to give up, the client-side stamp that keeps a reading one reading across
resends (the service answers a resent copy of a stored reading as a duplicate), and
`call_with_retry`, a unary call (SubmitHeartRate, SubmitHeartRateBatch) made under these rules.

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
  stream (`broke_transiently`). A duplicate answer (success, duplicate=true) is an
  acknowledgement.
* Give up after a while of continuous failure (`RetryPolicy`, default 60 s) and raise the last
  error; any acknowledgement resets the count (`Attempts`).

The resending streams are in cli/resending.py.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from heartrate_serve.proto import heartrate_service_pb2 as pb

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


def broke_transiently(error: BaseException) -> bool:
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
