"""Ray worker setup hooks: `tune` for the replicas wherever the application runs (serve_config.yaml
names it, so `serve deploy` and KubeRay get it too), `setup` (= loopback + tune) for every worker
of a local run (`make run`).

- Loopback: Serve binds the Python gRPC proxy, the direct-ingress replica servers and the
  replicas' inter-deployment gRPC servers to "[::]:port", with no option to choose the host; every
  listener we start stays on 127.0.0.1 (Ray's own servers are there by the node address), except
  the Python proxy's GRPC_PORT (INGRESS_MODE=proxy), which goes to GRPC_HOST.
- Connection bursts: gRPC servers cancel calls that wait unrequested beyond a soft limit of 1 000
  pending calls. 2 000 devices opening their streams within a second hit it (CANCELLED seen in the
  benchmark), so Serve's gRPC servers get room for a burst of 20 000; and a call may wait 600 s
  (not 30) to be picked up by a busy replica before grpc core cancels it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

GRPC_SERVER_BURST_OPTIONS = [
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
    # A call the application has not picked up after this many seconds is cancelled (grpc
    # core's default: 30). On a saturated replica the last of 2 000 streams opened within a
    # second waited ~30 s and got CANCELLED (bench, 2026-12-01); later is better than never.
    ("grpc.server_max_unrequested_time_in_server", 600),
]


def bind_address(address: str, grpc_host: str, grpc_port: int) -> str:
    """A gRPC bind address on every interface ("[::]:port", "0.0.0.0:port") moved to 127.0.0.1,
    or to grpc_host for grpc_port; any other address as it is."""
    for wildcard in ("[::]:", "0.0.0.0:"):
        if address.startswith(wildcard):
            port = address[len(wildcard) :]
            host = grpc_host.strip("[]") if port == str(grpc_port) else "127.0.0.1"
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return address


def _loopback() -> None:
    from ray.serve._private import default_impl, replica

    from heartrate_serve.settings import Settings

    settings = Settings.from_env()  # the driver's environment, inherited through the raylet
    add_address = default_impl.add_grpc_address
    add_port: Callable[[Any, str], int] = replica.add_port_to_grpc_server  # type: ignore[attr-defined]

    def moved(address: str) -> str:
        return bind_address(address, settings.grpc_host, settings.grpc_port)

    def add_grpc_address(server: Any, address: str) -> Any:
        return add_address(server, moved(address))

    def add_port_to_grpc_server(server: Any, address: str) -> Any:
        return add_port(server, moved(address))

    default_impl.add_grpc_address = add_grpc_address  # type: ignore[assignment]
    replica.add_port_to_grpc_server = add_port_to_grpc_server  # type: ignore[attr-defined]


def _grpc_server_limits() -> None:
    from ray.serve._private import constants

    # The list object Serve passes to every gRPCGenericServer it creates: extended in place.
    constants.DEFAULT_GRPC_SERVER_OPTIONS.extend(GRPC_SERVER_BURST_OPTIONS)


def _gc_thresholds() -> None:
    import gc

    # Thousands of open streams keep many live objects; the default threshold (700) runs the
    # cyclic collector often, and its pauses showed up as tail latency of stream acks.
    gc.set_threshold(50_000, 20, 20)


# The environment variable through which Ray runs a setup hook in a worker process. An
# application's runtime_env cannot name a hook with `worker_process_setup_hook` (Ray honours that
# field only in a job's runtime_env, at ray.init); what ray.init turns it into, this variable in
# the worker's environment, works in an application's env_vars as well.
HOOK_ENV_VAR = "__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR"
TUNE_HOOK = "heartrate_serve.runtime.worker_setup.tune"
LOCAL_HOOK = "heartrate_serve.runtime.worker_setup.setup"


def tune() -> None:
    """The replicas' tuning, wherever they run: room for connection bursts, fewer GC pauses."""
    _grpc_server_limits()
    _gc_thresholds()


def setup() -> None:
    """Runs in every Ray worker of a `make run` instance before any actor starts."""
    _loopback()
    tune()
