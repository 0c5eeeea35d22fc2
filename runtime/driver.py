"""The Ray driver process that the launcher supervises: local Ray + Serve + the application.

Run by the launcher in its own session (so a terminal's Ctrl-C reaches only the launcher, which
then stops this process in order: Serve, then Ray). Not meant to be run by hand.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from heartrate_serve.runtime.logging_setup import configure_process_logging
from heartrate_serve.runtime.ray_runtime import RayRuntime, deploy_config
from heartrate_serve.runtime.readiness import wait_until_serving_tls
from heartrate_serve.runtime.redis_watch import RedisUpGauge
from heartrate_serve.settings import Settings

READY_TIMEOUT_S = 120.0
READY_LINE = "heartrate-serve driver: SERVING"


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT (installed after ray.init, which sets its own)."""
    stop = threading.Event()

    def handler(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def main() -> None:
    """Starts Ray and Serve, deploys serve_config.yaml, serves until SIGTERM, then stops both."""
    settings = Settings.from_env()
    configure_process_logging(settings, "driver")
    runtime = RayRuntime(settings)
    try:
        runtime.start()
        RedisUpGauge(settings.redis_url).start()  # heartrate_redis_up at METRICS_PORT
        stop = _stop_on_signals()
        deploy_config(settings.serve_config, settings)
        fallback = runtime.fallback_grpc_port
        if settings.tls and fallback is not None:
            wait_until_serving_tls(settings, fallback, READY_TIMEOUT_S)
        else:
            runtime.wait_until_serving(READY_TIMEOUT_S)
        print(READY_LINE, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        runtime.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
