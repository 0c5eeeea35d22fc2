"""Alert delivery under load (issue 14): WatchAlerts watchers next to streaming devices.

  python -m heartrate_serve.loadtest.bench_alerts [--devices 2000] [--watchers 1000] \
      [--seconds 30] [--alert-every 20]

On a service of its own (started as `make run` does), two runs of the same device load
(loadgen streams1hz:<devices>, one reading per second per device, 70 bpm with a 175 every
<alert-every> readings: an alert raised, and cleared 3 readings later):
  A  without watchers;
  B  with <watchers> watchers (loadtest/watchers.py, its own process) watching every device.
Reported: the ingest rate of both (acknowledged readings/s in the measured window) and, for B,
the latency of each event from the acknowledgement of the reading that raised or cleared it to
its arrival at the watcher (p50/p99/max), and events expected (from the acknowledged readings)
against received. Both clocks are this machine's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from heartrate_serve.core.alerts import AlertRules, AlertState, step_alerts
from heartrate_serve.core.constants import NORMAL_HIGH_BPM, Classification
from heartrate_serve.loadtest.service import own_service

WARMUP_S = 2.0
HIGH = int(Classification.HIGH)


def expected_events(acks: dict[str, list[list[int]]]) -> set[tuple[str, int, bool]]:
    """(user, at_ms, active) of every event the acknowledged readings ([ts_ms, acked_ms, bpm])
    must have caused: 175 bpm is HIGH, 70 NORMAL (core/constants.py's 50-150 normal band)."""
    out: set[tuple[str, int, bool]] = set()
    for user, triples in acks.items():
        ts = np.array([t[0] for t in triples], np.int64)
        cls = np.array([HIGH if t[2] > NORMAL_HIGH_BPM else 0 for t in triples], np.uint8)
        _, events = step_alerts(AlertState(), ts, cls, AlertRules())
        out |= {(user, e.ts_ms, e.kind == "raised") for e in events}
    return out


def latencies_ms(events: Sequence[Sequence[Any]], acks: dict[str, list[list[int]]]) -> list[float]:
    """Arrival minus acknowledgement of the reading, per received event whose reading's ack
    is known."""
    acked = {(u, p[0]): p[1] for u, pairs in acks.items() for p in pairs}
    out = []
    for user, at_ms, _active, received_ms in events:
        ack = acked.get((user, at_ms))
        if ack is not None:
            out.append(received_ms - ack)
    return out


def loadgen(target: str, devices: int, seconds: float, run_id: str, every: int, work: Path,
            name: str) -> dict[str, Any]:  # fmt: skip
    """One streams1hz run in its own process; its result (and ack times in work/<name>.acks)."""
    out = work / f"{name}.json"
    cmd = [
        sys.executable, "-m", "heartrate_serve.loadtest.loadgen", "--target", target,
        "--scenario", f"streams1hz:{devices}", "--duration", str(seconds),
        "--warmup", str(WARMUP_S), "--run-id", run_id, "--alert-every", str(every),
        "--acks-out", str(work / f"{name}.acks"), "--json-out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return dict(json.loads(out.read_text()))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="alert delivery under load (see module doc)")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per run")
    parser.add_argument("--alert-every", type=int, default=20)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp,
        own_service("bench-alerts-svc-") as svc,
    ):
        work = Path(tmp)
        target = svc.address
        a = loadgen(target, args.devices, args.seconds, "runA", args.alert_every, work, "a")
        watch_s = args.seconds + WARMUP_S + 15
        watchers = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "heartrate_serve.loadtest.watchers",
                "--target",
                target,
                "--run-id",
                "runB",
                "--devices",
                str(args.devices),
                "--watchers",
                str(args.watchers),
                "--seconds",
                str(watch_s),
                "--out",
                str(work / "events.json"),
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            text=True,
        )
        assert watchers.stdout is not None
        if watchers.stdout.readline().strip() != "ready":
            raise RuntimeError("the watchers did not start")
        b = loadgen(target, args.devices, args.seconds, "runB", args.alert_every, work, "b")
        watchers.wait(timeout=watch_s + 120)
        got = json.loads((work / "events.json").read_text())
        acks = json.loads((work / "b.acks").read_text())
    lat = latencies_ms(got["events"], acks)
    want = expected_events(acks)
    received = {(u, at, bool(active)) for u, at, active, _ in got["events"]}
    report = {
        "devices": args.devices,
        "watchers": args.watchers,
        "ingest_without_watchers": round(a["throughput"], 1),
        "ingest_with_watchers": round(b["throughput"], 1),
        "ingest_ratio": round(b["throughput"] / a["throughput"], 3) if a["throughput"] else None,
        "errors_a_b": [a["errors"], b["errors"]],
        "lost_a_b": [a.get("lost"), b.get("lost")],
        "events_expected": len(want),
        "events_received": len(received),
        "events_missing": len(want - received),
        "watch_errors": got["errors"][:5],
        "latency_ms": {
            "n": len(lat),
            "p50": round(percentile(lat, 50), 1),
            "p99": round(percentile(lat, 99), 1),
            "max": round(max(lat), 1) if lat else None,
        },
        "ack_p99_ms_a_b": [a["latency_ms"]["p99_ms"], b["latency_ms"]["p99_ms"]],
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
