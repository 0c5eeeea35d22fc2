"""The one settings object, built from the environment. Nothing else reads os.environ.

Every variable, its default and meaning is listed in README.md ("Configuration"). Settings is a
frozen pydantic model: fields are typed and range-checked, unknown fields refused; a bad
environment value raises SettingsError naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from heartrate_serve.core.errors import SettingsError


def packaged_serve_config() -> Path:
    """serve_config.yaml as installed with the package (in a checkout: the repository's file)."""
    return Path(str(resources.files("heartrate_serve") / "serve_config.yaml"))


Port = Annotated[int, Field(ge=1, le=65535)]

# Field name -> environment variable.
ENV_NAMES = {
    "grpc_port": "GRPC_PORT",
    "grpc_host": "GRPC_HOST",
    "metrics_port": "METRICS_PORT",
    "metrics_host": "METRICS_HOST",
    "http_port": "HTTP_PORT",
    "http_host": "HTTP_HOST",
    "webhook_url": "WEBHOOK_URL",
    "webhook_secret_file": "WEBHOOK_SECRET_FILE",
    "tls_cert_file": "TLS_CERT_FILE",
    "tls_key_file": "TLS_KEY_FILE",
    "tls_client_ca_file": "TLS_CLIENT_CA_FILE",
    "auth_mode": "AUTH_MODE",
    "auth_jwt_public_key_file": "AUTH_JWT_PUBLIC_KEY_FILE",
    "auth_jwt_secret_file": "AUTH_JWT_SECRET_FILE",
    "auth_jwt_issuer": "AUTH_JWT_ISSUER",
    "auth_jwt_audience": "AUTH_JWT_AUDIENCE",
    "client_token": "HEARTRATE_TOKEN",
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


# Client settings (the CLI's), never handed to the service's processes.
_CLIENT_ONLY = frozenset({"client_token"})


def _normalised(name: str, raw: str) -> str:
    """Case-insensitive choices: level names upper case, the other choices lower case."""
    if name == "log_level":
        return raw.upper()
    return raw.lower() if name in ("redis_fsync", "ingress_mode", "auth_mode") else raw


def is_loopback(host: str) -> bool:
    """True for a loopback address or the name localhost (where nothing else can connect)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseModel):
    """Process-wide configuration; build it with `Settings.from_env()`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grpc_port: Port = 50051
    # Where the gRPC port listens: loopback unless asked (0.0.0.0 or :: for every interface).
    grpc_host: str = Field(default="127.0.0.1", min_length=1)
    metrics_port: Port = 8080
    # Where the Prometheus metrics endpoint listens.
    metrics_host: str = Field(default="127.0.0.1", min_length=1)
    # The live dashboard (HTTP, from the same Serve application): loopback unless asked.
    http_port: Port = 8000
    http_host: str = Field(default="127.0.0.1", min_length=1)
    # Alert webhooks: every raised/cleared event of every user is POSTed here as JSON (besides
    # the URL in a user's profile), signed with HMAC-SHA256 of the body under the secret in
    # WEBHOOK_SECRET_FILE (header X-Heartrate-Signature: sha256=<hex>). None: no global webhook.
    webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    webhook_secret_file: Path | None = None
    # PEM certificate chain and key: the gRPC port then speaks TLS only (HTTP/2 over ALPN h2).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # PEM CA bundle: clients must present a certificate signed by it (mutual TLS).
    tls_client_ca_file: Path | None = None
    # none | jwt. Unset: jwt when grpc_host is not a loopback address, none on loopback.
    auth_mode: Literal["none", "jwt"] | None = None
    # JWT verification key: PEM public key (RS256/ES256) or a JWKS file (keys chosen by kid)...
    auth_jwt_public_key_file: Path | None = None
    # ... or a shared secret (HS256, small setups). Not both.
    auth_jwt_secret_file: Path | None = None
    # Checked against the token's iss / aud when set.
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: str | None = None
    # For the `heartrate` CLI (a client): the bearer token it sends. Never passed to the service.
    client_token: str | None = Field(default=None, repr=False)
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
    # 5 s, not 2: on 2 shared cores a burst of 100 000-reading rounds kept Redis busy past 2 s
    # (clean-clone CI, tests/e2e/test_transport_limits.py), and that answered UNAVAILABLE.
    redis_timeout_s: float = Field(default=5.0, gt=0)
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

    @field_validator(
        "tls_cert_file",
        "tls_key_file",
        "tls_client_ca_file",
        "auth_jwt_public_key_file",
        "auth_jwt_secret_file",
        "webhook_secret_file",
    )
    @classmethod
    def _absolute_file(cls, value: Path | None) -> Path | None:
        return None if value is None else value.absolute()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE: set both or neither")
        if self.tls_cert_file is not None and self.ingress_mode == "proxy":
            raise ValueError(
                "TLS_CERT_FILE needs INGRESS_MODE=haproxy (HAProxy terminates TLS; Serve's "
                "Python gRPC proxy cannot)"
            )
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE")
        if self.auth_jwt_public_key_file is not None and self.auth_jwt_secret_file is not None:
            raise ValueError("AUTH_JWT_PUBLIC_KEY_FILE and AUTH_JWT_SECRET_FILE: set one, not both")
        return self

    @property
    def tls(self) -> bool:
        """True when the gRPC port speaks TLS."""
        return self.tls_cert_file is not None

    @property
    def effective_auth_mode(self) -> Literal["none", "jwt"]:
        """AUTH_MODE, or its default: jwt unless the gRPC port is on a loopback address."""
        if self.auth_mode is not None:
            return self.auth_mode
        return "none" if is_loopback(self.grpc_host) else "jwt"

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
            if not first["loc"]:  # a rule across fields: its message names the variables
                raise SettingsError(str(first["msg"]).removeprefix("Value error, ")) from None
            field = str(first["loc"][0])
            var = ENV_NAMES.get(field, field)
            raise SettingsError(f"{var}: {first['msg']}, got {first.get('input')!r}") from None

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, to hand to child processes and replicas."""
        return {
            var: str(getattr(self, name))
            for name, var in ENV_NAMES.items()
            if getattr(self, name) is not None and name not in _CLIENT_ONLY
        }
