"""The asyncio (grpc.aio) load generator of the benchmark; run it in its own process, away from
the server under test.

  python -m heartrate_serve.loadtest.loadgen --target 127.0.0.1:P --scenario unary:16 \
      [--duration 10] [--warmup 2] [--prefix bench] [--json-out result.json]

Scenarios (kind:concurrency, see common.SCENARIO_KINDS):
  unary:N         SubmitHeartRate with N calls in flight
  stream:N        N bidi StreamHeartRate streams, each writes its next reading when the previous
                  ack has arrived
  streams1hz:N    N bidi streams, each sending one reading per second (starts spread over 1 s);
                  afterwards every user's stored count is read back (GetHeartRateStatus) to count
                  lost readings (sent - stored)
  batch:N         SubmitHeartRateBatch of 1 000 readings, N calls in flight (readings/s)
  status:N        GetHeartRateStatus(recent_count=60) with N in flight, users seeded first
  zones:N         CalculateExerciseZones over 100 k columnar readings, N in flight
  zones-stored:N  CalculateExerciseZones over a stored_range of 100 k readings written first

Every scenario uses its own user ids (prefix, scenario, a random run id) and strictly increasing
millisecond timestamps per user, so no reading is a duplicate. Only operations that finish inside
the measured window (after the warm-up) count for throughput and latency; errors count over the
whole run.

The pieces: loadgen_scenario.py (Scenario: channels, user ids, setup, the run, the checks after
it, the result), loadgen_workers.py (the worker coroutine of each kind), loadgen_channels.py
(channel options, Security: TLS and token), loadgen_recording.py (Recorder of the measured
window, clocks, error texts). This module runs one scenario (run_scenario) and is the command
line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from heartrate_serve.loadtest.common import ScenarioSpec, parse_scenario
from heartrate_serve.loadtest.loadgen_channels import (
    CHANNEL_OPTIONS,
    MAX_MESSAGE_BYTES,
    RPC_TIMEOUT_S,
    STREAMS_PER_CHANNEL,
    Security,
    channels_for,
)
from heartrate_serve.loadtest.loadgen_recording import Recorder, now_ms
from heartrate_serve.loadtest.loadgen_scenario import Scenario
from heartrate_serve.loadtest.loadgen_workers import BATCH_SIZE, STATUS_RECENT, ZONE_READINGS

# Names other modules and tests import from here (they moved to the modules above).
__all__ = [
    "BATCH_SIZE",
    "CHANNEL_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "RPC_TIMEOUT_S",
    "STATUS_RECENT",
    "STREAMS_PER_CHANNEL",
    "ZONE_READINGS",
    "Recorder",
    "Scenario",
    "Security",
    "channels_for",
    "main",
    "now_ms",
    "run_scenario",
]


async def run_scenario(
    spec: ScenarioSpec,
    target: str,
    duration: float,
    warmup: float,
    prefix: str,
    security: Security | None = None,
    run_id: str | None = None,
    alert_every: int = 0,
    acks_out: str | None = None,
) -> dict[str, Any]:
    """Runs one scenario and returns its result dict (acks_out: the acknowledgement times of
    an alert_every run, as JSON {user: [[ts_ms, acked_ms], ...]})."""
    scenario = Scenario(spec, target, duration, warmup, prefix, security, run_id, alert_every)
    try:
        result = await scenario.run()
    finally:
        await scenario.close()
    if acks_out:
        Path(acks_out).write_text(json.dumps(scenario.acks))
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints the result as JSON (and writes it with --json-out)."""
    parser = argparse.ArgumentParser(description="asyncio gRPC load generator (see module doc)")
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--scenario", required=True, type=parse_scenario, help="kind:concurrency")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--prefix", default=f"lg{os.getpid()}", help="user id prefix")
    parser.add_argument("--json-out", help="write the result here")
    parser.add_argument("--run-id", help="fixed user id prefix: users are <run-id>-u<i>")
    parser.add_argument("--alert-every", type=int, default=0, help="streams1hz: alert pattern")
    parser.add_argument("--acks-out", help="streams1hz with --alert-every: ack times (JSON)")
    parser.add_argument("--tls-ca", type=Path, help="connect over TLS, trusting this PEM CA")
    parser.add_argument("--token-file", type=Path, help="send this bearer token (needs --tls-ca)")
    args = parser.parse_args(argv)
    security = Security(
        args.tls_ca.read_bytes() if args.tls_ca else None,
        args.token_file.read_text().strip() if args.token_file else None,
    )
    result = asyncio.run(
        run_scenario(
            args.scenario,
            args.target,
            args.duration,
            args.warmup,
            args.prefix,
            security,
            args.run_id,
            args.alert_every,
            args.acks_out,
        )
    )
    text = json.dumps(result, indent=2)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
