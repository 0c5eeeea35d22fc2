"""The one settings object, built from the environment. Nothing else reads os.environ.

Every variable, its default and meaning is listed in README.md ("Configuration").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

FSYNC_POLICIES = ("everysec", "always", "no")
INGRESS_MODES = ("haproxy", "proxy")


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Process-wide configuration; build it with `Settings.from_env()`."""

    grpc_port: int = 50051
    metrics_port: int = 8080
    # None: the launcher starts an embedded redis-server and passes its URL on.
    redis_url: str | None = None
    data_dir: Path = Path("./data")
    log_dir: Path = Path("./log")
    # appendfsync of the embedded Redis: everysec loses at most ~1 s of acknowledged writes on a
    # power loss or kernel crash (none on a process crash); always loses none but costs a disk
    # flush per write.
    redis_fsync: str = "everysec"
    redis_pool_size: int = 64
    # Socket timeout for every Redis call, seconds.
    redis_timeout_s: float = 2.0
    retention_days: int = 30
    # haproxy: Serve's HAProxy ingress (fast, default); proxy: Serve's Python gRPC proxy.
    ingress_mode: str = "haproxy"
    log_level: str = "WARNING"
    # LOG_DIR/server.log is rotated at this size (and weekly); this many rotated files are kept.
    log_max_bytes: int = 50 * 1024 * 1024
    log_backups: int = 5
    # Where this run keeps Ray's session files and HAProxy's state (short: unix socket paths are
    # limited to 107 bytes). None: the launcher makes a new /tmp/hrs-* folder per run.
    instance_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Builds settings from `env` (default: os.environ), validating every value; non-None
        keyword overrides (e.g. an app argument) win over the environment."""
        src = os.environ if env is None else env
        s = cls(
            grpc_port=_port(src, "GRPC_PORT", cls.grpc_port),
            metrics_port=_port(src, "METRICS_PORT", cls.metrics_port),
            redis_url=src.get("REDIS_URL") or None,
            data_dir=Path(src.get("DATA_DIR") or cls.data_dir),
            # absolute: the launcher hands it to processes that may run in another directory
            log_dir=Path(src.get("LOG_DIR") or cls.log_dir).absolute(),
            redis_fsync=_choice(src, "REDIS_FSYNC", cls.redis_fsync, FSYNC_POLICIES),
            redis_pool_size=_int(src, "REDIS_POOL_SIZE", cls.redis_pool_size, 1, 10_000),
            redis_timeout_s=_float(src, "REDIS_TIMEOUT_S", cls.redis_timeout_s),
            retention_days=_int(src, "RETENTION_DAYS", cls.retention_days, 1, 36_500),
            ingress_mode=_choice(src, "INGRESS_MODE", cls.ingress_mode, INGRESS_MODES),
            log_level=(src.get("LOG_LEVEL") or cls.log_level).upper(),
            log_max_bytes=_int(src, "LOG_MAX_BYTES", cls.log_max_bytes, 1024, 2**40),
            log_backups=_int(src, "LOG_BACKUPS", cls.log_backups, 0, 1000),
            instance_dir=Path(src["INSTANCE_DIR"]) if src.get("INSTANCE_DIR") else None,
        )
        return replace(s, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, to hand to child processes and replicas."""
        names = {
            "grpc_port": "GRPC_PORT",
            "metrics_port": "METRICS_PORT",
            "redis_url": "REDIS_URL",
            "data_dir": "DATA_DIR",
            "log_dir": "LOG_DIR",
            "redis_fsync": "REDIS_FSYNC",
            "redis_pool_size": "REDIS_POOL_SIZE",
            "redis_timeout_s": "REDIS_TIMEOUT_S",
            "retention_days": "RETENTION_DAYS",
            "ingress_mode": "INGRESS_MODE",
            "log_level": "LOG_LEVEL",
            "log_max_bytes": "LOG_MAX_BYTES",
            "log_backups": "LOG_BACKUPS",
            "instance_dir": "INSTANCE_DIR",
        }
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[names[f.name]] = str(value)
        return out


def _int(src: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = src.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _port(src: Mapping[str, str], name: str, default: int) -> int:
    return _int(src, name, default, 1, 65535)


def _float(src: Mapping[str, str], name: str, default: float) -> float:
    raw = src.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be > 0, got {value}")
    return value


def _choice(src: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (src.get(name) or default).lower()
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value
