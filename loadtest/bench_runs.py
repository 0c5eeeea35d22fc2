"""The benchmark's runs: its plan, the load generator against one target, and each side (the
plain baseline with its own Redis; the service as `make run` starts it) started, measured and
stopped. loadtest/bench.py puts them together; loadtest/bench_secure.py reuses them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from heartrate_serve.loadtest.baseline_server import READY_LINE as BASELINE_READY
from heartrate_serve.loadtest.bench_report import (
    GIB,
    RATIO_SCENARIOS,
    median_run,
    parse_serve_latencies,
)
from heartrate_serve.loadtest.common import ScenarioSpec, fmt_num, parse_scenarios
from heartrate_serve.loadtest.service import ServiceProcess, TreeSample, cpu_used, sample_tree
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.runtime.ray_runtime import free_port

FULL_SCENARIOS = (
    "unary:1,unary:16,unary:64,stream:16,stream:64,streams1hz:2000,batch:4,status:16,"
    "zones:2,zones-stored:2"
)
QUICK_SCENARIOS = (
    "unary:1,unary:16,unary:64,stream:16,stream:64,streams1hz:200,batch:4,status:16,"
    "zones:2,zones-stored:2"
)
# loadtest/results/ is git-ignored.
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench.json"
IDLE_SETTLE_S = 5.0
METRICS_EXPORT_WAIT_S = 12.0


@dataclass(frozen=True)
class Plan:
    """Scenario list and timing of one bench run."""

    scenarios: list[ScenarioSpec]
    duration_s: float
    warmup_s: float
    many_streams_duration_s: float
    # The scenarios the targets compare are run this many times on each side, and the median
    # run counts: on this shared VM one 10 s run of the plain baseline moved between 720 and
    # 1 214 msg/s (stream:16, four runs in a row on 2026-12-01). With repeats > 1 the baseline
    # runs them again after the service, and the two medians are averaged (bracket_baseline).
    repeats: int = 1


def plan_for(quick: bool) -> Plan:
    """The full plan (10 s windows, 2 000 streams for 30 s, ratio scenarios 3 times) or the
    quick smoke-test plan."""
    if quick:
        return Plan(parse_scenarios(QUICK_SCENARIOS), 3.0, 1.0, 5.0)
    return Plan(parse_scenarios(FULL_SCENARIOS), 10.0, 2.0, 30.0, repeats=3)


def run_loadgen(
    target: str,
    spec: ScenarioSpec,
    plan: Plan,
    prefix: str,
    out: Path,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Runs the load generator in its own process (extra: more arguments, e.g. --tls-ca);
    returns its JSON result (or an error)."""
    duration = plan.many_streams_duration_s if spec.kind == "streams1hz" else plan.duration_s
    cmd = [
        sys.executable, "-m", "heartrate_serve.loadtest.loadgen",
        "--target", target, "--scenario", spec.name,
        "--duration", str(duration), "--warmup", str(plan.warmup_s),
        "--prefix", prefix, "--json-out", str(out), *(extra or []),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 180)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout)[-2000:]
        print(f"  loadgen {spec.name} failed ({proc.returncode}):\n{tail}", flush=True)
        return {"scenario": spec.name, "failed": True, "stderr": tail, "errors": math.nan}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def run_all(
    label: str, target: str, roots: list[int], plan: Plan, outdir: Path
) -> dict[str, dict[str, Any]]:
    """Every scenario of the plan against one target; CPU seconds of its process trees too."""
    results: dict[str, dict[str, Any]] = {}
    for spec in plan.scenarios:
        runs = []
        for _ in range(plan.repeats if spec.name in RATIO_SCENARIOS else 1):
            before = sample_tree(roots)
            t0 = time.monotonic()
            res = run_loadgen(
                target, spec, plan, f"bench-{label}", outdir / f"{label}-{spec.kind}.json"
            )
            wall = time.monotonic() - t0
            cpu = cpu_used(before, sample_tree(roots))
            res["server_cpu_s"] = round(cpu, 2)
            res["server_cpu_cores"] = round(cpu / wall, 2) if wall else None
            runs.append(res)
            lat = res.get("latency_ms", {})
            print(
                f"  {label:8s} {spec.name:16s} {fmt_num(res.get('throughput', math.nan)):>12s} "
                f"{res.get('unit', '')}  p50 {fmt_num(lat.get('p50_ms'), 1)} ms  "
                f"p99 {fmt_num(lat.get('p99_ms'), 1)} ms  errors {res.get('errors')}  "
                f"server CPU {cpu:.1f} s",
                flush=True,
            )
        results[spec.name] = median_run(runs)
    return results


def start_baseline(port: int, redis_url: str, log_path: Path) -> subprocess.Popen[str]:
    """Starts the baseline server and waits for its ready line."""
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process by the OS
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "heartrate_serve.loadtest.baseline_server",
            "--port",
            str(port),
            "--redis-url",
            redis_url,
        ],  # fmt: skip
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if BASELINE_READY in log_path.read_text():
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"baseline exited with {proc.returncode}: {log_path.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError("baseline server did not start in 60 s")


def stop_process(proc: subprocess.Popen[str] | None, timeout_s: float = 30) -> None:
    """SIGTERM, wait, SIGKILL when needed."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_baseline(plan: Plan, workdir: Path) -> dict[str, Any]:
    """Embedded Redis + baseline server, every scenario, then both stopped."""
    redis = EmbeddedRedis(workdir / "baseline-redis")
    url = redis.start()
    proc = None
    try:
        port = free_port()
        proc = start_baseline(port, url, workdir / "baseline.log")
        roots = [proc.pid] + ([redis.pid] if redis.pid else [])
        idle = sample_tree(roots, pss=True)
        print(f"baseline on 127.0.0.1:{port} (Redis {url})", flush=True)
        results = run_all("baseline", f"127.0.0.1:{port}", roots, plan, workdir)
        return {"idle": _mem(idle), "results": results}
    finally:
        stop_process(proc)
        redis.stop()


def start_service(
    workdir: Path, attempts: int = 2, env: dict[str, str] | None = None
) -> tuple[ServiceProcess, float]:
    """Starts the launcher (env: added to its environment) and waits for SERVING; one retry
    (Ray's start can time out when the machine is busy). Returns the service and its
    start-to-SERVING time."""
    for attempt in range(1, attempts + 1):
        service = ServiceProcess(workdir / f"service-{attempt}", env=env)
        service.start()
        try:
            return service, service.wait_serving()
        except (RuntimeError, TimeoutError) as error:
            service.stop()
            if attempt == attempts:
                raise
            print(f"service start failed, retrying: {str(error)[-500:]}", flush=True)
    raise AssertionError("unreachable")


def bench_service(plan: Plan, workdir: Path) -> dict[str, Any]:
    """The launcher as `make run` starts it, every scenario, then SIGTERM."""
    service, to_serving = start_service(workdir)
    try:
        assert service.process is not None
        roots = [service.process.pid]
        print(f"service SERVING on {service.target} after {to_serving:.1f} s", flush=True)
        settle = sample_tree(roots)
        time.sleep(IDLE_SETTLE_S)
        idle = sample_tree(roots, pss=True)
        idle_cores = cpu_used(settle, idle) / IDLE_SETTLE_S
        idle_processes = _process_list(roots)
        print(
            f"service idle: {idle.processes} processes, RSS {idle.rss_bytes / GIB:.2f} GiB, "
            f"PSS {idle.pss_bytes / GIB:.2f} GiB, CPU {idle_cores:.2f} cores",
            flush=True,
        )
        results = run_all("service", service.target, roots, plan, workdir)
        peak = sample_tree(roots, pss=True)
        time.sleep(METRICS_EXPORT_WAIT_S)  # Ray exports metrics every few seconds
        serve_metrics = deployment_latencies(service.metrics_port)
        for name, m in serve_metrics.items():
            print(
                f"  Serve {name}: {m['calls']:.0f} calls, mean processing {m['mean_ms']:.2f} ms",
                flush=True,
            )
        return {
            "start_to_serving_s": round(to_serving, 2),
            "idle_cpu_cores": round(idle_cores, 3),
            "serve_processing_latency": serve_metrics,
            "idle": _mem(idle),
            "after_load": _mem(peak),
            "idle_processes": idle_processes,
            "results": results,
        }
    finally:
        code = service.stop()
        print(f"service stopped (exit {code})", flush=True)


def deployment_latencies(metrics_port: int) -> dict[str, dict[str, float]]:
    """Serve's per-deployment processing latency (cumulative), from the service's /metrics."""
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return parse_serve_latencies(resp.read().decode())
    except OSError as error:
        print(f"  (no Serve metrics: {error})", flush=True)
        return {}


def _mem(s: TreeSample) -> dict[str, Any]:
    return {
        "processes": s.processes,
        "rss_bytes": s.rss_bytes,
        "pss_bytes": s.pss_bytes,
        "rss_gib": round(s.rss_bytes / GIB, 3),
        "pss_gib": round(s.pss_bytes / GIB, 3),
    }


def _process_list(roots: list[int]) -> list[dict[str, Any]]:
    """Name and RSS of every process of the tree (for the JSON)."""
    from heartrate_serve.loadtest.service import tree

    out = []
    for p in tree(roots):
        try:
            name = p.name()
            if name.startswith("python"):  # name it by its script or module
                args = [a for a in p.cmdline()[1:] if not a.startswith("-")]
                name = Path(args[0]).name if args else name
            out.append({"pid": p.pid, "name": name, "rss_mib": p.memory_info().rss >> 20})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(out, key=lambda d: -d["rss_mib"])
