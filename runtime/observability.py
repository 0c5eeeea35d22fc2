"""Observability of a Serve replica: JSON logs through Serve's replica logger and the service's
metrics recorded with ray.serve.metrics (exported at METRICS_PORT by Ray's metrics agent).

service/metrics.py is the facade the service core records into (no-op by default); a replica
installs RayMetrics here when it starts (observe_replica), so metric objects are created inside
replicas, never at import time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.runtime.logging_setup import configure_replica_logging
from heartrate_serve.service.metrics import (
    LATENCY_MS_BUCKETS,
    READINGS_BUCKETS,
    SIZE_BUCKETS,
    ServiceMetrics,
    alert_counts,
    current,
    tally,
    use,
)
from heartrate_serve.settings import Settings

FLUSH_S = 1.0
GAUGE_REFRESH_S = 5.0


def in_replica() -> bool:
    """True inside a Ray Serve replica (never imports Ray itself)."""
    serve_ctx = sys.modules.get("ray.serve.context")
    return serve_ctx is not None and serve_ctx._get_internal_replica_context() is not None


def observe_replica(settings: Settings) -> Settings:
    """In a Serve replica: JSON logging and Ray metrics for this process; returns settings.
    Elsewhere (deployment classes run without Ray in tests) it changes nothing."""
    if in_replica():
        configure_replica_logging(settings)
        if not isinstance(current(), RayMetrics):
            use(RayMetrics())
    return settings


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
        self._auth_failures = b.Counter(
            "heartrate_auth_failures", "Calls refused by auth.", ("reason",)
        )
        self._open = 0
        self._streams.set(0)
        # Reading counts are summed here and handed to Ray once per FLUSH_S (Ray exports every
        # ~10 s anyway): one Ray metric call per (counter, labels) a second, not per RPC.
        self._pending: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._flush_scheduled = False
        self._serving_now: int | None = None
        self._gauges_kept = False

    def outcome(self, rpc: str, reason: NDArray[np.uint8], duplicate: NDArray[np.bool_]) -> None:
        """Counts one call's readings (a BatchOutcome's reason and duplicate arrays)."""
        self.readings(rpc, *tally(reason, duplicate))

    def readings(
        self, rpc: str, accepted: int, rejected_by_reason: Mapping[str, int], duplicate: int
    ) -> None:
        """Counts readings accepted, rejected (by reason name) and duplicate for an RPC."""
        if accepted:
            self._add("accepted", accepted, (("rpc", rpc),))
        if duplicate:
            self._add("duplicate", duplicate, (("rpc", rpc),))
        for reason, n in rejected_by_reason.items():
            if n:
                self._add("rejected", n, (("rpc", rpc), ("reason", reason)))

    def _keep_gauges(self) -> None:
        """Re-records the gauges every GAUGE_REFRESH_S from the first call on: Ray's metrics
        agent drops a gauge that was not recorded for a while (seen: active_streams vanished from
        /metrics ~25 s after the last stream event)."""
        if self._gauges_kept:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (tests)
            return
        self._gauges_kept = True

        def refresh() -> None:
            self._streams.set(self._open)
            if self._serving_now is not None:
                self._serving.set(self._serving_now)
            loop.call_later(GAUGE_REFRESH_S, refresh)

        loop.call_later(GAUGE_REFRESH_S, refresh)

    def _add(self, counter: str, n: int, tags: tuple[tuple[str, str], ...]) -> None:
        self._keep_gauges()
        key = (counter, tags)
        self._pending[key] = self._pending.get(key, 0) + n
        if self._flush_scheduled:
            return
        try:
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
            self._flush_scheduled = True
        except RuntimeError:  # no event loop (tests): hand the counts over at once
            self.flush()

    def flush(self) -> None:
        """Hands the summed reading counts to Ray's counters."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        counters = {
            "accepted": self._accepted,
            "duplicate": self._duplicate,
            "auth": self._auth_failures,
        }
        for (counter, tags), n in pending.items():
            counters.get(counter, self._rejected).inc(n, dict(tags))

    def auth_failure(self, reason: str) -> None:
        """A call (or stream reading) refused by auth, by reason."""
        self._add("auth", 1, (("reason", reason),))

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
        self._keep_gauges()

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
        self._serving_now = 1 if serving else 0
        self._serving.set(self._serving_now)
        self._keep_gauges()
