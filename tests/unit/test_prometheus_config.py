"""deploy/: the Prometheus scrape config and alert rules pass promtool; the dashboard is sound."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import promtool as promtool_helper

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "heartrate-serve.json"
OUR_METRICS = {
    "ray_heartrate_readings_accepted_total",
    "ray_heartrate_readings_rejected_total",
    "ray_heartrate_readings_duplicate_total",
    "ray_heartrate_alerts_raised_total",
    "ray_heartrate_alerts_cleared_total",
    "ray_heartrate_active_streams",
    "ray_heartrate_redis_latency_ms_bucket",
    "ray_heartrate_redis_errors_total",
    "ray_heartrate_batch_size_bucket",
    "ray_heartrate_zone_latency_ms_bucket",
    "ray_heartrate_zone_readings_bucket",
    "ray_heartrate_redis_up",
    "ray_heartrate_health_serving",
}


def load_promtool() -> ModuleType:
    """The promtool helper (tests/support/promtool.py)."""
    return promtool_helper


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (installs Debian's prometheus package when missing, else skips)."""
    found, why = load_promtool().binaries()
    if why is not None:
        pytest.skip(why)
    return str(found["promtool"])


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """promtool with args in deploy/prometheus."""
    return subprocess.run(
        [promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=60, check=False
    )


def test_scrape_config_is_valid(promtool: str) -> None:
    """promtool check config accepts prometheus.yml (and the rule file it names)."""
    out = run(promtool, "check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_rules_are_valid(promtool: str) -> None:
    """promtool check rules accepts alerts.yml."""
    out = run(promtool, "check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 7 rules found" in out.stdout


def test_alert_rules_fire_on_failures_only(promtool: str) -> None:
    """promtool test rules: every alert fires on its failure and none on healthy series."""
    out = run(promtool, "test", "rules", "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the Grafana dashboard."""
    dash: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_covers_rpcs_readings_alerts_replicas() -> None:
    """The dashboard queries Serve's RPC metrics, replica health and all of ours."""
    text = " ".join(dashboard_exprs())
    used = set(re.findall(r"ray_[a-z_]+", text))
    assert {
        "ray_serve_num_grpc_requests_total",
        "ray_serve_num_grpc_error_requests_total",
        "ray_serve_grpc_request_latency_ms_bucket",
        "ray_serve_deployment_replica_healthy",
    } <= used
    assert used >= OUR_METRICS, OUR_METRICS - used


def test_dashboard_latencies_use_buckets_not_sum() -> None:
    """Ray's histogram _sum is approximate: quantiles come from _bucket series only."""
    for expr in dashboard_exprs():
        assert "_sum" not in expr and "_count" not in expr, expr
        if "_bucket" in expr:
            assert expr.startswith("histogram_quantile("), expr
