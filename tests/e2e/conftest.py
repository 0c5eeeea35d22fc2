"""One real service for the whole e2e session: the launcher (`make run`'s entry point) as a
subprocess on free loopback ports, with a real embedded Redis the tests can stop and restart."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio

from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from tests.support.service import Service, service_with_external_redis


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Starts Redis and the launcher once; stops both (SIGTERM) at the end of the session."""
    with service_with_external_redis(
        tmp_path_factory.mktemp("service"), LOG_LEVEL="WARNING"
    ) as svc:
        yield svc


@pytest_asyncio.fixture(loop_scope="session")
async def stub(service: Service) -> AsyncIterator[pb_grpc.HeartRateMonitorStub]:
    """A grpc.aio stub on the service's gRPC port."""
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield pb_grpc.HeartRateMonitorStub(channel)
