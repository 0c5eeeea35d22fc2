"""In-process ports: the validator and the zone calculator as plain calls into core/.

The plain baseline server and the service core's unit tests use these; the Serve ingress uses
the deployments instead (deployments/remote_ports.py). Both run the same core functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.batches import ValidationOutput, ZoneJob, analyse_jobs, validate_batch
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.core.zones import SessionAnalysis

# No transport in between: a round is never split.
UNLIMITED = 2**62


class LocalValidator:
    """The validator port as a call to core.batches.validate_batch in this process."""

    max_readings_per_call = UNLIMITED
    # A call costs microseconds: rounds never wait for more callers.
    round_linger_s = 0.0

    def __init__(self, rules: ValidationRules) -> None:
        self._rules = rules

    async def validate(
        self,
        bpm: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        now_ms: int,
        normal_low: NDArray[np.int32],
        normal_high: NDArray[np.int32],
    ) -> ValidationOutput:
        """Validates in this process."""
        return validate_batch(self._rules, bpm, ts_ms, now_ms, normal_low, normal_high)

    async def rules(self) -> ValidationRules:
        """The rules given at construction."""
        return self._rules

    async def ping(self) -> bool:
        """Always up."""
        return True


class LocalZones:
    """The zone port as a call to core.batches.analyse_jobs in this process."""

    max_readings_per_call = UNLIMITED

    async def analyse(self, jobs: Sequence[ZoneJob]) -> list[SessionAnalysis | InvalidRequest]:
        """Analyses in this process."""
        return analyse_jobs(jobs)

    async def ping(self) -> bool:
        """Always up."""
        return True
