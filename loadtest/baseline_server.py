"""The plain baseline: one process, one grpc.aio server, no Ray.

It implements the same contract with the same validation and the same Redis writes as the Serve
ingress (deployments/ingress.py): the same conversions (deployments/convert.py), the same
group-committed ReadingPipeline and ReadingStore, the same tunables (serve_config.yaml's
user_config), but the validator hop is a local call to core.validation.validate_readings and zones
are computed in-process with core.zones.analyse_session. SetUserProfile/GetUserProfile are not
implemented (UNIMPLEMENTED): the benchmark does not use them.

Run: python -m heartrate_serve.loadtest.baseline_server --port P --redis-url redis://127.0.0.1:R/0
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.profiles import UserProfile
from heartrate_serve.core.validation import ValidationRules, canonical_user_id
from heartrate_serve.core.zones import analyse_session
from heartrate_serve.deployments.validator import validate_batch
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.ray_runtime import CONFIG_PATH, load_config
from heartrate_serve.service import convert
from heartrate_serve.service.intake import Intake
from heartrate_serve.service.pipeline import (
    BatchOutcome,
    ProfileBands,
    ReadingBatch,
    ReadingPipeline,
)
from heartrate_serve.service.status_codes import status_for
from heartrate_serve.service.tunables import IngressTunables, ValidatorTunables
from heartrate_serve.service.zone_response import zone_response
from heartrate_serve.settings import Settings
from heartrate_serve.store.store import ReadingStore

READY_LINE = "baseline SERVING on"
# grpc.aio's default receive limit is 4 MiB; zone requests of 100 k columnar readings are ~1.3 MB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def user_configs() -> tuple[dict[str, Any], dict[str, Any]]:
    """(ingress, validator) user_config from serve_config.yaml, so both servers use one config."""
    deployments = {d["name"]: d for d in load_config(CONFIG_PATH)["applications"][0]["deployments"]}
    return (
        dict(deployments["HeartRateIngress"].get("user_config") or {}),
        dict(deployments["Validator"].get("user_config") or {}),
    )


async def _fail(context: grpc.aio.ServicerContext, error: Exception) -> None:
    """Aborts the call with the domain error's status code (re-raises a bug)."""
    code = status_for(error)
    if code is None:
        raise error
    await context.abort(code, str(error))


class BaselineServicer(pb_grpc.HeartRateMonitorServicer):
    """The ingress's RPC handling without Ray: same pipeline, local validation and zones."""

    def __init__(self, settings: Settings) -> None:
        ingress_cfg, validator_cfg = user_configs()
        self._tun = IngressTunables.from_config(ingress_cfg)
        self._rules: ValidationRules = ValidatorTunables.from_config(validator_cfg).rules(
            settings.retention_days
        )
        self._store = ReadingStore.from_settings(settings, self._tun.alert_rules())
        self._bands = ProfileBands(self._store, self._tun.profile_cache_ttl_s)
        self._pipeline = ReadingPipeline(self._store, self._validate, self._bands)
        self._intake = Intake(self._pipeline, lambda: self._rules)

    async def _validate(
        self,
        bpm: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        now_ms: int,
        lows: NDArray[np.int32],
        highs: NDArray[np.int32],
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """What the Validator deployment does, as a local call."""
        out = validate_batch(self._rules, bpm, ts_ms, now_ms, lows, highs)
        return out.reason, out.classification

    async def SubmitHeartRate(
        self, request: pb.HeartRateRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartRateResponse:
        """Stores one reading."""
        try:
            return await self._intake.submit_one(request)
        except Exception as error:
            await _fail(context, error)
            raise

    async def StreamHeartRate(
        self,
        request_iterator: AsyncIterator[pb.HeartRateRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.HeartRateResponse]:
        """One answer per reading, in order."""
        async for request in request_iterator:
            yield await self._intake.stream_one(request)

    async def GetHeartRateStatus(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatusResponse:
        """Newest readings, their statistics and the alert state."""
        try:
            user = canonical_user_id(request.user_id)
            readings = await self._store.recent(user, convert.status_limit(request.recent_count))
            state = await self._store.alert_state(user)
            band = (await self._bands.bands([user]))[user]
        except Exception as error:
            await _fail(context, error)
            raise
        limits = convert.thresholds(self._rules, self._tun.alert_rules(), band)
        return convert.status_response(
            readings.ts_ms, readings.bpm, readings.classification, state, limits
        )

    async def CalculateExerciseZones(
        self, request: pb.ExerciseZoneRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExerciseZoneResponse:
        """Zones from sent readings or a stored range, computed in this process."""
        try:
            user = canonical_user_id(request.user_id)
            raw = await self._store.get_profile(user)
            profile = None if raw is None else UserProfile.from_dict(raw)
            query = convert.zone_query(request, profile, self._tun.max_gap_s)
            ts, bpm = query.ts_ms, query.bpm
            if query.stored_range is not None:
                stored = await self._store.range(user, *query.stored_range)
                ts, bpm = stored.ts_ms, stored.bpm
                if len(ts) == 0:
                    raise InvalidRequest("stored_range", "no stored readings in stored_range")
            assert ts is not None and bpm is not None  # zone_query gives readings or a range
            analysis = analyse_session(ts, bpm, **query.params)
        except Exception as error:
            await _fail(context, error)
            raise
        return zone_response(analysis)

    async def SubmitHeartRateBatch(
        self, request: pb.HeartRateBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartRateBatchResponse:
        """Columnar ingest in one group-committed write."""
        try:
            batch = self._intake.batch(request)
            out = await self._intake.submit(batch, "SubmitHeartRateBatch")
            alert = await self._alert_after(batch, out)
        except Exception as error:
            await _fail(context, error)
            raise
        return convert.batch_response(batch, out, alert, self._rules)

    async def _alert_after(self, batch: ReadingBatch, out: BatchOutcome) -> tuple[int, int]:
        if out.alert is not None:
            return out.alert
        state = await self._store.alert_state(batch.user_id)
        return state.active, state.since_ms

    async def aclose(self) -> None:
        """Closes the store's connections."""
        await self._store.aclose()


async def serve(port: int, redis_url: str) -> None:
    """Serves on 127.0.0.1:port until SIGTERM/SIGINT."""
    settings = Settings.from_env(redis_url=redis_url)
    servicer = BaselineServicer(settings)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_concurrent_streams", 10_000),
            # New calls the application has not picked up yet; over the soft limit grpc core
            # cancels some at random, over the hard limit all (defaults 1 000 / 3 000): 2 000
            # devices connecting within a second would otherwise see CANCELLED.
            ("grpc.server.max_pending_requests", 20_000),
            ("grpc.server.max_pending_requests_hard_limit", 40_000),
        ]
    )
    pb_grpc.add_HeartRateMonitorServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"{READY_LINE} 127.0.0.1:{port}", flush=True)
    await stop.wait()
    await server.stop(grace=2)
    await servicer.aclose()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.redis_url))


if __name__ == "__main__":
    main()
