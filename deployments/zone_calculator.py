"""The zone-calculator deployment: numpy-vectorised time in zones and TRIMP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from ray import serve
from ray.serve import Deployment

from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.zones import SessionAnalysis, analyse_session
from heartrate_serve.service.tunables import ZoneTunables


class ZoneCalculator:
    """Runs core.zones.analyse_session on whole readings arrays."""

    def __init__(self) -> None:
        self._tun = ZoneTunables()

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Applies user_config."""
        self._tun = ZoneTunables.from_config(config)

    def analyse(
        self, ts_ms: NDArray[np.int64], bpm: NDArray[np.int32], params: dict[str, Any]
    ) -> SessionAnalysis:
        """Zones, legacy zones, TRIMPs and averages of one session."""
        return analyse_session(ts_ms, bpm, **params)

    def analyse_many(
        self, requests: Sequence[tuple[NDArray[np.int64], NDArray[np.int32], dict[str, Any]]]
    ) -> list[SessionAnalysis | InvalidRequest]:
        """analyse() over a group-committed list of requests; a bad request's error is returned in
        its place, so one bad request does not fail the others."""
        out: list[SessionAnalysis | InvalidRequest] = []
        for ts_ms, bpm, params in requests:
            try:
                out.append(analyse_session(ts_ms, bpm, **params))
            except InvalidRequest as error:
                out.append(error)
        return out

    def ping(self) -> bool:
        """Liveness for the health check."""
        return True


ZoneCalculatorDeployment: Deployment = serve.deployment(name="ZoneCalculator")(ZoneCalculator)
