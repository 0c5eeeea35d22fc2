"""The state and decisions of a resending stream, without I/O (`StreamCore`): which readings are
in flight, which answers are final and may be handed out (in input order), what to resend after a
retryable rejection or a broken call, and how long to wait first. Both drivers in
cli/resending.py (blocking gRPC and grpc.aio) share it and only wait and move messages.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from heartrate_serve.cli.retrying import (
    OnRetry,
    RetryPolicy,
    Stamper,
    broke_transiently,
    describe,
    is_retryable_answer,
)
from heartrate_serve.proto import heartrate_service_pb2 as pb

# A reading and its final answer, as a stream hands them out.
Pair = tuple[pb.HeartRateRequest, pb.HeartRateResponse]


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


class StreamCore:
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
        if not broke_transiently(failure) or (delay := self._attempts.next_delay()) is None:
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
