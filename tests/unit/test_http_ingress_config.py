"""Serve's HTTP ingress (the dashboard) under `make run`: HAProxy's HTTP frontend moves to
HTTP_HOST:HTTP_PORT and nothing else moves with it; the private port block keeps clear of
HTTP_PORT."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from heartrate_serve.runtime.haproxy_mode import (
    WRAPPER,
    _haproxy_binary,
    grpc_bind_edit,
    haproxy_env,
    http_bind_edit,
)
from heartrate_serve.settings import Settings

GRPC, HTTP, STATS = 29_001, 29_002, 29_003
SERVE_LIKE = f"""global
    maxconn 100
    tune.bufsize 65536
defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s
frontend http_frontend
    bind 127.0.0.1:{HTTP}
    default_backend be
frontend grpc_frontend
    bind 127.0.0.1:{GRPC} proto h2
    default_backend be2
backend be
    server s1 127.0.0.1:1
backend be2
    server s1 127.0.0.1:2 proto h2
listen stats
  bind *:{STATS}
"""


def _rewrite(tmp_path: Path, settings: Settings) -> list[str]:
    """The bind lines after the wrapper rewrote the config (checked by haproxy -c)."""
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(SERVE_LIKE)
    wrapper = tmp_path / "haproxy.sh"
    edit = f"{grpc_bind_edit(settings, tmp_path)} {http_bind_edit(settings)}"
    wrapper.write_text(WRAPPER.format(real=_haproxy_binary(), grpc_edit=edit))
    wrapper.chmod(0o755)
    for _ in range(2):  # a second pass (a reload of the same file) changes nothing more
        subprocess.run([str(wrapper), "-f", str(cfg), "-c", "-q"], check=True)
    return [line.strip() for line in cfg.read_text().splitlines() if "bind " in line]


@pytest.mark.parametrize(
    ("host", "bind"),
    [
        ("127.0.0.1", f"bind 127.0.0.1:{HTTP}"),
        ("0.0.0.0", f"bind 0.0.0.0:{HTTP}"),
        ("::1", f"bind ipv6@::1:{HTTP}"),
    ],
)
def test_the_http_frontend_moves_to_http_host_alone(tmp_path: Path, host: str, bind: str) -> None:
    settings = Settings(grpc_port=GRPC, http_port=HTTP, http_host=host)
    assert _rewrite(tmp_path, settings) == [
        bind,
        f"bind 127.0.0.1:{GRPC} proto h2",
        f"bind 127.0.0.1:{STATS}",
    ]


def test_the_port_block_keeps_clear_of_http_port(tmp_path: Path) -> None:
    settings = Settings(grpc_port=25_000, metrics_port=25_001, http_port=25_002)
    env = haproxy_env(settings, tmp_path / "h")
    ports = [int(v) for k, v in env.items() if k.endswith("_PORT")]
    assert not any(min(ports) <= p <= max(ports) for p in (25_000, 25_001, 25_002))
