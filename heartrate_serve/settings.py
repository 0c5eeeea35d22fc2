"""The one settings object, built from the environment. Nothing else reads os.environ.

Every variable, its default and meaning is listed in README.md ("Configuration"). Settings is a
frozen pydantic model: fields are typed and range-checked, unknown fields refused; a bad
environment value raises SettingsError naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def packaged_serve_config() -> Path:
    """serve_config.yaml as installed with the package (in a checkout: the repository's file)."""
    return Path(str(resources.files("heartrate_serve") / "serve_config.yaml"))


Port = Annotated[int, Field(ge=1, le=65535)]

# Field name -> environment variable.
ENV_NAMES = {
    "grpc_port": "GRPC_PORT",
    "metrics_port": "METRICS_PORT",
    "redis_url": "REDIS_URL",
    "data_dir": "DATA_DIR",
    "log_dir": "LOG_DIR",
    "redis_fsync": "REDIS_FSYNC",
    "redis_pool_size": "REDIS_POOL_SIZE",
    "redis_timeout_s": "REDIS_TIMEOUT_S",
    "retention_days": "RETENTION_DAYS",
    "compact_interval_s": "COMPACT_INTERVAL_S",
    "compact_grace_s": "COMPACT_GRACE_S",
    "ingress_mode": "INGRESS_MODE",
    "log_level": "LOG_LEVEL",
    "log_max_bytes": "LOG_MAX_BYTES",
    "log_backups": "LOG_BACKUPS",
    "instance_dir": "INSTANCE_DIR",
    "serve_config": "SERVE_CONFIG",
}


def _normalised(name: str, raw: str) -> str:
    """Case-insensitive choices: level names upper case, the other choices lower case."""
    if name == "log_level":
        return raw.upper()
    return raw.lower() if name in ("redis_fsync", "ingress_mode") else raw


class Settings(BaseModel):
    """Process-wide configuration; build it with `Settings.from_env()`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grpc_port: Port = 50051
    metrics_port: Port = 8080
    # None: the launcher starts an embedded redis-server and passes its URL on.
    redis_url: str | None = None
    data_dir: Path = Path("./data")
    # Absolute: the launcher hands it to processes that may run in another directory.
    log_dir: Path = Path("./log").absolute()
    # appendfsync of the embedded Redis: everysec loses at most ~1 s of acknowledged writes on a
    # power loss or kernel crash (none on a process crash); always loses none but costs a disk
    # flush per write.
    redis_fsync: Literal["everysec", "always", "no"] = "everysec"
    redis_pool_size: int = Field(default=64, ge=1, le=10_000)
    # Socket timeout for every Redis call, seconds.
    redis_timeout_s: float = Field(default=2.0, gt=0)
    retention_days: int = Field(default=30, ge=1, le=36_500)
    # Seconds between compaction sweeps (store/compaction.py): readings of closed chunks move
    # from the hot sorted set into compressed blobs. 0 turns compaction off (the hot part then
    # grows with the retention, ~110 B per reading).
    compact_interval_s: float = Field(default=30.0, ge=0)
    # A chunk is compacted once it ended this many seconds ago, so that readings still arriving
    # late for it (network delay, device buffers) usually land before it is compacted.
    compact_grace_s: float = Field(default=120.0, ge=0)
    # haproxy: Serve's HAProxy ingress (fast, default); proxy: Serve's Python gRPC proxy.
    ingress_mode: Literal["haproxy", "proxy"] = "haproxy"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING"
    # LOG_DIR/server.log is rotated at this size (and weekly); this many rotated files are kept.
    log_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, le=2**40)
    log_backups: int = Field(default=5, ge=0, le=1000)
    # Where this run keeps Ray's session files and HAProxy's state (short: unix socket paths are
    # limited to 107 bytes). None: the launcher makes a new /tmp/hrs-* folder per run.
    instance_dir: Path | None = None
    # The Serve config `make run` deploys and the baseline reads its tunables from. Default: the
    # file installed with the package (the repository's serve_config.yaml in a checkout).
    serve_config: Path = Field(default_factory=packaged_serve_config)

    @field_validator("log_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.absolute()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Builds settings from `env` (default: os.environ), validating every value; non-None
        keyword overrides (e.g. an app argument) win over the environment."""
        src = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, var in ENV_NAMES.items():
            raw = src.get(var)
            if raw:
                values[name] = _normalised(name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            first = error.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            var = ENV_NAMES.get(field, field)
            raise SettingsError(f"{var}: {first['msg']}, got {first.get('input')!r}") from None

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, to hand to child processes and replicas."""
        return {
            var: str(getattr(self, name))
            for name, var in ENV_NAMES.items()
            if getattr(self, name) is not None
        }
