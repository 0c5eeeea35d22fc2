"""The service's own Prometheus metrics, exported through Ray's metrics agent at METRICS_PORT.

Replicas record with `ray.serve.metrics` (tagged with application, deployment and replica); the
driver sets heartrate_redis_up (redis_watch.py). Ray prefixes every name with `ray_` and counters
get `_total`: `heartrate_readings_accepted` is scraped as `ray_heartrate_readings_accepted_total`.

The process's metrics are `current()`: the no-op `ServiceMetrics` until a Serve replica installs
`RayMetrics` (runtime/observability.py). So metric objects are created lazily inside
replicas, never at import time, and the unit tests and the plain baseline server (which run the
service core without Ray) record nothing.

Histograms: Ray approximates a histogram's `_sum` from bucket midpoints, so `_sum / _count` is
only a rough mean; dashboards and alerts use `histogram_quantile` over the `_bucket` series.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.constants import Classification, RejectReason

# Milliseconds, sub-millisecond to 10 s: Redis calls take ~0.1-5 ms, zone analyses up to seconds.
LATENCY_MS_BUCKETS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
# Items per batch: one reading (a unary call) up to GroupCommit's 20 000 items per round.
SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000]
# Readings per zone request: a short session up to a day at 1 Hz and more.
READINGS_BUCKETS = [10, 100, 1000, 3600, 10000, 30000, 86400, 200000, 1000000]
T = TypeVar("T")
Guard = Callable[[str], AbstractContextManager[None]]


def tally(
    reason: NDArray[np.uint8], duplicate: NDArray[np.bool_]
) -> tuple[int, dict[str, int], int]:
    """(accepted, rejected by reason name, duplicate) of one call's readings."""
    if len(reason) == 1:  # a unary call or stream message: no numpy on the hot path
        code = int(reason[0])
        if code:
            return 0, {_reason_name(code): 1}, 0
        dup = int(bool(duplicate[0]))
        return 1 - dup, {}, dup
    counts = np.bincount(np.asarray(reason, dtype=np.intp), minlength=1)
    dup = int(np.count_nonzero(np.asarray(duplicate) & (np.asarray(reason) == 0)))
    rejected = {_reason_name(i): int(c) for i, c in enumerate(counts[1:].tolist(), 1) if c}
    return int(counts[0]) - dup, rejected, dup


def _reason_name(code: int) -> str:
    try:
        return RejectReason(code).name.lower()
    except ValueError:
        return str(code)


def alert_counts(
    events: Mapping[str, tuple[int, int]], active: Mapping[str, tuple[int, int]]
) -> tuple[dict[str, int], int]:
    """(raised by alert type, cleared) from a WriteResult's events and alerts; a raise that was
    cleared again within the same batch has type "unknown"."""
    raised: dict[str, int] = {}
    cleared = 0
    for user, (up, down) in events.items():
        if not (up or down):
            continue
        cleared += down
        if up:
            name = _alert_name(active.get(user, (0, 0))[0])
            raised[name] = raised.get(name, 0) + up
    return raised, cleared


def _alert_name(code: int) -> str:
    try:
        return "unknown" if code == 0 else Classification(code).name.lower()
    except ValueError:
        return "unknown"


class ServiceMetrics:
    """The metrics facade; this base class records nothing (unit tests, the baseline server)."""

    def outcome(self, rpc: str, reason: NDArray[np.uint8], duplicate: NDArray[np.bool_]) -> None:
        """Counts one call's readings (a BatchOutcome's reason and duplicate arrays)."""

    def readings(
        self, rpc: str, accepted: int, rejected_by_reason: Mapping[str, int], duplicate: int
    ) -> None:
        """Counts readings accepted, rejected (by reason name) and duplicate for an RPC."""

    def alerts(
        self, events: Mapping[str, tuple[int, int]], active: Mapping[str, tuple[int, int]]
    ) -> None:
        """Counts alerts raised (by type) and cleared, from a WriteResult."""

    def stream(self, opened: bool) -> None:
        """A stream opened (True) or closed (False)."""

    def redis_call(self, op: str, seconds: float, ok: bool) -> None:
        """One Redis call of the store: its latency, and an error when not ok."""

    def batch(self, callers: int, readings: int) -> None:
        """One group-commit round: callers coalesced, readings sent to the validator."""

    def zones(self, seconds: float, readings: Sequence[int]) -> None:
        """One zone-calculator call: its latency (hop included), readings of each request."""

    def health(self, serving: bool) -> None:
        """The health probe's latest answer."""

    def auth_failure(self, reason: str) -> None:
        """A call (or stream reading) refused by auth, by reason (service/auth.py FailReason)."""

    def flush(self) -> None:
        """Hands counts summed so far to the backend (RayMetrics sums reading counts per second)."""


NO_METRICS = ServiceMetrics()
_current: ServiceMetrics = NO_METRICS


def current() -> ServiceMetrics:
    """This process's metrics: RayMetrics once observe_replica ran in a replica, else no-op."""
    return _current


def use(metrics: ServiceMetrics) -> ServiceMetrics:
    """Makes `metrics` this process's metrics; returns the previous ones (tests restore them)."""
    global _current
    previous, _current = _current, metrics
    return previous


def redis_timed(guard: Guard) -> Guard:
    """Wraps the store's per-call guard: latency of every Redis call, errors by op."""

    @contextlib.contextmanager
    def timed(op: str) -> Iterator[None]:
        started = time.perf_counter()
        ok = False
        try:
            with guard(op):
                yield
            ok = True
        finally:
            _current.redis_call(op, time.perf_counter() - started, ok)

    return timed


async def timed_zones(call: Callable[[list[Any]], Awaitable[T]], jobs: Sequence[Any]) -> T:
    """call(jobs) for a part of a round of ZoneJobs, recording latency and sizes."""
    started = time.perf_counter()
    result = await call(list(jobs))
    _current.zones(time.perf_counter() - started, [job.readings for job in jobs])
    return result
