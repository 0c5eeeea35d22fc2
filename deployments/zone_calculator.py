"""The ZoneCalculator deployment: numpy-vectorised time in zones and TRIMP for groups of zone
requests (core.batches.analyse_jobs). It reports readings analysed per second for autoscaling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray import serve
from ray.serve import Deployment

from heartrate_serve.core.batches import ZoneJob, analyse_jobs
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.zones import SessionAnalysis
from heartrate_serve.deployments.autoscaling import WorkMeter
from heartrate_serve.runtime.observability import observe_replica
from heartrate_serve.service.tunables import ZoneTunables
from heartrate_serve.settings import Settings


class ZoneCalculator:
    """Analyses a part of a round of zone requests per call."""

    # Methods are `async def`: Serve runs sync methods in a thread pool (a thread hop and GIL
    # hand-over per call); the work of a call is one short numpy pass, fine on the event loop.

    def __init__(self) -> None:
        observe_replica(Settings.from_env())
        self._tun = ZoneTunables()
        self._meter = WorkMeter()

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Applies user_config (no keys yet: any key is refused)."""
        self._tun = ZoneTunables.from_config(config)

    async def analyse(self, jobs: Sequence[ZoneJob]) -> list[SessionAnalysis | InvalidRequest]:
        """One analysis per job; a bad job's InvalidRequest in its place."""
        out = analyse_jobs(jobs)
        self._meter.add(sum(job.readings for job in jobs))
        return out

    async def ping(self) -> bool:
        """Liveness for the health check."""
        return True

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Readings analysed per second (Serve's custom autoscaling metric)."""
        return self._meter.stats()


ZoneCalculatorDeployment: Deployment = serve.deployment(name="ZoneCalculator")(ZoneCalculator)
