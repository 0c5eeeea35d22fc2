"""Autoscaling that follows the work: readings processed per second, not ongoing requests.

The ingress group-commits: whatever the load, it keeps only a few calls in flight to the
Validator and the ZoneCalculator (one per part of a round), so Serve's default signal, ongoing
requests per replica, says nothing about how much work there is. Each compute replica therefore
reports the readings it processed per second over the last WINDOW_S (`record_autoscaling_stats`,
Serve's custom autoscaling metrics), and `ReadingsRatePolicy` asks for
ceil(total readings/s / target per replica) replicas. Serve applies min/max_replicas and the
upscale/downscale delays of the deployment's autoscaling_config around the policy.

This module is pickled by value into Serve's controller (the policy runs there): keep it free of
heavy imports.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

# Readings/s is averaged over this window in each replica.
WINDOW_S = 10.0
METRIC = "readings_per_s"


class WorkMeter:
    """Readings processed by this replica, as a rate over the last WINDOW_S seconds."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._started = time.monotonic()

    def add(self, readings: int) -> None:
        """Counts readings processed now."""
        self._events.append((time.monotonic(), readings))

    def rate(self) -> float:
        """Readings per second over the window (shorter while the replica is younger)."""
        now = time.monotonic()
        while self._events and self._events[0][0] < now - self._window_s:
            self._events.popleft()
        span = min(self._window_s, max(now - self._started, 1.0))
        return sum(n for _, n in self._events) / span

    def stats(self) -> dict[str, float]:
        """What record_autoscaling_stats reports."""
        return {METRIC: self.rate()}


class ReadingsRatePolicy:
    """Serve custom autoscaling policy: replicas = ceil(readings/s / target_readings_per_s).

    serve_config.yaml: autoscaling_config.policy = {policy_function:
    "heartrate_serve.deployments.autoscaling:ReadingsRatePolicy",
    policy_kwargs: {target_readings_per_s: N}}.
    """

    def __init__(self, target_readings_per_s: float) -> None:
        if target_readings_per_s <= 0:
            raise ValueError("target_readings_per_s must be > 0")
        self.target = float(target_readings_per_s)

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        """Desired replicas from the replicas' reported readings/s (Serve bounds and delays it)."""
        per_replica: dict[Any, float] = (ctx.aggregated_metrics or {}).get(METRIC, {})
        if not per_replica:  # no reports yet (replicas starting): keep what we have
            return ctx.target_num_replicas, {}
        return desired_replicas(sum(per_replica.values()), self.target), {}


def desired_replicas(total_readings_per_s: float, target_per_replica: float) -> int:
    """Replicas needed so each processes at most target_per_replica readings/s (at least 1)."""
    return max(1, math.ceil(total_readings_per_s / target_per_replica))
