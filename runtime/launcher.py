"""`make run`: embedded Redis (unless REDIS_URL; restarted after a crash, redis_supervisor.py),
then the Ray driver (local Ray + Serve from serve_config.yaml) as a supervised child, in the
foreground.

SIGTERM or Ctrl-C stops the driver (Serve, then Ray), sweeps any process of this instance that
survived (an agent, an haproxy), then stops Redis: nothing is left behind. Ray's processes run in
the driver's own session, so a terminal's Ctrl-C reaches only this supervisor, which stops them in
order instead of every process receiving SIGINT at once.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from heartrate_serve.core.errors import SettingsError, StopRequested
from heartrate_serve.runtime.dev_keys import ensure_dev_keypair
from heartrate_serve.runtime.driver import READY_LINE
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.runtime.logging_setup import ServerLogRotator, configure_process_logging
from heartrate_serve.runtime.process_sweep import sweep
from heartrate_serve.runtime.redis_supervisor import RedisSupervisor
from heartrate_serve.service.auth import authenticator_from_settings
from heartrate_serve.settings import Settings, is_loopback

log = logging.getLogger("heartrate_serve.launcher")
DRIVER_STOP_TIMEOUT_S = 60.0


def _raise_stop(_signum: int, _frame: Any) -> None:
    raise StopRequested


def _start_redis(settings: Settings, stack: ExitStack) -> Settings:
    """Starts the embedded Redis when no REDIS_URL is given; returns settings pointing at it."""
    if settings.redis_url:
        print(f"using Redis at {_redacted(settings.redis_url)}", flush=True)
        return settings
    redis = EmbeddedRedis(settings.data_dir, fsync=settings.redis_fsync)
    stack.callback(redis.stop)
    url = redis.start()
    supervisor = RedisSupervisor(redis)
    supervisor.start()
    stack.callback(supervisor.stop)  # before redis.stop (LIFO): a stop is not a crash
    print(
        f"embedded Redis: {url} (data in {settings.data_dir.resolve()}; restarted if it dies)",
        flush=True,
    )
    return Settings.from_env(redis_url=url)


def prepare_security(settings: Settings) -> Settings:
    """Checks TLS and auth before anything starts (a clear error instead of a replica that
    fails later), prints one line on what is on; with AUTH_MODE=jwt and no key, creates the
    development key pair in DATA_DIR/auth and returns settings that use it."""
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
            if settings.tls_client_ca_file is not None:
                context.load_verify_locations(settings.tls_client_ca_file)
        except (OSError, ssl.SSLError) as error:
            raise SettingsError(
                f"TLS_CERT_FILE / TLS_KEY_FILE / TLS_CLIENT_CA_FILE: {error}"
            ) from None
        mtls = " with client certificates (mTLS)" if settings.tls_client_ca_file else ""
        print(f"TLS on the gRPC port{mtls}", flush=True)
    elif not is_loopback(settings.grpc_host):
        print(
            f"warning: GRPC_HOST={settings.grpc_host} without TLS: readings and tokens cross the "
            "network in clear text (set TLS_CERT_FILE and TLS_KEY_FILE)",
            file=sys.stderr,
            flush=True,
        )
    if settings.effective_auth_mode == "none":
        print(
            "warning: AUTH_MODE=none: any local process can read and write every user's "
            "readings (set AUTH_MODE=jwt to require tokens)",
            file=sys.stderr,
            flush=True,
        )
        return settings
    if settings.auth_jwt_public_key_file is None and settings.auth_jwt_secret_file is None:
        private, public, created = ensure_dev_keypair(settings.data_dir)
        settings = settings.model_copy(update={"auth_jwt_public_key_file": public.absolute()})
        print(
            f"AUTH_MODE=jwt with the development key pair in {private.parent} "
            f"({'created' if created else 'existing'}); issue a token with: .venv/bin/heartrate "
            'token issue --user <user_id> --scope "heartrate:read heartrate:write"',
            flush=True,
        )
    try:
        authenticator_from_settings(settings)
    except ValueError as error:
        raise SettingsError(str(error)) from None
    return settings


def _url_host(host: str) -> str:
    """A host as it goes into a URL (IPv6 in brackets)."""
    bare = host.strip("[]")
    return f"[{bare}]" if ":" in bare else bare


def _redacted(url: str) -> str:
    """A Redis URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


class Driver:
    """The Ray driver child process and the instance folder that identifies its processes."""

    def __init__(self, settings: Settings) -> None:
        # Ours to delete at the end only when we made it (INSTANCE_DIR unset).
        self._made_dir = settings.instance_dir is None
        self.instance_dir = settings.instance_dir or Path(tempfile.mkdtemp(prefix="hrs-"))
        env = {**os.environ, **settings.as_env(), "INSTANCE_DIR": str(self.instance_dir)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "heartrate_serve.runtime.driver"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.ready = threading.Event()
        threading.Thread(target=self._relay_output, daemon=True).start()

    def _relay_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(READY_LINE):
                self.ready.set()
            else:
                sys.stdout.write(line)
                sys.stdout.flush()

    def wait_ready(self) -> None:
        """Blocks until the driver reports SERVING; raises if it exits first."""
        while not self.ready.wait(0.25):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Ray driver exited with {self.process.returncode} during start"
                )

    def stop(self) -> None:
        """SIGTERM to the driver, then a sweep of anything of this instance still running."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=DRIVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        left = sweep([self.instance_dir])
        if left:
            log.warning("stopped %d leftover process(es) of this instance", len(left))
        if self._made_dir:
            shutil.rmtree(self.instance_dir, ignore_errors=True)


def serve_forever(settings: Settings) -> int:
    """Runs the service until a stop signal; returns the process exit code."""
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    code = 0
    with ExitStack() as stack:
        try:
            started = time.monotonic()
            settings = _start_redis(settings, stack)
            settings = prepare_security(settings)
            stack.enter_context(ServerLogRotator.from_settings(settings))  # the only rotator
            driver = Driver(settings)
            stack.callback(driver.stop)
            driver.wait_ready()
            print(
                f"heartrate-serve SERVING on {settings.grpc_host}:{settings.grpc_port} (gRPC"
                f"{' over TLS' if settings.tls else ''}) after "
                f"{time.monotonic() - started:.1f} s; metrics on :{settings.metrics_port}/metrics; "
                f"dashboard on http://{_url_host(settings.http_host)}:{settings.http_port}/. "
                f"status: .venv/bin/heartrate-status {driver.instance_dir}; "
                "Ctrl-C or SIGTERM stops it.",
                flush=True,
            )
            while driver.process.poll() is None:
                time.sleep(0.5)
            print(f"the Ray driver exited with {driver.process.returncode}", flush=True)
            code = 1
        except StopRequested:
            print("stopping", flush=True)
        except Exception as error:  # report start-up failures plainly, after cleaning up
            print(f"error: {error}", file=sys.stderr, flush=True)
            code = 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("stopped", flush=True)
    return code


def main() -> None:
    """Console entry point (`heartrate-serve`, used by `make run`)."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    configure_process_logging(settings, "launcher")
    sys.exit(serve_forever(settings))


if __name__ == "__main__":
    main()
