"""The benchmark: the real service against a plain single-process gRPC baseline, same load.

  python -m heartrate_serve.loadtest.bench [--quick] [--json-out PATH] [--keep]

In one invocation, on free loopback ports:
1. an EmbeddedRedis (temp dir) and the plain baseline (loadtest/baseline_server.py, one grpc.aio
   process, same validation and Redis writes, no Ray) as a subprocess; every scenario is run
   against it by the load generator (loadtest/loadgen.py, its own process); the baseline is then
   stopped, so it never shares the CPUs with the service;
2. the real service exactly as `make run` starts it: the launcher as a subprocess, with no
   REDIS_URL, so it starts its own embedded Redis (a separate Redis from the baseline's); the
   time from launcher start to "SERVING", the idle RSS/PSS of its whole process tree (launcher,
   Redis, Ray driver, GCS, raylet, agents, Serve controller/proxy/HAProxy, replicas) and the CPU
   seconds the tree uses during each scenario are recorded; the same scenarios are run.
It prints a markdown table with service/baseline ratios, the 2 000-stream line, PASS/MISS per
target, and writes everything as JSON. The runs are in bench_runs.py, the report in
bench_report.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psutil

from heartrate_serve.loadtest.bench_report import RATIO_SCENARIOS, bracket_baseline, print_report
from heartrate_serve.loadtest.bench_runs import (
    DEFAULT_JSON,
    bench_baseline,
    bench_service,
    plan_for,
)
from heartrate_serve.loadtest.common import parse_scenarios


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; exit code 0 when it ran (targets are reported, not enforced)."""
    parser = argparse.ArgumentParser(description="service vs plain gRPC baseline (see doc)")
    parser.add_argument("--quick", action="store_true", help="short windows: a smoke test")
    parser.add_argument("--json-out", default=str(DEFAULT_JSON), help="where to write JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, JSON)")
    parser.add_argument("--scenarios", help="comma-separated kind:concurrency list to run instead")
    args = parser.parse_args(argv)
    plan = plan_for(args.quick)
    if args.scenarios:
        plan = replace(plan, scenarios=parse_scenarios(args.scenarios))
    workdir = Path(tempfile.mkdtemp(prefix="hrs-bench-"))
    started = time.monotonic()
    try:
        print(f"bench ({'quick' if args.quick else 'full'}), work dir {workdir}", flush=True)
        base = bench_baseline(plan, workdir)
        svc = bench_service(plan, workdir)
        ratio_specs = [sp for sp in plan.scenarios if sp.name in RATIO_SCENARIOS]
        if plan.repeats > 1 and ratio_specs:  # baseline, service, baseline: see Plan.repeats
            print("baseline again (ratio scenarios):", flush=True)
            again = bench_baseline(replace(plan, scenarios=ratio_specs), workdir)
            base["results"] = bracket_baseline(base["results"], again["results"])
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    machine = f"{platform.node()}, {psutil.cpu_count()} CPUs, {platform.platform()}"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"heartrate-serve bench, {when} ({'quick' if args.quick else 'full'}); {machine}"
    table, checks = print_report(title, base, svc, plan.scenarios)
    total = time.monotonic() - started
    print(f"\nbench took {total:.0f} s")
    out = {
        "when": when,
        "machine": machine,
        "mode": "quick" if args.quick else "full",
        "plan": {
            "scenarios": [s.name for s in plan.scenarios],
            "duration_s": plan.duration_s,
            "warmup_s": plan.warmup_s,
            "many_streams_duration_s": plan.many_streams_duration_s,
            "repeats": plan.repeats,
            "repeated_scenarios": list(RATIO_SCENARIOS),
        },
        "redis": "separate: the baseline's EmbeddedRedis; the service's own embedded Redis "
        "started by the launcher (no REDIS_URL), as `make run` does",
        "baseline": base,
        "service": svc,
        "targets": checks,
        "table_markdown": table,
        "bench_seconds": round(total, 1),
    }
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"JSON: {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
