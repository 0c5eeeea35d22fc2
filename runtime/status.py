"""Operator view of a running instance: applications, deployments, replicas and their health.

`serve status` asks Ray's dashboard, which `make run` does not start. This connects to the
instance's Ray cluster directly (its GCS port is in INSTANCE_DIR/ray/session_latest, on loopback)
and prints `serve.status()`.

Usage: python -m heartrate_serve.runtime.status [INSTANCE_DIR] [--json]
INSTANCE_DIR is the folder the launcher prints when SERVING (default: the INSTANCE_DIR setting,
else the newest /tmp/hrs-* whose Ray is up). Exit code 0 when every application is RUNNING and
every deployment HEALTHY, 1 otherwise, 2 when no running instance was found.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from heartrate_serve.settings import Settings


def gcs_address(instance_dir: Path) -> str:
    """host:port of the instance's Ray GCS, from its session folder."""
    files = sorted((instance_dir / "ray" / "session_latest").glob("gcs_server_port_*"))
    if not files:
        raise LookupError(f"no Ray session under {instance_dir}")
    return f"127.0.0.1:{int(files[0].read_text().strip())}"


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def find_instance(settings: Settings, tmp: Path | None = None) -> Path:
    """The INSTANCE_DIR setting, else the newest /tmp/hrs-* whose Ray GCS answers."""
    if settings.instance_dir is not None:
        return settings.instance_dir
    sessions = Path(tmp or tempfile.gettempdir()).glob("hrs-*/ray/session_latest")
    for session in sorted(sessions, key=lambda p: p.lstat().st_mtime, reverse=True):
        instance = session.parent.parent
        try:
            if _listening(gcs_address(instance)):
                return instance
        except (LookupError, ValueError, OSError):
            continue
    raise LookupError("no running heartrate-serve instance found; pass its INSTANCE_DIR")


def _text(status: Any) -> str:
    """A Serve status enum as its bare value ("RUNNING", not "ApplicationStatus.RUNNING")."""
    return str(getattr(status, "value", status))


def status_lines(status: Any) -> tuple[list[str], bool]:
    """Human lines for a ServeStatus, and whether everything is RUNNING/HEALTHY."""
    lines, ok = [], True
    for app_name, app in status.applications.items():
        ok &= _text(app.status) == "RUNNING"
        lines.append(f"application {app_name}: {_text(app.status)} {app.message}".rstrip())
        for name, dep in app.deployments.items():
            ok &= _text(dep.status) == "HEALTHY"
            replicas = " ".join(f"{k}={v}" for k, v in sorted(dep.replica_states.items()))
            lines.append(f"  {name:<18} {_text(dep.status):<10} replicas {replicas or '-'}")
            if dep.message:
                lines.append(f"    {dep.message}")
    proxies = sorted(_text(s) for s in status.proxies.values())
    lines.append(f"proxies: {', '.join(proxies) or 'none'}")
    return lines, ok and bool(status.applications)


def fetch_status(address: str) -> Any:
    """serve.status() of the Ray cluster at address (connects as a short-lived driver)."""
    from heartrate_serve.runtime.ray_runtime import use_loopback_ray

    use_loopback_ray()  # else Ray turns 127.0.0.1:<gcs port> into the LAN address
    import ray
    from ray import serve

    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        return serve.status()
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Prints the instance's Serve status; see the module docstring for exit codes."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("instance_dir", nargs="?", type=Path)
    parser.add_argument("--json", action="store_true", help="serve.status() as JSON")
    args = parser.parse_args(argv)
    try:
        instance = args.instance_dir or find_instance(Settings.from_env())
        address = gcs_address(instance)
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    status = fetch_status(address)
    lines, ok = status_lines(status)
    if args.json:
        print(json.dumps(asdict(status), default=str, indent=2))
    else:
        print(f"instance {instance} (Ray at {address})", *lines, sep="\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
