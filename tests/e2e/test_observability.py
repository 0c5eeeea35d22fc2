"""Observability of the running service: METRICS_PORT, a real Prometheus scraping it, ops_status."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.ray_runtime import free_port
from tests.support import promtool

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # Ray exports every ~10 s; Prometheus scrapes every second
SERVE_METRICS = (
    "ray_serve_num_grpc_requests_total",
    "ray_serve_grpc_request_latency_ms_bucket",
    "ray_serve_deployment_replica_healthy",
)
OUR_METRICS = (
    "ray_heartrate_readings_accepted_total",
    "ray_heartrate_readings_rejected_total",
    "ray_heartrate_redis_latency_ms_bucket",
    "ray_heartrate_batch_size_bucket",
    "ray_heartrate_active_streams",
    "ray_heartrate_redis_up",
)


def http_get(url: str) -> str:
    """The body of a GET on loopback."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
    return body.decode()


async def wait_for(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    """Polls check() in a thread until it returns a truthy value; fails after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await asyncio.to_thread(check)
        except OSError as error:  # not listening yet
            last = error
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(0.5)
    pytest.fail(f"{what} not seen within {timeout_s:.0f} s (last: {str(last)[:500]})")


async def submit(stub: pb_grpc.HeartRateMonitorStub, n: int, bpm: int = 75) -> None:
    """n readings of a fresh user, one SubmitHeartRate each (stored when bpm is in range)."""
    user, now = f"obs-{uuid.uuid4().hex[:10]}", int(time.time()) - n
    for i in range(n):
        resp = await stub.SubmitHeartRate(
            pb.HeartRateRequest(bpm=bpm, timestamp=now + i, user_id=user)
        )
        assert resp.success == (40 <= bpm <= 180) and not resp.duplicate


async def test_metrics_port_serves_serve_and_our_metrics(service: Any, stub: Any) -> None:
    """METRICS_PORT serves Ray Serve's ray_serve_* and our ray_heartrate_* series together."""
    await submit(stub, 3)
    await submit(stub, 1, bpm=20)  # rejected: out of range
    url = f"http://127.0.0.1:{service.metrics_port}/metrics"

    def all_present() -> bool:
        text = http_get(url)
        return all(re.search(rf"^{name}{{", text, re.M) for name in SERVE_METRICS + OUR_METRICS)

    await wait_for(all_present, f"{SERVE_METRICS + OUR_METRICS} at {url}")
    text = http_get(url)
    assert re.search(r'^ray_heartrate_readings_accepted_total\{.*rpc="SubmitHeartRate"', text, re.M)
    assert re.search(
        r'^ray_heartrate_readings_rejected_total\{.*reason="bpm_out_of_range"', text, re.M
    )
    assert re.search(r"^ray_heartrate_redis_up\{.*\} 1\.0$", text, re.M)


class Prometheus:
    """A real Prometheus (Debian's binary) scraping the service every second, on loopback."""

    def __init__(self, binary: str, metrics_port: int, tmp: Path) -> None:
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{ROOT / 'deploy' / 'prometheus' / 'alerts.yml'}]\n"
            "scrape_configs:\n"
            "  - job_name: heartrate-serve\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
        )
        self.log = tmp / "prometheus.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def api(self, path: str, **params: str) -> Any:
        """A Prometheus HTTP API call's `data` (fails on an error status)."""
        query = urllib.parse.urlencode(params)
        body = json.loads(http_get(f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}"))
        assert body["status"] == "success", body
        return body["data"]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, None when it has no result."""
        result = self.api("query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _binaries() -> dict[str, str]:
    found, why = promtool.binaries()
    if why is not None:
        pytest.skip(why)
    return dict(found)


@pytest.fixture(scope="module")
def prometheus(service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus scraping the service's METRICS_PORT; stopped after this module."""
    prom = Prometheus(
        _binaries()["prometheus"], service.metrics_port, tmp_path_factory.mktemp("prom")
    )
    try:
        yield prom
    finally:
        prom.stop()


async def test_real_prometheus_sees_readings_counter_move(
    prometheus: Prometheus, stub: Any
) -> None:
    """After a scrape, submits move ray_heartrate_readings_accepted_total in Prometheus."""
    await wait_for(lambda: prometheus.value('up{job="heartrate-serve"}') == 1, "a scrape")
    expr = 'sum(ray_heartrate_readings_accepted_total{rpc="SubmitHeartRate"})'
    before = prometheus.value(expr) or 0.0
    await submit(stub, 5)
    after = await wait_for(
        lambda: (v := prometheus.value(expr)) is not None and v >= before + 5 and v, expr
    )
    assert after >= before + 5


async def test_alert_rules_load_and_service_down_is_quiet(prometheus: Prometheus) -> None:
    """Prometheus loads alerts.yml; with the service up HeartrateServeDown is not firing."""
    await wait_for(lambda: prometheus.value('up{job="heartrate-serve"}') == 1, "a scrape")
    groups = prometheus.api("rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert len(rules) == 7 and rules["HeartrateServeDown"]["state"] == "inactive"


async def test_dashboard_queries_run_in_real_prometheus(prometheus: Prometheus) -> None:
    """Every Grafana panel query is valid PromQL, and the RPC-rate query has data."""
    dash = json.loads((ROOT / "deploy" / "grafana" / "heartrate-serve.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for expr in exprs:
        prometheus.api("query", query=expr.replace("$__rate_interval", "1m"))
    rate = exprs[0].replace("$__rate_interval", "1m")
    await wait_for(lambda: prometheus.api("query", query=rate)["result"], rate)


async def test_ops_status_shows_replicas_per_deployment(service: Any) -> None:
    """ops_status (printed by the launcher) lists each deployment HEALTHY with its replicas."""
    found = re.search(r"heartrate-status (\S+);", service.log_path.read_text())
    assert found, service.log_tail()
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "heartrate_serve.runtime.status", found.group(1)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for deployment in ("HeartRateIngress", "Validator", "ZoneCalculator"):
        assert re.search(rf"{deployment}\s+HEALTHY\s+replicas RUNNING=\d", out.stdout), out.stdout
