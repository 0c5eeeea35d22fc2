"""grpc.health.v1 status of the service: SERVING only when Redis answers and the deployments do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Protocol

from grpc_health.v1 import health_pb2

from heartrate_serve.service.metrics import current
from heartrate_serve.service.ports import StorePort


class Pingable(Protocol):
    """A part of the service that answers ping() (the validator and zone ports)."""

    async def ping(self) -> bool:
        """True when the part answers."""
        ...


SERVICE_NAMES = frozenset({"", "heartrate.HeartRateMonitor"})
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
PROBE_TIMEOUT_S = 2.0
CACHE_S = 1.0  # probes from load balancers must not turn into load on Redis
WATCH_POLL_S = 1.0


class HealthProbe:
    """Checks Redis and the compute deployments, caching the answer for CACHE_S."""

    def __init__(self, store: StorePort, *parts: Pingable) -> None:
        self._store = store
        self._parts = parts
        self._cached: tuple[float, int] = (0.0, NOT_SERVING)

    async def status(self) -> int:
        """SERVING or NOT_SERVING, at most CACHE_S old."""
        if time.monotonic() < self._cached[0]:
            return self._cached[1]
        status: int = SERVING if await self._all_up() else NOT_SERVING
        current().health(status == SERVING)
        self._cached = (time.monotonic() + CACHE_S, status)
        return status

    async def _all_up(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):  # not REDIS_TIMEOUT_S: probes answer fast
                if not await self._store.ping():
                    return False
                return all(await asyncio.gather(*(p.ping() for p in self._parts)))
        except Exception:  # a deployment that does not answer is down, whatever the reason
            return False

    async def watch(self, service: str) -> AsyncIterator[int]:
        """The status now and after every change; SERVICE_UNKNOWN once for unknown names."""
        if service not in SERVICE_NAMES:
            yield SERVICE_UNKNOWN
            return
        last = None
        while True:
            status = await self.status()
            if status != last:
                last = status
                yield status
            await asyncio.sleep(WATCH_POLL_S)


async def health_status(probe: HealthProbe, service: str) -> int | None:
    """The status for a Check on `service`; None for an unknown service name."""
    if service not in SERVICE_NAMES:
        return None
    return await probe.status()
