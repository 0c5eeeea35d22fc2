"""Starting and stopping the local Ray + Serve that `make run` (and the e2e tests) use.

Loopback: every port Ray opens (GCS, raylet, object manager, workers, dashboard agent, runtime-env
agent, metrics) is on 127.0.0.1, checked after start; Serve's own servers are moved there by
worker_setup.py. The metrics endpoint listens on METRICS_HOST (through a relay in this process
when that is not 127.0.0.1), the gRPC port on GRPC_HOST (HAProxy, haproxy_mode.py), Serve's HTTP
port (the dashboard) on HTTP_HOST:HTTP_PORT (HAProxy's HTTP frontend; with INGRESS_MODE=proxy
Serve's Python proxy, through a relay when HTTP_HOST is not 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.runtime.haproxy_mode import haproxy_env, kill_orphan_haproxy
from heartrate_serve.runtime.serve_config import load_config, servicer_functions
from heartrate_serve.runtime.worker_setup import HOOK_ENV_VAR, LOCAL_HOOK
from heartrate_serve.settings import Settings

log = logging.getLogger("heartrate_serve.ray_runtime")
APP_NAME = "heartrate"
LOOPBACK = "127.0.0.1"
RELAY_IDLE_TIMEOUT_S = 60.0


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


def use_loopback_ray() -> None:
    """Sets this process's environment, before ray is imported, to start or join an instance's
    Ray on loopback. Ray binds its servers to the node address (all interfaces unless that is
    loopback), and both ray.init(_node_ip_address="127.0.0.1") and ray.init(address=
    "127.0.0.1:port") turn 127.0.0.1 into the host's LAN address unless this switch is off (it is
    what keeps a local Ray on loopback on macOS and Windows). No Ray port is reachable from
    another host (RayRuntime.start checks), so Ray's token auth stays off."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


class RayRuntime:
    """A local Ray cluster with Serve's gRPC ingress on settings.grpc_port and its HTTP ingress
    (the dashboard) on settings.http_port."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.instance_dir = settings.instance_dir or Path(tempfile.mkdtemp(prefix="hrs-"))
        haproxy = settings.ingress_mode == "haproxy"
        self._env = haproxy_env(settings, self.instance_dir / "h") if haproxy else {}
        self._started = False
        self._metrics_relay: Relay | None = None
        self._http_relay: Relay | None = None

    def start(self) -> None:
        """Starts Ray (no dashboard) and Serve's controller and proxies."""
        # Serve reads its feature flags from the environment of the processes Ray starts, so
        # they must be set in this process before ray.init.
        os.environ.update(self._env)
        os.environ.setdefault("SERVE_SOCKET_REUSE_PORT_ENABLED", "0")
        use_loopback_ray()  # inherited by every process Ray starts
        # Serve's documented throughput profile: user code on the replica's own event loop (no
        # thread hop per message; streams +32 % measured here), buffered request logs, GC frozen
        # after start-up, gRPC between deployments.
        os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        import ray
        from ray import serve

        s = self._settings
        # Ray's metrics exporter binds to loopback here; any other METRICS_HOST gets a relay.
        ray_metrics_port = s.metrics_port
        if s.metrics_host != LOOPBACK:
            ray_metrics_port = free_port()
            self._metrics_relay = Relay(s.metrics_host, s.metrics_port, ray_metrics_port)
        with _single_node_processes():
            ray.init(
                address="local",
                include_dashboard=False,
                configure_logging=False,
                log_to_driver=False,
                _node_ip_address=LOOPBACK,
                _metrics_export_port=ray_metrics_port,
                _temp_dir=str(self.instance_dir / "ray"),
                # No idle worker kept warm: each deployment starts its own replicas anyway.
                _system_config={
                    "enable_worker_prestart": False,
                    "prestart_worker_first_driver": False,
                },
                runtime_env={"worker_process_setup_hook": LOCAL_HOOK},
            )
        self._started = True
        node_ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        if node_ip != LOOPBACK:  # e.g. ray imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
            raise RuntimeError(f"Ray's node address is {node_ip}, not {LOOPBACK}")
        # Serve's HTTP host stays loopback: the replicas' own HTTP servers bind it too. HAProxy
        # moves its HTTP frontend to HTTP_HOST (haproxy_mode.py); the Python proxy gets a relay.
        http_port = s.http_port
        if s.ingress_mode == "proxy" and s.http_host != LOOPBACK:
            http_port = free_port()
            self._http_relay = Relay(s.http_host, s.http_port, http_port, name="http-relay")
        serve.start(
            http_options={"host": LOOPBACK, "port": http_port},
            grpc_options={
                "port": s.grpc_port,
                "grpc_servicer_functions": servicer_functions(s.serve_config),
                "enable_reflection": True,
            },
        )

    @property
    def fallback_grpc_port(self) -> int | None:
        """Serve's loopback-only, plaintext fallback gRPC proxy port (HAProxy mode), else None."""
        port = self._env.get("RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")
        return int(port) if port else None

    def wait_until_serving(self, timeout_s: float) -> None:
        """Blocks until grpc.health.v1 Check answers SERVING on the gRPC port."""
        deadline = time.monotonic() + timeout_s
        target = f"127.0.0.1:{self._settings.grpc_port}"
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                try:
                    resp = stub.Check(  # pyright: ignore[reportAttributeAccessIssue]
                        health_pb2.HealthCheckRequest(), timeout=2
                    )
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
        for relay in (self._metrics_relay, self._http_relay):
            if relay is not None:
                relay.close()


class Relay(socketserver.ThreadingTCPServer):
    """host:port relayed byte for byte to 127.0.0.1:upstream (Ray's metrics exporter, which binds
    to either loopback or every interface and nothing in between; Serve's Python HTTP proxy, whose
    host the replicas share), served by a daemon thread."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, host: str, port: int, upstream: int, name: str = "metrics-relay") -> None:
        family, _, _, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        self.address_family = family
        self.upstream = upstream
        super().__init__((str(address[0]), port), _RelayHandler)
        threading.Thread(target=self.serve_forever, name=name, daemon=True).start()

    def close(self) -> None:
        """Stops accepting and closes the listening socket."""
        self.shutdown()
        self.server_close()


class _RelayHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        client: socket.socket = self.request
        server = self.server
        assert isinstance(server, Relay)
        try:
            upstream = socket.create_connection((LOOPBACK, server.upstream), RELAY_IDLE_TIMEOUT_S)
        except OSError:
            return
        client.settimeout(RELAY_IDLE_TIMEOUT_S)
        with upstream:
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join(RELAY_IDLE_TIMEOUT_S)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copies src to dst until src ends, fails or stays idle too long; then ends dst's writing."""
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def _single_node_processes() -> Iterator[None]:
    """Within: a local ray.init starts no autoscaler monitor (one fixed node: nothing to scale;
    Serve's replica autoscaling does not need it) and no log monitor (nothing is streamed to this
    driver: log_to_driver=False). About 160 MiB of idle memory, measured."""
    from ray._private import parameter

    original = parameter.RayParams.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("no_monitor", True)
        kwargs.setdefault("include_log_monitor", False)
        original(self, *args, **kwargs)

    parameter.RayParams.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        parameter.RayParams.__init__ = original  # type: ignore[method-assign]


def deploy_config(path: Path, settings: Settings) -> None:
    """Deploys the application of serve_config.yaml, as `serve deploy` would, with this run's
    ports and Redis URL filled in."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    config = local_config(path, settings)
    client = serve_start()
    client.deploy_apps(ServeDeploySchema.model_validate(config), _blocking=True)


def local_config(path: Path, settings: Settings) -> dict[str, Any]:
    """serve_config.yaml as `make run` deploys it: this run's gRPC port, log level and settings
    (environment of the replicas), and the local worker hook (loopback and tuning)."""
    config = load_config(path)
    config["grpc_options"]["port"] = settings.grpc_port
    config.pop("http_options", None)
    config["logging_config"]["log_level"] = settings.log_level
    for app in config["applications"]:
        env = app.setdefault("runtime_env", {}).setdefault("env_vars", {}) or {}
        env.update(settings.as_env())
        env[HOOK_ENV_VAR] = LOCAL_HOOK  # not serve_config.yaml's tune only: loopback as well
        app["runtime_env"]["env_vars"] = env
    return config
