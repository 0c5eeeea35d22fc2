"""The service core's ports: what it needs from the outside, as protocols.

The Serve ingress plugs in the Validator and ZoneCalculator deployments (deployments/
remote_ports.py) and the Redis store; the plain baseline and the unit tests plug in in-process
ports (service/local_ports.py) and the same store or a fake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.alert_feed import AlertRecord, Cursor
from heartrate_serve.core.alerts import AlertRules, AlertState
from heartrate_serve.core.batches import ValidationOutput, ZoneJob
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.core.zones import SessionAnalysis
from heartrate_serve.store.store import Readings, WriteResult


class ValidatorPort(Protocol):
    """Validates a part of a round in one call (the Validator deployment, or in-process)."""

    # Readings per call: a round larger than this is split by caller into several calls.
    max_readings_per_call: int
    # How long a round may wait for more callers before it is validated (GroupCommit's
    # linger_s): worth it only where each call has a fixed cost (a deployment hop).
    round_linger_s: float

    async def validate(
        self,
        bpm: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        now_ms: int,
        normal_low: NDArray[np.int32],
        normal_high: NDArray[np.int32],
    ) -> ValidationOutput:
        """Reasons and classes per reading; raises DependencyUnavailable when it cannot."""
        ...

    async def rules(self) -> ValidationRules:
        """The rules in force (for the thresholds GetHeartRateStatus shows)."""
        ...

    async def ping(self) -> bool:
        """True when the validator answers."""
        ...


class ZonePort(Protocol):
    """Analyses a group of zone jobs in one call (the ZoneCalculator deployment, or in-process)."""

    # Readings per call: a group larger than this is split by job into several calls.
    max_readings_per_call: int

    async def analyse(self, jobs: Sequence[ZoneJob]) -> list[SessionAnalysis | InvalidRequest]:
        """One analysis (or the job's InvalidRequest) per job, in order."""
        ...

    async def ping(self) -> bool:
        """True when the zone calculator answers."""
        ...


class StorePort(Protocol):
    """The readings store (store/store.py's ReadingStore)."""

    def set_alert_rules(self, rules: AlertRules) -> None:
        """Uses `rules` for all later writes."""
        ...

    async def write_batch(
        self,
        user_ids: Sequence[str],
        ts_ms: NDArray[np.int64],
        bpm: NDArray[np.int32],
        classification: NDArray[np.uint8],
        now_ms: int,
    ) -> WriteResult:
        """Stores readings of any users in one round trip; raises StoreUnavailable."""
        ...

    async def recent(self, user_id: str, n: int) -> Readings:
        """The user's newest n readings, newest first."""
        ...

    async def range(
        self, user_id: str, from_ms: int, to_ms: int, limit: int | None = None
    ) -> Readings:
        """The user's readings in [from_ms, to_ms], ascending."""
        ...

    async def alert_state(self, user_id: str) -> AlertState:
        """The user's alert state machine."""
        ...

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """The user's stored profile, None when there is none."""
        ...

    async def set_profile(self, user_id: str, profile: Mapping[str, Any]) -> None:
        """Stores the user's profile."""
        ...

    async def start_user_webhook(self, user_id: str) -> None:
        """The user's (new) profile webhook gets the user's alert events from now on."""
        ...

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Profiles of several users (missing users absent)."""
        ...

    def watch_alerts(
        self, users: Sequence[str], after: Cursor | None
    ) -> AsyncIterator[AlertRecord]:
        """The users' alert events after `after` (none: live only), then live, per user in
        order; raises StoreUnavailable when it cannot start."""
        ...

    async def ping(self) -> bool:
        """True when Redis answers."""
        ...

    async def aclose(self) -> None:
        """Closes connections."""
        ...
