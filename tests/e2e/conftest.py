"""One real service for the whole e2e session: the launcher (`make run`'s entry point) as a
subprocess on free loopback ports, with a real embedded Redis the tests can stop and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.runtime.ray_runtime import free_port

START_TIMEOUT_S = 180


@dataclass
class Service:
    """The running service under test."""

    address: str
    metrics_port: int
    redis: EmbeddedRedis
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self) -> str:
        """The end of the launcher's output, for failure messages."""
        return self.log_path.read_text(errors="replace")[-4000:]


def _wait_serving(svc: Service) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if svc.process.poll() is not None:
            pytest.fail(f"launcher exited with {svc.process.returncode}:\n{svc.log_tail()}")
        if "SERVING on" in svc.log_path.read_text(errors="replace"):
            return
        time.sleep(0.5)
    pytest.fail(f"service not SERVING after {START_TIMEOUT_S} s:\n{svc.log_tail()}")


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Starts Redis and the launcher once; stops both (SIGTERM) at the end of the session."""
    tmp = tmp_path_factory.mktemp("service")
    redis = EmbeddedRedis(tmp / "redis")
    url = redis.start()
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "GRPC_PORT": str(grpc_port),
        "METRICS_PORT": str(metrics_port),
        "REDIS_URL": url,
        "DATA_DIR": str(tmp / "data"),
        "LOG_DIR": str(tmp / "log"),
        "LOG_LEVEL": "WARNING",
    }
    log_path = tmp / "launcher.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "heartrate_serve.runtime.launcher"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    svc = Service(f"127.0.0.1:{grpc_port}", metrics_port, redis, proc, log_path)
    try:
        _wait_serving(svc)
        yield svc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        redis.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def stub(service: Service) -> AsyncIterator[pb_grpc.HeartRateMonitorStub]:
    """A grpc.aio stub on the service's gRPC port."""
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield pb_grpc.HeartRateMonitorStub(channel)
