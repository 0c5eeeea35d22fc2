"""The ingress deployment: it *is* the gRPC service, a thin adapter over the service core.

Every call enters here; methods are named exactly like the RPCs (Serve routes on the method name).
Each calls HeartRateService (service/service.py) and maps its domain errors to status codes
through the one table (service/status_codes.py). Validation and zone analysis run on the
Validator and ZoneCalculator deployments, reached through the ports in remote_ports.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve import Deployment
from ray.serve.grpc_util import RayServegRPCContext, gRPCInputStream
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from heartrate_serve.core.errors import DeadlineExceeded, Overloaded, Unauthenticated
from heartrate_serve.dashboard.app import Dashboard
from heartrate_serve.deployments.remote_ports import RemoteValidator, RemoteZones
from heartrate_serve.notify.webhooks import start_dispatcher
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.runtime.observability import observe_replica
from heartrate_serve.service.auth import authenticator_from_settings
from heartrate_serve.service.service import HeartRateService
from heartrate_serve.service.status_codes import STATUS_DETAILS_KEY, rich_details, status_for
from heartrate_serve.service.tunables import IngressTunables
from heartrate_serve.settings import Settings
from heartrate_serve.store.store import ReadingStore

log = logging.getLogger("heartrate_serve.ingress")
Ctx = RayServegRPCContext
M = TypeVar("M")


async def _answer(ctx: Ctx, call: Awaitable[M], empty: M, timeout_s: float | None) -> M:
    """The call's answer; for a domain error its status code and message, and an empty reply.
    After timeout_s (user_config request_timeout_s) the call is cancelled: DEADLINE_EXCEEDED."""
    try:
        try:
            return await asyncio.wait_for(call, timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the call took longer than request_timeout_s ({timeout_s:g} s) and was "
                "cancelled; readings it carried may or may not be stored: resend them "
                "(a reading with the same user and timestamp is stored once)"
            ) from None
    except Exception as error:
        code = status_for(error)
        if code is None:
            log.exception("bug: unexpected error")
            code = grpc.StatusCode.INTERNAL
        ctx.set_code(code)
        ctx.set_details(str(error))
        details = rich_details(error)
        if details is not None:  # next to Serve's own (request_id)
            trailing: list[Any] = [*ctx.trailing_metadata(), (STATUS_DETAILS_KEY, details)]
            ctx.set_trailing_metadata(trailing)  # a -bin key carries bytes
        return empty


def _authorization(ctx: Ctx) -> str | None:
    """The call's `authorization` metadata (the bearer token), None when absent."""
    for key, value in ctx.invocation_metadata():
        if key == "authorization":
            return str(value)
    return None


class HeartRateIngress:
    """heartrate.HeartRateMonitor and grpc.health.v1.Health on Ray Serve."""

    def __init__(
        self,
        validator: DeploymentHandle,  # type: ignore[type-arg]
        zones: DeploymentHandle,  # type: ignore[type-arg]
        redis_url: str | None = None,
    ) -> None:
        settings = observe_replica(Settings.from_env(redis_url=redis_url))
        if settings.redis_url is None:
            raise RuntimeError(
                "REDIS_URL is not set for the ingress replica. `make run` starts an embedded Redis "
                "and passes its URL; under `serve deploy` set REDIS_URL in the application's "
                "runtime_env env_vars (or args.redis_url) to a Redis every node can reach."
            )
        try:
            auth = authenticator_from_settings(settings)
        except ValueError as error:
            raise RuntimeError(str(error)) from None
        tunables = IngressTunables()
        store = ReadingStore.from_settings(settings, tunables.alert_rules())
        self.service = HeartRateService(
            store, RemoteValidator(validator), RemoteZones(zones), tunables, auth=auth
        )
        self.dashboard = Dashboard.build(self.service, store, auth)  # HTTP: dashboard/
        # Alert webhooks (one replica delivers at a time: a Redis lease).
        try:
            self._webhooks = start_dispatcher(
                store,
                settings.webhook_url,
                settings.webhook_secret_file,
                settings.data_dir.absolute(),
            )
        except (OSError, ValueError) as error:
            raise RuntimeError(f"WEBHOOK_SECRET_FILE: {error}") from None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Applies user_config from serve_config.yaml at run time (unknown keys refused)."""
        self.service.reconfigure(IngressTunables.from_config(config))

    async def SubmitHeartRate(self, request: pb.HeartRateRequest, grpc_context: Ctx) -> Any:
        """Stores one reading; out-of-range readings answer success=false (not an RPC error)."""
        return await _answer(
            grpc_context,
            self.service.SubmitHeartRate(request, _authorization(grpc_context)),
            pb.HeartRateResponse(),
            self.service.request_timeout_s,
        )

    async def StreamHeartRate(
        self, request_stream: gRPCInputStream[pb.HeartRateRequest], grpc_context: Ctx
    ) -> AsyncIterator[pb.HeartRateResponse]:
        """One answer per reading, in order; a bad reading is answered and the stream goes on."""
        stream = self.service.StreamHeartRate(request_stream, _authorization(grpc_context))
        try:
            async for response in stream:
                yield response
        except (Unauthenticated, Overloaded) as error:  # before the first answer: the whole call
            # Set on the context and raised: Serve's proxy (the fallback path in HAProxy mode,
            # and INGRESS_MODE=proxy) copies a context onto the call only with an answer, so a
            # stream that answers nothing and returns would end OK there. Raised, Serve keeps
            # the code it finds set (gRPCStatusError) on both the proxy and direct paths.
            grpc_context.set_code(status_for(error) or grpc.StatusCode.INTERNAL)
            grpc_context.set_details(str(error))
            raise

    async def WatchAlerts(
        self, request: pb.WatchAlertsRequest, grpc_context: Ctx
    ) -> AsyncIterator[pb.AlertEvent]:
        """The listed users' alert events, replayed after after_event_id, then live."""
        watch = self.service.WatchAlerts(request, _authorization(grpc_context))
        try:
            async for event in watch:
                yield event
        except Exception as error:  # a domain error ends the call with its status (see above)
            code = status_for(error)
            if code is None:
                log.exception("bug: unexpected error in WatchAlerts")
                code = grpc.StatusCode.INTERNAL
            grpc_context.set_code(code)
            grpc_context.set_details(str(error))
            raise

    async def GetHeartRateStatus(self, request: pb.StatusRequest, grpc_context: Ctx) -> Any:
        """The user's newest readings, their statistics and the sustained alert state."""
        return await _answer(
            grpc_context,
            self.service.GetHeartRateStatus(request, _authorization(grpc_context)),
            pb.StatusResponse(),
            self.service.request_timeout_s,
        )

    async def CalculateExerciseZones(
        self, request: pb.ExerciseZoneRequest, grpc_context: Ctx
    ) -> Any:
        """Time in zones, TRIMP and averages, from sent readings or a stored range."""
        return await _answer(
            grpc_context,
            self.service.CalculateExerciseZones(request, _authorization(grpc_context)),
            pb.ExerciseZoneResponse(),
            self.service.request_timeout_s,
        )

    async def SubmitHeartRateBatch(
        self, request: pb.HeartRateBatchRequest, grpc_context: Ctx
    ) -> Any:
        """Columnar ingest of a device's buffer in one group-committed write."""
        return await _answer(
            grpc_context,
            self.service.SubmitHeartRateBatch(request, _authorization(grpc_context)),
            pb.HeartRateBatchResponse(),
            self.service.request_timeout_s,
        )

    async def SetUserProfile(self, request: pb.SetUserProfileRequest, grpc_context: Ctx) -> Any:
        """Creates or replaces a profile (INVALID_ARGUMENT names the bad field)."""
        return await _answer(
            grpc_context,
            self.service.SetUserProfile(request, _authorization(grpc_context)),
            pb.SetUserProfileResponse(),
            self.service.request_timeout_s,
        )

    async def GetUserProfile(self, request: pb.GetUserProfileRequest, grpc_context: Ctx) -> Any:
        """A user's profile; NOT_FOUND when none was set."""
        return await _answer(
            grpc_context,
            self.service.GetUserProfile(request, _authorization(grpc_context)),
            pb.GetUserProfileResponse(),
            self.service.request_timeout_s,
        )

    # --- grpc.health.v1.Health (Serve routes on the method name alone) ---------------------------

    async def Check(self, request: health_pb2.HealthCheckRequest, grpc_context: Ctx) -> Any:
        """SERVING when Redis answers and the deployments are up; unknown service: NOT_FOUND."""
        status = await self.service.health_status(request.service)
        if status is None:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service!r}")
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, grpc_context: Ctx
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """Streams the serving status now and on every change."""
        async for status in self.service.health.watch(request.service):
            yield health_pb2.HealthCheckResponse(status=status)

    # --- HTTP (Serve's HTTP port, HTTP_PORT) ------------------------------------------------------

    async def __call__(self, request: Request) -> Response:
        """The live dashboard: pages and JSON endpoints (dashboard/app.py)."""
        return await self.dashboard.handle(request)


IngressDeployment: Deployment = serve.deployment(name="HeartRateIngress")(HeartRateIngress)
