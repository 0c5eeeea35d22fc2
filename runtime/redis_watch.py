"""`heartrate_redis_up`, from the driver: whether the service's Redis answers PING.

The driver is a Ray driver, so a `ray.util.metrics.Gauge` it sets is exported at METRICS_PORT
like the replicas' metrics (without deployment/replica tags).
"""

from __future__ import annotations

import threading
import time
from typing import Any

REDIS_POLL_S = 5.0


class RedisUpGauge:
    """`heartrate_redis_up`: 1 while Redis answers PING, polled by a daemon thread (driver)."""

    def __init__(self, url: str | None, backend: Any = None, interval_s: float = REDIS_POLL_S):
        if backend is None:
            from ray.util import metrics as backend
        self._gauge = backend.Gauge("heartrate_redis_up", "1 while Redis answers PING.")
        self._url = url
        self._interval_s = interval_s
        self._stop = threading.Event()

    def poll(self) -> bool:
        """Pings Redis once and sets the gauge; True when it answered."""
        import redis

        up = False
        if self._url:
            try:
                with redis.Redis.from_url(
                    self._url, socket_timeout=1.0, socket_connect_timeout=1.0
                ) as client:
                    up = bool(client.ping())
            except (redis.RedisError, OSError):
                up = False
        self._gauge.set(1 if up else 0)
        return up

    def start(self) -> RedisUpGauge:
        """Polls every interval_s in a daemon thread until stop()."""
        threading.Thread(target=self._run, name="redis-up", daemon=True).start()
        return self

    def stop(self) -> None:
        """Ends the polling thread."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.poll()
            self._stop.wait(max(0.0, self._interval_s - (time.monotonic() - started)))
