"""The plain baseline: one process, one grpc.aio server, no Ray.

It runs the same service core as the Serve ingress (service/service.py: the same conversions,
group-committed pipeline, store and tunables from serve_config.yaml's user_config), with
in-process ports (service/local_ports.py) where the ingress calls the Validator and ZoneCalculator
deployments. It imports nothing of Ray.

Run: python -m heartrate_serve.loadtest.baseline_server --port P --redis-url redis://127.0.0.1:R/0
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc

from heartrate_serve.core.errors import Unauthenticated
from heartrate_serve.deployments.grpc_services import add_HeartRateMonitorServicer_to_server
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.serve_config import deployment_user_configs
from heartrate_serve.service.auth import authenticator_from_settings
from heartrate_serve.service.local_ports import LocalValidator, LocalZones
from heartrate_serve.service.service import HeartRateService
from heartrate_serve.service.status_codes import STATUS_DETAILS_KEY, rich_details, status_for
from heartrate_serve.service.tunables import IngressTunables, ValidatorTunables
from heartrate_serve.settings import Settings
from heartrate_serve.store.store import ReadingStore

READY_LINE = "baseline SERVING on"
# grpc.aio's default receive limit is 4 MiB; zone requests of 100 k columnar readings are ~1.3 MB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
M = TypeVar("M")


async def _answer(context: grpc.aio.ServicerContext, call: Awaitable[M]) -> M:
    """The call's answer; aborts with the domain error's status code (re-raises a bug)."""
    try:
        return await call
    except Exception as error:
        code = status_for(error)
        if code is None:
            raise
        details = rich_details(error)
        trailing = ((STATUS_DETAILS_KEY, details),) if details is not None else ()
        await context.abort(code, str(error), trailing_metadata=trailing)
        raise  # abort raises; this line is not reached


def build_service(settings: Settings) -> HeartRateService:
    """The service core with in-process ports, tuned by serve_config.yaml's user_config."""
    configs = deployment_user_configs(settings.serve_config)
    tunables = IngressTunables.from_config(configs.get("HeartRateIngress"))
    rules = ValidatorTunables.from_config(configs.get("Validator")).rules(settings.retention_days)
    store = ReadingStore.from_settings(settings, tunables.alert_rules())
    auth = authenticator_from_settings(settings)
    return HeartRateService(store, LocalValidator(rules), LocalZones(), tunables, auth=auth)


def _authorization(context: Any) -> str | None:
    """The call's `authorization` metadata (the bearer token), None when absent."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


class BaselineServicer(pb_grpc.HeartRateMonitorServicer):
    """grpc.aio adapter over the service core (the same one the Serve ingress adapts)."""

    def __init__(self, service: HeartRateService) -> None:
        self.service = service

    async def SubmitHeartRate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Stores one reading."""
        return await _answer(
            context, self.service.SubmitHeartRate(request, _authorization(context))
        )

    async def StreamHeartRate(
        self, request_iterator: AsyncIterator[pb.HeartRateRequest], context: Any
    ) -> AsyncIterator[pb.HeartRateResponse]:
        """One answer per reading, in order."""
        stream = self.service.StreamHeartRate(request_iterator, _authorization(context))
        try:
            async for response in stream:
                yield response
        except Unauthenticated as error:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))

    async def WatchAlerts(self, request: Any, context: Any) -> AsyncIterator[pb.AlertEvent]:
        """Alert events, replayed after after_event_id, then live."""
        watch = self.service.WatchAlerts(request, _authorization(context))
        try:
            async for event in watch:
                yield event
        except Exception as error:
            code = status_for(error)
            if code is None:
                raise
            await context.abort(code, str(error))

    async def GetHeartRateStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Newest readings, their statistics and the alert state."""
        return await _answer(
            context, self.service.GetHeartRateStatus(request, _authorization(context))
        )

    async def CalculateExerciseZones(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Zones from sent readings or a stored range, computed in this process."""
        return await _answer(
            context, self.service.CalculateExerciseZones(request, _authorization(context))
        )

    async def SubmitHeartRateBatch(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Columnar ingest in one group-committed write."""
        return await _answer(
            context, self.service.SubmitHeartRateBatch(request, _authorization(context))
        )

    async def SetUserProfile(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Creates or replaces a profile."""
        call = self.service.SetUserProfile(request, _authorization(context))
        return await _answer(context, call)

    async def GetUserProfile(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """A user's profile."""
        call = self.service.GetUserProfile(request, _authorization(context))
        return await _answer(context, call)


async def serve(port: int, redis_url: str) -> None:
    """Serves on 127.0.0.1:port until SIGTERM/SIGINT."""
    settings = Settings.from_env(redis_url=redis_url)
    servicer = BaselineServicer(build_service(settings))
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
            ("grpc.server_max_unrequested_time_in_server", 600),  # as the service's (see
            # runtime/worker_setup.py): a stream not picked up in 30 s is otherwise CANCELLED
        ]
    )
    add_HeartRateMonitorServicer_to_server(servicer, server)  # bad bytes: INVALID_ARGUMENT
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"{READY_LINE} 127.0.0.1:{port}", flush=True)
    await stop.wait()
    await server.stop(grace=2)
    await servicer.service.aclose()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.redis_url))


if __name__ == "__main__":
    main()
