"""`make run`: embedded Redis (unless REDIS_URL), a local Ray, Serve from serve_config.yaml, and
a foreground wait. SIGTERM or Ctrl-C stops everything it started, leaving no process behind."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from heartrate_serve.deployments.embedded_redis import EmbeddedRedis
from heartrate_serve.deployments.ray_runtime import RayRuntime, deploy_config
from heartrate_serve.deployments.settings import Settings, SettingsError

log = logging.getLogger("heartrate_serve.launcher")
CONFIG_PATH = Path(__file__).resolve().parent.parent / "serve_config.yaml"
READY_TIMEOUT_S = 120.0


def _start_redis(settings: Settings, stack: ExitStack) -> Settings:
    """Starts the embedded Redis when no REDIS_URL is given; returns settings pointing at it."""
    if settings.redis_url:
        log.warning("using Redis at %s", _redacted(settings.redis_url))
        return settings
    redis = EmbeddedRedis(settings.data_dir, fsync=settings.redis_fsync)
    stack.callback(redis.stop)
    url = redis.start()
    print(f"embedded Redis: {url} (data in {settings.data_dir.resolve()})", flush=True)
    return Settings.from_env(redis_url=url)


def _redacted(url: str) -> str:
    """A Redis URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def _wait_for_signal() -> int:
    """Blocks until SIGTERM or SIGINT; returns the signal number."""
    got: list[int] = []
    done = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        got.append(signum)
        done.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not done.wait(0.5):
        pass
    return got[0]


def serve_forever(settings: Settings, config_path: Path = CONFIG_PATH) -> int:
    """Runs the service until a stop signal; returns the process exit code."""
    with ExitStack() as stack:
        # Signals during start-up also stop cleanly: the stack unwinds on KeyboardInterrupt.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            started = time.monotonic()
            settings = _start_redis(settings, stack)
            runtime = RayRuntime(settings)
            stack.callback(runtime.stop)
            runtime.start()
            deploy_config(config_path, settings)
            runtime.wait_until_serving(READY_TIMEOUT_S)
            took = time.monotonic() - started
            print(
                f"heartrate-serve SERVING on 127.0.0.1:{settings.grpc_port} (gRPC) after {took:.1f} s; "
                f"metrics on :{settings.metrics_port}/metrics. Ctrl-C or SIGTERM stops it.",
                flush=True,
            )
            signum = _wait_for_signal()
            print(f"received {signal.Signals(signum).name}: stopping", flush=True)
        except KeyboardInterrupt:
            print("interrupted: stopping", flush=True)
    print("stopped", flush=True)
    return 0


def main() -> None:
    """Console entry point (`heartrate-serve`, used by `make run`)."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(serve_forever(settings))


if __name__ == "__main__":
    main()
