"""`heartrate_redis_up`, from the driver: whether the service's Redis answers PING.

REDIS_URL may name a single Redis or any node of a Redis Cluster: for a cluster, up means that
node reports cluster_state:ok and every primary answers PING (the store needs all of them).
The driver is a Ray driver, so a `ray.util.metrics.Gauge` it sets is exported at METRICS_PORT
like the replicas' metrics (without deployment/replica tags).
"""

from __future__ import annotations

import threading
import time
from typing import Any

REDIS_POLL_S = 5.0
POLL_TIMEOUT_S = 1.0  # per connection and per reply


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
        """Pings Redis (every primary of a cluster) once and sets the gauge; True when up."""
        up = bool(self._url) and redis_up(self._url or "")
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


def redis_up(url: str, timeout_s: float = POLL_TIMEOUT_S) -> bool:
    """True when the Redis at url answers PING; for a Redis Cluster node, when it reports
    cluster_state:ok and every primary answers PING. Never raises."""
    import redis
    from redis.cluster import RedisCluster

    timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    try:
        with redis.Redis.from_url(url, **timeouts) as node:
            if not node.ping():
                return False
            if not node.info("cluster").get("cluster_enabled"):
                return True
            if node.cluster("info").get("cluster_state") != "ok":
                return False
        # One cluster client per poll (every REDIS_POLL_S): no state to go stale between polls.
        with RedisCluster.from_url(url, **timeouts) as cluster:
            return bool(cluster.ping(target_nodes=RedisCluster.PRIMARIES))
    except (redis.RedisError, OSError):
        return False
