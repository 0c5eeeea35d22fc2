"""The ingress deployment: it *is* the gRPC service. Every call enters here (one place for the
coming authentication and overload shedding); methods are named exactly like the RPCs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve import Deployment
from ray.serve.grpc_util import RayServegRPCContext, gRPCInputStream
from ray.serve.handle import DeploymentHandle

from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.profiles import UserProfile
from heartrate_serve.core.validation import ValidationRules, canonical_user_id
from heartrate_serve.deployments.health import HealthProbe, health_status
from heartrate_serve.deployments.validation_router import ValidationRouter
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service import convert
from heartrate_serve.service.group_commit import GroupCommit
from heartrate_serve.service.intake import Intake
from heartrate_serve.service.metrics import current, observe_replica, timed_zones
from heartrate_serve.service.ordered_window import ordered_map
from heartrate_serve.service.pipeline import (
    BatchOutcome,
    ProfileBands,
    ReadingBatch,
    ReadingPipeline,
)
from heartrate_serve.service.status_codes import NotFound, status_for
from heartrate_serve.service.tunables import IngressTunables
from heartrate_serve.service.zone_response import zone_response
from heartrate_serve.settings import Settings
from heartrate_serve.store.store import ReadingStore

log = logging.getLogger("heartrate_serve.ingress")
# Readings of one stream in flight at once (validated and stored together, answered in order).
STREAM_WINDOW = 64
Ctx = RayServegRPCContext
ZoneJob = tuple[Any, Any, dict[str, Any]]


def _fail(ctx: Ctx, error: Exception) -> None:
    """Sets the status for an expected domain error; re-raises anything else (a bug)."""
    if isinstance(error, RayTaskError) and isinstance(error.cause, Exception):
        error = error.cause  # raised inside another deployment: report the domain error itself
    code = status_for(error)
    if code is None:
        raise error
    ctx.set_code(code)
    ctx.set_details(str(error))


class HeartRateIngress:
    """Adapter from the gRPC contract to the pipeline, the store and the two compute deployments."""

    def __init__(
        self,
        validator: DeploymentHandle,  # type: ignore[type-arg]
        zones: DeploymentHandle,  # type: ignore[type-arg]
        redis_url: str | None = None,
    ) -> None:
        self._settings = observe_replica(Settings.from_env(redis_url=redis_url))
        self._validator = validator
        self._zones = zones
        # Concurrent zone requests share one call to the zone calculator (one hop per batch).
        self._zone_commit: GroupCommit[ZoneJob, Any] = GroupCommit(self._analyse_many, max_items=64)
        self._tun = IngressTunables()
        if self._settings.redis_url is None:
            raise RuntimeError(
                "REDIS_URL is not set for the ingress replica. `make run` starts an embedded Redis "
                "and passes its URL; under `serve deploy` set REDIS_URL in the application's "
                "runtime_env env_vars (or args.redis_url) to a Redis every node can reach."
            )
        self._store = ReadingStore.from_settings(self._settings, self._tun.alert_rules())
        self._bands = ProfileBands(self._store, self._tun.profile_cache_ttl_s)
        self._validation = ValidationRouter(validator, self._tun.validator_offload_min_readings)
        self._pipeline = ReadingPipeline(self._store, self._validation.validate, self._bands)
        self._intake = Intake(self._pipeline, lambda: self.rules)
        self._health = HealthProbe(self._store, validator, zones)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Applies user_config from serve_config.yaml at runtime."""
        self._tun = IngressTunables.from_config(config)
        self._store.set_alert_rules(self._tun.alert_rules())
        self._bands.ttl_s = self._tun.profile_cache_ttl_s
        self._validation.offload_min_readings = self._tun.validator_offload_min_readings

    # --- original RPCs -------------------------------------------------------------------------

    async def SubmitHeartRate(
        self, request: pb.HeartRateRequest, grpc_context: Ctx
    ) -> pb.HeartRateResponse:
        """Stores one reading; out-of-range readings answer success=false (not an RPC error)."""
        try:
            return await self._intake.submit_one(request)
        except Exception as error:
            _fail(grpc_context, error)
            return pb.HeartRateResponse()

    async def StreamHeartRate(
        self, request_stream: gRPCInputStream[pb.HeartRateRequest], grpc_context: Ctx
    ) -> AsyncIterator[pb.HeartRateResponse]:
        """One answer per reading, in order; a bad reading is answered and the stream goes on."""
        counts = {"sent": 0, "rejected": 0}
        log.info("stream opened")
        current().stream(True)
        try:
            async for resp in ordered_map(request_stream, self._intake.stream_one, STREAM_WINDOW):
                counts["sent"] += 1
                counts["rejected"] += not resp.success
                yield resp
        finally:
            current().stream(False)
            log.info("stream closed: %(sent)d readings, %(rejected)d rejected", counts)

    async def GetHeartRateStatus(
        self, request: pb.StatusRequest, grpc_context: Ctx
    ) -> pb.StatusResponse:
        """The user's newest readings, their statistics and the sustained alert state."""
        try:
            user = canonical_user_id(request.user_id)
            readings = await self._store.recent(user, convert.status_limit(request.recent_count))
            state = await self._store.alert_state(user)
            band = (await self._bands.bands([user]))[user]
        except Exception as error:
            _fail(grpc_context, error)
            return pb.StatusResponse()
        rules = await self._validation.rules()
        limits = convert.thresholds(rules, self._tun.alert_rules(), band)
        return convert.status_response(
            readings.ts_ms, readings.bpm, readings.classification, state, limits
        )

    async def CalculateExerciseZones(
        self, request: pb.ExerciseZoneRequest, grpc_context: Ctx
    ) -> pb.ExerciseZoneResponse:
        """Time in zones, TRIMP and averages, from sent readings or a stored range."""
        try:
            user = canonical_user_id(request.user_id)
            query = convert.zone_query(request, await self._profile(user), self._tun.max_gap_s)
            ts, bpm = query.ts_ms, query.bpm
            if query.stored_range is not None:
                stored = await self._store.range(user, *query.stored_range)
                ts, bpm = stored.ts_ms, stored.bpm
                if len(ts) == 0:
                    raise InvalidRequest("stored_range", "no stored readings in stored_range")
            analysis = await self._zone_commit.submit((ts, bpm, query.params))
            if isinstance(analysis, InvalidRequest):
                raise analysis
        except Exception as error:
            _fail(grpc_context, error)
            return pb.ExerciseZoneResponse()
        return zone_response(analysis)

    async def _analyse_many(self, jobs: Sequence[ZoneJob]) -> list[Any]:
        result: list[Any] = await timed_zones(self._zones.analyse_many.remote, jobs)
        return result

    # --- added RPCs ----------------------------------------------------------------------------

    async def SubmitHeartRateBatch(
        self, request: pb.HeartRateBatchRequest, grpc_context: Ctx
    ) -> pb.HeartRateBatchResponse:
        """Columnar ingest of a device's buffer in one group-committed write."""
        try:
            batch = self._intake.batch(request)
            out = await self._intake.submit(batch, "SubmitHeartRateBatch")
            alert = await self._alert_after(batch, out)
        except Exception as error:
            _fail(grpc_context, error)
            return pb.HeartRateBatchResponse()
        return convert.batch_response(batch, out, alert, self.rules)

    async def _alert_after(self, batch: ReadingBatch, out: BatchOutcome) -> tuple[int, int]:
        if out.alert is not None:
            return out.alert
        state = await self._store.alert_state(batch.user_id)
        return state.active, state.since_ms

    async def SetUserProfile(
        self, request: pb.SetUserProfileRequest, grpc_context: Ctx
    ) -> pb.SetUserProfileResponse:
        """Creates or replaces a profile (validated; INVALID_ARGUMENT names the bad field)."""
        try:
            profile = convert.profile_from_proto(request.profile)
            await self._store.set_profile(profile.user_id, profile.to_dict())
            self._bands.forget(profile.user_id)
        except Exception as error:
            _fail(grpc_context, error)
            return pb.SetUserProfileResponse()
        return pb.SetUserProfileResponse(profile=convert.profile_to_proto(profile))

    async def GetUserProfile(
        self, request: pb.GetUserProfileRequest, grpc_context: Ctx
    ) -> pb.GetUserProfileResponse:
        """A user's profile; NOT_FOUND when none was set."""
        try:
            user = canonical_user_id(request.user_id)
            profile = await self._profile(user)
            if profile is None:
                raise NotFound(f"no profile for user_id {user!r}")
        except Exception as error:
            _fail(grpc_context, error)
            return pb.GetUserProfileResponse()
        return pb.GetUserProfileResponse(profile=convert.profile_to_proto(profile))

    async def _profile(self, user: str) -> UserProfile | None:
        raw = await self._store.get_profile(user)
        return None if raw is None else UserProfile.from_dict(raw)

    # --- grpc.health.v1.Health (Serve routes on the method name alone) ---------------------------

    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: Ctx
    ) -> health_pb2.HealthCheckResponse:
        """SERVING when Redis answers and the deployments are up; unknown service: NOT_FOUND."""
        status = await health_status(self._health, request.service)
        if status is None:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service!r}")
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, grpc_context: Ctx
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """Streams the serving status now and on every change."""
        async for status in self._health.watch(request.service):
            yield health_pb2.HealthCheckResponse(status=status)

    @property
    def rules(self) -> ValidationRules:
        """The validation rules last reported by the validator."""
        return self._validation.known_rules


IngressDeployment: Deployment = serve.deployment(name="HeartRateIngress")(HeartRateIngress)
