"""Prints the replica counts of a running instance once per interval, as JSON lines, until stopped.

  python -m tests.support.serve_watch INSTANCE_DIR [INTERVAL_S]

Connects to the instance's Ray GCS once, as runtime/status.py does (gcs_address, a loopback
driver without auth), and polls serve.status(). Each line:
{"t": <time.monotonic()>, "apps": {"heartrate": "RUNNING"}, "deployments": {"Validator":
{"RUNNING": 1}, ...}}
or {"t": ..., "error": "..."} when a poll failed. time.monotonic() is the machine's clock since
boot, so the reading test process can compare it with its own.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from heartrate_serve.runtime.status import _text, gcs_address


def sample(status: Any) -> dict[str, Any]:
    """One JSON-able sample of a ServeStatus."""
    deployments: dict[str, dict[str, int]] = {}
    apps = {}
    for app_name, app in status.applications.items():
        apps[app_name] = _text(app.status)
        for name, dep in app.deployments.items():
            deployments[name] = {_text(k): int(v) for k, v in dep.replica_states.items()}
    return {"t": time.monotonic(), "apps": apps, "deployments": deployments}


def main(argv: list[str]) -> int:
    """Polls until SIGTERM/SIGINT or stdin/stdout closes."""
    instance = Path(argv[0])
    interval = float(argv[1]) if len(argv) > 1 else 1.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from heartrate_serve.runtime.ray_runtime import use_loopback_ray

    use_loopback_ray()  # as runtime/status.py: join the instance's Ray on loopback
    import ray
    from ray import serve

    ray.init(address=gcs_address(instance), logging_level=logging.ERROR, log_to_driver=False)
    try:
        while True:
            started = time.monotonic()
            try:
                line = sample(serve.status())
            except Exception as error:  # noqa: BLE001 - reported to the reader, polling goes on
                line = {"t": time.monotonic(), "error": f"{type(error).__name__}: {error}"}
            print(json.dumps(line), flush=True)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
