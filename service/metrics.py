"""The service's own Prometheus metrics, exported through Ray's metrics agent at METRICS_PORT.

Replicas record with `ray.serve.metrics` (tagged with application, deployment and replica); the
driver sets heartrate_redis_up (redis_watch.py). Ray prefixes every name with `ray_` and counters
get `_total`: `heartrate_readings_accepted` is scraped as `ray_heartrate_readings_accepted_total`.

The process's metrics are `current()`: the no-op `ServiceMetrics` until `observe_replica` runs in
a Serve replica (the ingress's __init__) and installs `RayMetrics`. So metric objects are created
lazily inside replicas, never at import time, and the core, the unit tests and the plain baseline
server (which reuse the pipeline and the store without Ray) record nothing.

Histograms: Ray approximates a histogram's `_sum` from bucket midpoints, so `_sum / _count` is
only a rough mean; dashboards and alerts use `histogram_quantile` over the `_bucket` series.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.constants import Classification, RejectReason
from heartrate_serve.runtime.logging_setup import configure_replica_logging
from heartrate_serve.settings import Settings

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


def in_replica() -> bool:
    """True inside a Ray Serve replica (never imports Ray itself)."""
    serve_ctx = sys.modules.get("ray.serve.context")
    return serve_ctx is not None and serve_ctx._get_internal_replica_context() is not None


def observe_replica(settings: Settings) -> Settings:
    """In a Serve replica: JSON logging and Ray metrics for this process; returns settings.
    Elsewhere (deployment classes run without Ray in tests) it changes nothing."""
    if in_replica():
        configure_replica_logging(settings)
        if not isinstance(_current, RayMetrics):
            use(RayMetrics())
    return settings


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
    """call(jobs) for a batch of (ts, bpm, params) zone jobs, recording latency and sizes."""
    started = time.perf_counter()
    result = await call(list(jobs))
    _current.zones(time.perf_counter() - started, [len(job[0]) for job in jobs])
    return result


class RayMetrics(ServiceMetrics):
    """Records into Ray's metrics; `backend` is ray.serve.metrics unless a test passes a fake."""

    def __init__(self, backend: Any = None) -> None:
        if backend is None:
            from ray.serve import metrics as backend
        b = backend
        self._accepted = b.Counter("heartrate_readings_accepted", "Readings stored.", ("rpc",))
        self._rejected = b.Counter(
            "heartrate_readings_rejected", "Readings rejected.", ("rpc", "reason")
        )
        self._duplicate = b.Counter("heartrate_readings_duplicate", "Resubmissions.", ("rpc",))
        self._raised = b.Counter("heartrate_alerts_raised", "Alerts raised.", ("type",))
        self._cleared = b.Counter("heartrate_alerts_cleared", "Alerts cleared.")
        self._streams = b.Gauge("heartrate_active_streams", "Open StreamHeartRate calls.")
        self._redis_ms = b.Histogram(
            "heartrate_redis_latency_ms", "Redis call latency, ms.", LATENCY_MS_BUCKETS, ("op",)
        )
        self._redis_errors = b.Counter("heartrate_redis_errors", "Failed Redis calls.", ("op",))
        self._batch = b.Histogram(
            "heartrate_batch_size", "Group-commit round sizes.", SIZE_BUCKETS, ("kind",)
        )
        self._zone_ms = b.Histogram(
            "heartrate_zone_latency_ms", "Zone computation latency, ms.", LATENCY_MS_BUCKETS
        )
        self._zone_n = b.Histogram(
            "heartrate_zone_readings", "Readings per zone request.", READINGS_BUCKETS
        )
        self._serving = b.Gauge("heartrate_health_serving", "1 when the health probe is SERVING.")
        self._open = 0
        self._streams.set(0)

    def outcome(self, rpc: str, reason: NDArray[np.uint8], duplicate: NDArray[np.bool_]) -> None:
        """Counts one call's readings (a BatchOutcome's reason and duplicate arrays)."""
        self.readings(rpc, *tally(reason, duplicate))

    def readings(
        self, rpc: str, accepted: int, rejected_by_reason: Mapping[str, int], duplicate: int
    ) -> None:
        """Counts readings accepted, rejected (by reason name) and duplicate for an RPC."""
        if accepted:
            self._accepted.inc(accepted, {"rpc": rpc})
        if duplicate:
            self._duplicate.inc(duplicate, {"rpc": rpc})
        for reason, n in rejected_by_reason.items():
            if n:
                self._rejected.inc(n, {"rpc": rpc, "reason": reason})

    def alerts(
        self, events: Mapping[str, tuple[int, int]], active: Mapping[str, tuple[int, int]]
    ) -> None:
        """Counts alerts raised (by type) and cleared, from a WriteResult."""
        raised, cleared = alert_counts(events, active)
        for kind, n in raised.items():
            self._raised.inc(n, {"type": kind})
        if cleared:
            self._cleared.inc(cleared)

    def stream(self, opened: bool) -> None:
        """A stream opened (True) or closed (False)."""
        self._open += 1 if opened else -1
        self._streams.set(self._open)

    def redis_call(self, op: str, seconds: float, ok: bool) -> None:
        """One Redis call of the store: its latency, and an error when not ok."""
        self._redis_ms.observe(seconds * 1000.0, {"op": op})
        if not ok:
            self._redis_errors.inc(1, {"op": op})

    def batch(self, callers: int, readings: int) -> None:
        """One group-commit round: callers coalesced, readings sent to the validator."""
        self._batch.observe(callers, {"kind": "group_commit"})
        self._batch.observe(readings, {"kind": "validator"})

    def zones(self, seconds: float, readings: Sequence[int]) -> None:
        """One zone-calculator call: its latency (hop included), readings of each request."""
        self._zone_ms.observe(seconds * 1000.0)
        for n in readings:
            self._zone_n.observe(n)

    def health(self, serving: bool) -> None:
        """The health probe's latest answer."""
        self._serving.set(1 if serving else 0)
