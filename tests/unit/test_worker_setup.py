"""The worker hooks: which one runs where, and what `tune` changes in a process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from heartrate_serve.runtime.ray_runtime import local_config
from heartrate_serve.runtime.serve_config import load_config
from heartrate_serve.runtime.worker_setup import (
    GRPC_SERVER_BURST_OPTIONS,
    HOOK_ENV_VAR,
    LOCAL_HOOK,
    TUNE_HOOK,
    bind_address,
)
from heartrate_serve.settings import Settings, packaged_serve_config


def test_serve_config_names_the_tuning_hook_and_throughput_profile() -> None:
    """serve_config.yaml as `serve deploy` / KubeRay take it: the replicas run `tune` (not the
    loopback hook, which would break routing across nodes) with the throughput profile."""
    (app,) = load_config(packaged_serve_config())["applications"]
    env = app["runtime_env"]["env_vars"]
    assert env[HOOK_ENV_VAR] == TUNE_HOOK
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"


def test_make_run_deploys_the_local_hook_with_its_settings(tmp_path: Path) -> None:
    """`make run` swaps in its loopback + tuning hook and adds its settings and port."""
    settings = Settings.from_env({"GRPC_PORT": "50123", "DATA_DIR": str(tmp_path)})
    (app,) = local_config(packaged_serve_config(), settings)["applications"]
    env = app["runtime_env"]["env_vars"]
    assert env[HOOK_ENV_VAR] == LOCAL_HOOK
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert env["GRPC_PORT"] == "50123"


@pytest.mark.parametrize("hook", [TUNE_HOOK, LOCAL_HOOK])
def test_each_hook_imports_and_tune_sets_gc_and_grpc_limits(hook: str) -> None:
    """Run in a fresh interpreter as Ray would (import by dotted path, call): GC thresholds and
    Serve's gRPC server options are changed; both hooks resolve."""
    module, func = hook.rsplit(".", 1)
    code = (
        f"import gc, importlib; importlib.import_module({module!r}).{func}(); "
        "from ray.serve._private import constants as c; "
        "o = dict(c.DEFAULT_GRPC_SERVER_OPTIONS); print(gc.get_threshold()[0], "
        "o.get('grpc.server.max_pending_requests'), "
        "o.get('grpc.server_max_unrequested_time_in_server'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == [
        "50000",
        str(dict(GRPC_SERVER_BURST_OPTIONS)["grpc.server.max_pending_requests"]),
        "600",  # seconds a call may wait to be picked up (grpc's default 30 cut bursts)
    ]


@pytest.mark.parametrize(
    ("address", "moved"),
    [
        ("[::]:9000", "127.0.0.1:9000"),
        ("0.0.0.0:9000", "127.0.0.1:9000"),
        ("[::]:50051", "0.0.0.0:50051"),
        ("127.0.0.1:9000", "127.0.0.1:9000"),
    ],
)
def test_local_binds_move_to_loopback_but_the_grpc_port_to_grpc_host(
    address: str, moved: str
) -> None:
    assert bind_address(address, "0.0.0.0", 50051) == moved
