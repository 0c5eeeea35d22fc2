"""The application as a Ray cluster runs it: `ray start --head` + `serve deploy serve_config.yaml`
(not `make run`), on loopback ports of this machine. The replicas get the tuning `make run` is
benchmarked with (serve_config.yaml's runtime_env: the `tune` hook and the throughput profile),
read inside each replica process, and the service answers.

`ray stop` is never called: it would stop every Ray of this machine (the session's service too);
the cluster is stopped through its own --temp-dir (runtime/process_sweep.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.runtime.process_sweep import sweep
from heartrate_serve.runtime.ray_runtime import free_port
from heartrate_serve.runtime.worker_setup import GRPC_SERVER_BURST_OPTIONS
from heartrate_serve.settings import packaged_serve_config

pytestmark = [pytest.mark.e2e]
BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 240.0

# Run inside every replica process through Ray (`__ray_call__`), printed as JSON by a driver.
PROBE = """
import json, ray
ray.init(address="127.0.0.1:{gcs}", namespace="serve", log_to_driver=False)

def inside(_self):
    import gc, os
    from ray.serve._private import constants as c
    return {{
        "gc0": gc.get_threshold()[0],
        "max_pending": dict(c.DEFAULT_GRPC_SERVER_OPTIONS).get("grpc.server.max_pending_requests"),
        "throughput": os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED"),
        "pid": os.getpid(),
    }}

out = {{}}
for a in ray.util.list_named_actors(all_namespaces=True):
    if a["name"].startswith("SERVE_REPLICA::heartrate#"):
        actor = ray.get_actor(a["name"], namespace=a["namespace"])
        out[a["name"].split("#")[1] + "#" + a["name"].split("#")[2]] = ray.get(
            actor.__ray_call__.remote(inside), timeout=60
        )
print("PROBE " + json.dumps(out))
"""


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps Ray's node address on 127.0.0.1
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",  # for the proxy and the controller (README)
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A one-node Ray cluster started with `ray start --head` and the application deployed with
    `serve deploy` (its gRPC port moved to a free one, REDIS_URL to an embedded Redis); yields
    (gcs port, gRPC port)."""
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    temp = Path(tempfile.mkdtemp(prefix="hrs-sd-", dir="/tmp"))  # short: unix socket paths
    gcs, dashboard, grpc_port, http_port = (free_port() for _ in range(4))
    config = yaml.safe_load(packaged_serve_config().read_text())
    config["grpc_options"]["port"] = grpc_port
    config["http_options"]["port"] = http_port
    config["applications"][0]["runtime_env"]["env_vars"]["REDIS_URL"] = redis.url
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = _env()
    try:
        subprocess.run(
            [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1",
             f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             f"--temp-dir={temp}", "--num-cpus=2", "--disable-usage-stats"],
            env=env, check=True, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        deployed = subprocess.run(
            [str(BIN / "serve"), "deploy", str(path), "-a", f"http://127.0.0.1:{dashboard}"],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield gcs, grpc_port
    finally:
        sweep([temp])
        shutil.rmtree(temp, ignore_errors=True)
        redis.stop()


def _wait_serving(target: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)  # pyright: ignore[reportAttributeAccessIssue]
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = str(resp.status)
            except grpc.RpcError as error:
                last = f"{error.code().name}: {error.details()}"  # pyright: ignore[reportAttributeAccessIssue]
            time.sleep(1)
    raise AssertionError(f"not SERVING after {READY_TIMEOUT_S} s: {last}")


@pytest.mark.timeout(600)
def test_serve_deploy_replicas_run_with_the_tuning(cluster: tuple[int, int]) -> None:
    """Every replica of the three deployments has the GC thresholds, the gRPC burst limits and
    the throughput profile; a reading is stored through the cluster's gRPC port."""
    gcs, grpc_port = cluster
    target = f"127.0.0.1:{grpc_port}"
    _wait_serving(target)
    with grpc.insecure_channel(target) as ch:
        stub = pb_grpc.HeartRateMonitorStub(ch)
        ok = stub.SubmitHeartRate(pb.HeartRateRequest(user_id="sd", bpm=71), timeout=30)
        assert ok.success
        got = stub.GetHeartRateStatus(pb.StatusRequest(user_id="sd"), timeout=30)
        assert [m.bpm for m in got.recent_measurements] == [71]
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(gcs=gcs)],
        env=_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    line = [x for x in out.stdout.splitlines() if x.startswith("PROBE ")]
    assert line, out.stdout + out.stderr
    replicas = json.loads(line[0][len("PROBE ") :])
    assert {name.split("#")[0] for name in replicas} == {
        "HeartRateIngress",
        "Validator",
        "ZoneCalculator",
    }, replicas
    burst = dict(GRPC_SERVER_BURST_OPTIONS)["grpc.server.max_pending_requests"]
    for name, seen in replicas.items():
        assert seen["gc0"] == 50_000, (name, seen)
        assert seen["max_pending"] == burst, (name, seen)
        assert seen["throughput"] == "1", (name, seen)
