"""The service core's validator and zone ports, served by the Validator and ZoneCalculator
deployments through Serve handles.

Transport: under Serve's throughput profile, calls between deployments travel over gRPC, whose
receive limit is 4 MiB (RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH). The service core splits each
round into parts of at most `max_readings_per_call` readings (about 2 MB each); a single zone job
larger than that goes by reference (a Ray actor call through the object store) instead of being
refused by the transport.

Errors: a failure inside another deployment reaches only the callers of the part that failed, as
DependencyUnavailable (UNAVAILABLE) or Overloaded (RESOURCE_EXHAUSTED, the deployment's queue is
full), with a message naming the deployment; an InvalidRequest raised there is passed on as is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from heartrate_serve.core.batches import ValidationOutput, ZoneJob
from heartrate_serve.core.errors import DependencyUnavailable, InvalidRequest, Overloaded
from heartrate_serve.core.round_codec import pack_request, unpack_output
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.core.zones import SessionAnalysis

log = logging.getLogger("heartrate_serve.remote_ports")
T = TypeVar("T")
# bpm int32 + ts int64 + two int32 bands = 20 bytes a reading: 100 000 readings are 2 MB.
VALIDATOR_READINGS_PER_CALL = 100_000
# ts int64 + bpm int32 = 12 bytes a reading: 150 000 readings are 1.8 MB.
ZONE_READINGS_PER_CALL = 150_000
# A round waits up to this long for the callers still on their way back (GroupCommit's linger):
# a Validator call costs ~1 ms of CPU on each side whatever its size. Measured 2026-12-01 (16
# streams acking each reading, this 2-core VM, 2 service starts x 3 runs per value, alternated;
# loadtest/RESULTS.md): none 1 455-1 788 msg/s with 7 readings per call; 2 ms 1 796-1 970 (8.5);
# 5 ms 1 794-2 290 (15.7).
VALIDATOR_ROUND_LINGER_S = 0.005
RULES_TTL_S = 2.0  # the thresholds GetHeartRateStatus shows are at most this old


async def _call(deployment: str, call: Awaitable[T]) -> T:
    """Awaits a handle call, turning every failure into a domain error for the status table."""
    try:
        return await call
    except RayTaskError as error:  # first: Ray's dual class RayTaskError(InvalidRequest) is both
        if isinstance(error.cause, InvalidRequest):
            raise error.cause from None
        raise _unavailable(deployment, error.cause or error) from error
    except InvalidRequest:
        raise
    except BackPressureError as error:
        raise Overloaded(f"{deployment} is at capacity; retry later") from error
    except Exception as error:  # replica died, unreachable, transport refused the message, ...
        raise _unavailable(deployment, error) from error


def _unavailable(deployment: str, error: BaseException) -> DependencyUnavailable:
    log.warning("%s call failed: %s: %s", deployment, type(error).__name__, error)
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    return DependencyUnavailable(
        f"{deployment} failed on this part of the work ({type(error).__name__}: {first_line}); "
        "nothing of it was stored; retry later"
    )


class RemoteValidator:
    """The validator port on the Validator deployment: one call per part of a round."""

    max_readings_per_call = VALIDATOR_READINGS_PER_CALL
    round_linger_s = VALIDATOR_ROUND_LINGER_S

    def __init__(self, handle: DeploymentHandle) -> None:  # type: ignore[type-arg]
        self._handle = handle
        self._rules: ValidationRules | None = None
        self._rules_until = 0.0

    async def validate(
        self,
        bpm: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        now_ms: int,
        normal_low: NDArray[np.int32],
        normal_high: NDArray[np.int32],
    ) -> ValidationOutput:
        """One Validator call (the part packed as bytes: core/round_codec.py); raises
        DependencyUnavailable / Overloaded."""
        packed = pack_request(bpm, ts_ms, normal_low, normal_high)
        answer: bytes = await _call("Validator", self._handle.validate.remote(packed, now_ms))
        out = unpack_output(answer, self._rules)
        self._rules, self._rules_until = out.rules, time.monotonic() + RULES_TTL_S
        return out

    async def rules(self) -> ValidationRules:
        """The Validator's rules, at most RULES_TTL_S old (the last known ones if it is down)."""
        if self._rules is None or time.monotonic() >= self._rules_until:
            try:
                self._rules = await _call("Validator", self._handle.rules.remote())
                self._rules_until = time.monotonic() + RULES_TTL_S
            except DependencyUnavailable:
                if self._rules is None:
                    raise
        assert self._rules is not None
        return self._rules

    async def ping(self) -> bool:
        """True when a Validator replica answers."""
        ok: bool = await self._handle.ping.remote()
        return ok


class RemoteZones:
    """The zone port on the ZoneCalculator deployment: one call per part of a round."""

    max_readings_per_call = ZONE_READINGS_PER_CALL

    def __init__(self, handle: DeploymentHandle) -> None:  # type: ignore[type-arg]
        self._handle = handle
        # A Ray actor call: arguments through the object store, no gRPC message limit.
        self._by_reference = handle.options(_by_reference=True)

    async def analyse(self, jobs: Sequence[ZoneJob]) -> list[SessionAnalysis | InvalidRequest]:
        """One ZoneCalculator call; raises DependencyUnavailable / Overloaded."""
        big = sum(job.readings for job in jobs) > self.max_readings_per_call
        handle: Any = self._by_reference if big else self._handle
        result: list[SessionAnalysis | InvalidRequest] = await _call(
            "ZoneCalculator", handle.analyse.remote(list(jobs))
        )
        return result

    async def ping(self) -> bool:
        """True when a ZoneCalculator replica answers."""
        ok: bool = await self._handle.ping.remote()
        return ok
