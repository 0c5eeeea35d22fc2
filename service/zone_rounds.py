"""Concurrent zone requests, analysed together: one round, split into parts by readings.

A round of zone jobs is cut into parts of at most the zone port's `max_readings_per_call`
readings (whole jobs; a larger job is a part of its own), sent at once, so parts land on
different ZoneCalculator replicas and no call hits a transport limit. A part that fails answers
only its own jobs' callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from heartrate_serve.core.batches import ZoneJob
from heartrate_serve.core.zones import SessionAnalysis
from heartrate_serve.service.group_commit import GroupCommit, no_commit
from heartrate_serve.service.metrics import timed_zones
from heartrate_serve.service.pipeline import split_by_weight
from heartrate_serve.service.ports import ZonePort

# Readings per round of zone requests (the parts of a round run at once).
ROUND_MAX_READINGS = 2_000_000
# Rounds analysed at once (their parts spread over the ZoneCalculator replicas).
MAX_OPEN_ROUNDS = 4
Analyses = list[SessionAnalysis | BaseException]


class ZoneRounds:
    """The stage of the zone group commit that does the work (commit only hands results on)."""

    def __init__(self, zones: ZonePort, max_round_readings: int = ROUND_MAX_READINGS) -> None:
        self._zones = zones
        self.max_round_readings = max_round_readings

    def group_commit(self) -> GroupCommit[ZoneJob, Analyses, SessionAnalysis]:
        """Concurrent zone requests coalesced into rounds that this analyses (the commit stage
        only hands the results on); up to MAX_OPEN_ROUNDS rounds at once."""
        return GroupCommit(
            self.analyse,
            no_commit,
            weight=lambda job: job.readings,
            max_weight=self.max_round_readings,
            max_rounds=MAX_OPEN_ROUNDS,
            what="zone readings",
        )

    async def analyse(self, jobs: Sequence[ZoneJob]) -> Analyses:
        """One result per job: its analysis, its InvalidRequest, or its part's failure."""
        parts = split_by_weight([job.readings for job in jobs], self._zones.max_readings_per_call)
        calls = [timed_zones(self._zones.analyse, [jobs[i] for i in part]) for part in parts]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        out: list[SessionAnalysis | BaseException] = [ValueError("unset")] * len(jobs)
        for part, answer in zip(parts, answers, strict=True):
            for k, i in enumerate(part):
                out[i] = answer if isinstance(answer, BaseException) else answer[k]
        return out
