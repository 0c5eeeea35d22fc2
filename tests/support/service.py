"""The real service for the end-to-end tests, started by the one implementation the benchmark
uses too (heartrate_serve.loadtest.service.ServiceProcess): the launcher, `make run`'s entry
point, as a subprocess on loopback ports."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from heartrate_serve.loadtest.service import LOG_TAIL_CHARS, ServiceProcess
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis

START_TIMEOUT_S = 180.0


@contextmanager
def running_service(
    workdir: Path,
    *,
    grpc_port: int | None = None,
    timeout_s: float = START_TIMEOUT_S,
    **env: str,
) -> Iterator[ServiceProcess]:
    """Starts the launcher with data, logs and launcher.log in workdir and `env` added to its
    environment (embedded Redis unless REDIS_URL is given), waits for SERVING, and always stops
    it (SIGTERM) on the way out; a test may stop it earlier itself (ServiceProcess.stop). A
    launcher that exits or is not SERVING within timeout_s fails the test with its output."""
    svc = ServiceProcess(workdir, env=env, grpc_port=grpc_port, new_session=True)
    svc.start()
    try:
        failed = None
        try:
            svc.wait_serving(timeout_s)
        except (RuntimeError, TimeoutError) as error:
            failed = str(error)
        if failed is not None:  # outside the except: the output once, not chained twice
            pytest.fail(failed, pytrace=False)
        yield svc
    finally:
        svc.stop()


@dataclass(frozen=True)
class Service:
    """The running service under test, and the external Redis it stores readings in (the tests
    stop and restart that Redis)."""

    launcher: ServiceProcess
    redis: EmbeddedRedis

    @property
    def http_port(self) -> int:
        """HTTP_PORT: the dashboard (a free one, chosen by ServiceProcess)."""
        return self.launcher.http_port

    @property
    def http_url(self) -> str:
        """http://127.0.0.1:<HTTP_PORT> (no trailing slash): the dashboard."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def address(self) -> str:
        """host:port of the gRPC endpoint."""
        return self.launcher.address

    @property
    def metrics_port(self) -> int:
        """The Prometheus metrics port (METRICS_PORT)."""
        return self.launcher.metrics_port

    @property
    def process(self) -> subprocess.Popen[str]:
        """The launcher process."""
        assert self.launcher.process is not None
        return self.launcher.process

    @property
    def log_path(self) -> Path:
        """The launcher's output, as a file."""
        return self.launcher.log_path

    def log_tail(self, n_chars: int = LOG_TAIL_CHARS) -> str:
        """The end of the launcher's output, for failure messages."""
        return self.launcher.log_tail(n_chars)


@contextmanager
def service_with_external_redis(workdir: Path, **env: str) -> Iterator[Service]:
    """An embedded Redis started here (in workdir/redis) and the launcher using it through
    REDIS_URL, as running_service; both stopped on the way out."""
    redis = EmbeddedRedis(workdir / "redis")
    url = redis.start()
    try:
        with running_service(
            workdir, grpc_port=None, timeout_s=START_TIMEOUT_S, REDIS_URL=url, **env
        ) as launcher:
            yield Service(launcher, redis)
    finally:
        redis.stop()
