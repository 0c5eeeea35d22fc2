"""Keeps the embedded Redis of `make run` alive: after a crash it is started again on the same
port and data directory (the append-only file is replayed), so the service is SERVING again by
itself and every acknowledged reading is there.

Why nothing acknowledged is lost: the store acknowledges a reading after Redis has executed the
write, and Redis appends every write to the AOF (written to the kernel before the reply). A crash
of the Redis process leaves that in the page cache; `appendfsync everysec` (the default) can only
lose the last second on a crash of the whole machine, `always` (REDIS_FSYNC=always) not even that.

Crash loops back off (0.5 s doubling to 30 s, reset after a minute up) and every death and
restart is logged with the server log's tail.
"""

from __future__ import annotations

import logging
import threading
import time

from heartrate_serve.core.errors import EmbeddedRedisError
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis

log = logging.getLogger("heartrate_serve.redis_supervisor")

CHECK_INTERVAL_S = 0.25
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # up this long: the next crash is not part of a loop
# A restart waits this long for the AOF replay (a few s per GB of AOF on this machine).
RESTART_TIMEOUT_S = 300.0


class RedisSupervisor:
    """A daemon thread that restarts `redis` whenever its process has exited on its own."""

    def __init__(
        self,
        redis: EmbeddedRedis,
        *,
        check_interval_s: float = CHECK_INTERVAL_S,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        stable_after_s: float = STABLE_AFTER_S,
        restart_timeout_s: float = RESTART_TIMEOUT_S,
    ) -> None:
        self._redis = redis
        self._check_s = check_interval_s
        self._initial_s = backoff_initial_s
        self._max_s = backoff_max_s
        self._stable_s = stable_after_s
        self._timeout_s = restart_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> None:
        """Starts watching (the server must be running)."""
        self._thread = threading.Thread(target=self._run, name="redis-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops watching (before the server is stopped on purpose); cuts a restart short."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        backoff = self._initial_s
        up_since = time.monotonic()
        while not self._stop.wait(self._check_s):
            code = self._redis.exit_code
            if code is None:
                if time.monotonic() - up_since >= self._stable_s:
                    backoff = self._initial_s
                continue
            log.error(
                "embedded Redis (port %s) exited with code %s; restarting in %.1f s. Log tail:\n%s",
                self._redis.port,
                code,
                backoff,
                self._redis.log_tail(10),
            )
            while not self._stop.wait(backoff):
                backoff = min(backoff * 2, self._max_s)
                started = time.monotonic()
                try:
                    self._redis.start(self._timeout_s, cancel=self._stop)
                except EmbeddedRedisError as error:
                    if self._stop.is_set():
                        return
                    log.error(
                        "embedded Redis restart failed; next try in %.1f s: %s", backoff, error
                    )
                    continue
                self.restarts += 1
                up_since = time.monotonic()
                log.warning(
                    "embedded Redis restarted on %s after %.1f s (AOF replayed); restart %d",
                    self._redis.url,
                    up_since - started,
                    self.restarts,
                )
                break
