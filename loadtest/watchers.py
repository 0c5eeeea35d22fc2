"""Many WatchAlerts watchers in one process, recording when each event arrives; for
loadtest/bench_alerts.py (run it in its own process, away from the service).

  python -m heartrate_serve.loadtest.watchers --target 127.0.0.1:P --run-id R --devices 2000 \
      --watchers 1000 --seconds 40 --out events.json

Watcher k watches the devices <run-id>-u<j> with j = k, k + watchers, k + 2 * watchers, ...
(each device by one watcher when devices >= watchers). Prints "ready" once the watches had time
to open.
The output is {"events": [[user, at_ms, active, received Unix ms], ...], "errors": [...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import grpc

from heartrate_serve.loadtest.loadgen import CHANNEL_OPTIONS, STREAMS_PER_CHANNEL
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc

OPEN_WAIT_S = 3.0


async def watch_all(
    target: str, run_id: str, devices: int, watchers: int, seconds: float
) -> dict[str, list[object]]:
    """Opens the watchers, records events for `seconds`, then cancels them."""
    n_channels = max(1, -(-watchers // STREAMS_PER_CHANNEL))
    channels = [
        grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(n_channels)
    ]
    events: list[object] = []
    errors: list[object] = []

    async def one(k: int) -> None:
        users = [f"{run_id}-u{j}" for j in range(k, devices, watchers)]
        stub = pb_grpc.HeartRateMonitorStub(channels[k % n_channels])
        call = stub.WatchAlerts(pb.WatchAlertsRequest(user_ids=users))
        try:
            async for event in call:
                events.append([event.user_id, event.at_ms, event.active, time.time() * 1000])
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                errors.append(f"{error.code().name}: {error.details()}")

    await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in channels))
    tasks = [asyncio.create_task(one(k)) for k in range(watchers)]
    # A watch answers nothing (not even headers) before its first event: give the calls time
    # to reach the service and subscribe before the devices start.
    await asyncio.sleep(OPEN_WAIT_S + watchers / 500)
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(c.close() for c in channels))
    return {"events": events, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="many WatchAlerts watchers (see module doc)")
    parser.add_argument("--target", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = asyncio.run(
        watch_all(args.target, args.run_id, args.devices, args.watchers, args.seconds)
    )
    Path(args.out).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
