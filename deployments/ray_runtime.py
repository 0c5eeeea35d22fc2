"""Starting and stopping the local Ray + Serve that `make run` (and the e2e tests) use."""

from __future__ import annotations

import logging
import os
import random
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.deployments.haproxy_mode import haproxy_env, kill_orphan_haproxy
from heartrate_serve.deployments.settings import Settings

log = logging.getLogger("heartrate_serve.ray_runtime")
APP_NAME = "heartrate"
CONFIG_PATH = Path(__file__).resolve().parent.parent / "serve_config.yaml"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 in 20000-29999: outside Ray's worker ports (10002-19999 for
    `ray start`, the OS ephemeral range 32768-60999 for a local ray.init)."""
    for _ in range(1000):
        port = random.randrange(20_000, 30_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-29999")


class RayRuntime:
    """A local Ray cluster with Serve's gRPC ingress on settings.grpc_port."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.instance_dir = settings.instance_dir or Path(tempfile.mkdtemp(prefix="hrs-"))
        haproxy = settings.ingress_mode == "haproxy"
        self._env = haproxy_env(settings, self.instance_dir / "h") if haproxy else {}
        self._started = False

    def start(self) -> None:
        """Starts Ray (no dashboard) and Serve's controller and proxies."""
        # Serve reads its feature flags from the environment of the processes Ray starts, so
        # they must be set in this process before ray.init.
        os.environ.update(self._env)
        os.environ.setdefault("SERVE_SOCKET_REUSE_PORT_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback-only local cluster
        import ray
        from ray import serve

        s = self._settings
        ray.init(
            address="local",
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=s.log_level == "DEBUG",
            _metrics_export_port=s.metrics_port,
            _temp_dir=str(self.instance_dir / "ray"),
            runtime_env={"worker_process_setup_hook": "heartrate_serve.deployments.loopback.setup"},
        )
        self._started = True
        serve.start(
            http_options={"host": "127.0.0.1", "port": free_port()},
            grpc_options={
                "port": s.grpc_port,
                "grpc_servicer_functions": servicer_functions(),
                "enable_reflection": True,
            },
        )

    def wait_until_serving(self, timeout_s: float) -> None:
        """Blocks until grpc.health.v1 Check answers SERVING on the gRPC port."""
        deadline = time.monotonic() + timeout_s
        target = f"127.0.0.1:{self._settings.grpc_port}"
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                try:
                    resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.25)
        raise TimeoutError(f"service not SERVING on {target} after {timeout_s:.0f} s")

    def stop(self) -> None:
        """Stops Serve and Ray, and any HAProxy they left behind."""
        if self._started:
            import ray
            from ray import serve

            try:
                serve.shutdown()  # type: ignore[no-untyped-call]
            finally:
                ray.shutdown()
        if self._env:
            kill_orphan_haproxy(self._env)


def servicer_functions() -> list[str]:
    """The servicer functions Serve registers on its gRPC port (from serve_config.yaml)."""
    config = load_config(CONFIG_PATH)
    return list(config["grpc_options"]["grpc_servicer_functions"])


def load_config(path: Path) -> dict[str, Any]:
    """Reads a Serve config file."""
    with open(path) as f:
        config: dict[str, Any] = yaml.safe_load(f)
    return config


def deploy_config(path: Path, settings: Settings) -> None:
    """Deploys the application of serve_config.yaml, as `serve deploy` would, with this run's
    ports and Redis URL filled in."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    config = load_config(path)
    config["grpc_options"]["port"] = settings.grpc_port
    config.pop("http_options", None)
    config["logging_config"]["log_level"] = settings.log_level
    for app in config["applications"]:
        env = app.setdefault("runtime_env", {}).setdefault("env_vars", {}) or {}
        env.update(settings.as_env())
        app["runtime_env"]["env_vars"] = env
    client = serve_start()
    client.deploy_apps(ServeDeploySchema.model_validate(config), _blocking=True)
