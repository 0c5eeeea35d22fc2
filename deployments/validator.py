"""The Validator deployment: validates and classifies every group-commit round of readings.

It owns the validation rules (serve_config.yaml user_config). Each call is one part of a round
(up to ~100 000 readings, packed as bytes: core/round_codec.py), validated in one numpy pass by
core.batches.validate_batch. It reports
readings validated per second for autoscaling (autoscaling.py).
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Deployment

from heartrate_serve.core.batches import validate_batch
from heartrate_serve.core.round_codec import pack_output, unpack_request
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.deployments.autoscaling import WorkMeter
from heartrate_serve.runtime.observability import observe_replica
from heartrate_serve.service.tunables import ValidatorTunables
from heartrate_serve.settings import Settings


class Validator:
    """Applies the rules in force to whole parts of rounds at once."""

    # Methods are `async def`: Serve runs sync methods in a thread pool (a thread hop and GIL
    # hand-over per call); the work of a call is one short numpy pass, fine on the event loop.

    def __init__(self) -> None:
        self._retention_days = observe_replica(Settings.from_env()).retention_days
        self._rules = ValidatorTunables().rules(self._retention_days)
        self._meter = WorkMeter()

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Applies new bands/limits from user_config (unknown keys and bad bands refused)."""
        self._rules = ValidatorTunables.from_config(config).rules(self._retention_days)

    async def validate(self, packed: bytes, now_ms: int) -> bytes:
        """Validates a part of a round (core/round_codec.py: the columns in, the reasons,
        classifications and rules out); per-reading bands of 0 mean the configured band."""
        bpm, ts_ms, normal_low, normal_high = unpack_request(packed)
        out = validate_batch(self._rules, bpm, ts_ms, now_ms, normal_low, normal_high)
        self._meter.add(len(bpm))
        return pack_output(out)

    async def rules(self) -> ValidationRules:
        """The rules in force."""
        return self._rules

    async def ping(self) -> bool:
        """Liveness for the health check."""
        return True

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Readings validated per second (Serve's custom autoscaling metric)."""
        return self._meter.stats()


ValidatorDeployment: Deployment = serve.deployment(name="Validator")(Validator)
