"""The HAProxy ingress settings for a local run: loopback listeners, private ports and state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from heartrate_serve.runtime.haproxy_mode import (
    PORT_BLOCK,
    WRAPPER,
    _haproxy_binary,
    free_port_block,
    grpc_bind_edit,
    haproxy_env,
    kill_orphan_haproxy,
)
from heartrate_serve.settings import Settings
from tests.support.certs import make_pki


def test_wrapper_rewrites_binds_to_loopback_in_place_and_passes_arguments(tmp_path: Path) -> None:
    """`bind *:p` and `bind :p` become 127.0.0.1; the config keeps its path; args pass through."""
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("frontend a\n  bind *:123\n  bind :456\n  bind 127.0.0.1:789\n")
    wrapper = tmp_path / "haproxy.sh"
    edit = grpc_bind_edit(Settings(grpc_port=999), tmp_path)
    wrapper.write_text(WRAPPER.format(real="/bin/echo", grpc_edit=edit))
    wrapper.chmod(0o755)
    out = subprocess.run(
        [str(wrapper), "-f", str(cfg), "-sf", "12"], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["-f", str(cfg), "-sf", "12"]
    assert cfg.read_text().splitlines()[1:] == [
        "  bind 127.0.0.1:123",
        "  bind 127.0.0.1:456",
        "  bind 127.0.0.1:789",
    ]


def test_env_moves_every_port_into_a_private_block_away_from_ray(tmp_path: Path) -> None:
    """Stats, metrics, fallback and direct-ingress ports lie in one block in 20000-29999."""
    env = haproxy_env(Settings(grpc_port=25000, metrics_port=25001), tmp_path / "h")
    ports = [int(v) for k, v in env.items() if k.endswith("_PORT")]
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert min(ports) >= 20_000 and max(ports) < 30_000
    assert max(ports) - min(ports) < PORT_BLOCK
    assert not any(min(ports) <= p <= max(ports) for p in (25000, 25001))
    assert all(str(tmp_path) in env[k] for k in env if k.endswith(("_LOC", "_PATH", "_BASE")))


def _rewrite(tmp_path: Path, settings: Settings, config: str) -> str:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(config)
    wrapper = tmp_path / "haproxy.sh"
    edit = grpc_bind_edit(settings, tmp_path)
    wrapper.write_text(WRAPPER.format(real=_haproxy_binary(), grpc_edit=edit))
    wrapper.chmod(0o755)
    subprocess.run([str(wrapper), "-f", str(cfg), "-c", "-q"], check=True, capture_output=True)
    return cfg.read_text()


SERVE_LIKE = """global
    maxconn 100
    tune.bufsize 65536
defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s
frontend grpc_frontend
    bind 127.0.0.1:{port} proto h2
    mode http
    default_backend be
backend be
    server s1 127.0.0.1:1 proto h2
listen stats
  bind *:{stats}
"""


def test_grpc_frontend_moves_to_grpc_host_with_tls_and_mtls(tmp_path: Path) -> None:
    """GRPC_HOST, TLS (ALPN h2) and mTLS land on the gRPC frontend's line only; the result is
    a config the bundled haproxy accepts (-c), and a second pass changes nothing."""
    pki = make_pki(tmp_path)
    port, stats = free_port_block(), 29_990
    config = SERVE_LIKE.format(port=port, stats=stats)
    plain = _rewrite(tmp_path, Settings(grpc_port=port, grpc_host="::1"), config)
    assert f"    bind ipv6@::1:{port} proto h2\n" in plain
    assert f"  bind 127.0.0.1:{stats}\n" in plain
    tls = Settings(
        grpc_port=port,
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca,
    )
    out = _rewrite(tmp_path, tls, config)
    line = next(x for x in out.splitlines() if f":{port} " in x)
    assert line.startswith(f"    bind 127.0.0.1:{port} proto h2 ssl crt ")
    assert 'alpn h2 ca-file "' in line and line.endswith(" verify optional")
    assert "grpc-status 16" in out and "!{ ssl_c_used }" in out
    pem = tmp_path / "grpc-tls.pem"
    assert pem.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" in pem.read_text() and "CERTIFICATE" in pem.read_text()
    again = tmp_path / "haproxy.cfg"
    wrapper = tmp_path / "haproxy.sh"
    subprocess.run([str(wrapper), "-f", str(again), "-c", "-q"], check=True)
    assert again.read_text() == out
    assert out.count("tune.http.maxhdr 1024") == 1
    assert "if { req.hdrs,length gt 7168 }" in out


def test_idle_streams_are_kept_a_day_not_serve_s_hour(tmp_path: Path) -> None:
    """A device stream or a watch that is quiet for over an hour is not cut by HAProxy."""
    env = haproxy_env(Settings(), tmp_path / "h")
    assert env["RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"] == "86400"
    assert env["RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S"] == "86400"


def test_kill_orphan_haproxy_kills_only_this_instances_haproxy(tmp_path: Path) -> None:
    """An haproxy left with this instance's state folder is killed and the folder removed; one
    of another instance is left alone."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    (ours / "haproxy.cfg").write_text("")
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)", "haproxy", "-f"]
    mine = subprocess.Popen([*sleeper, str(ours / "haproxy.cfg")])
    other = subprocess.Popen([*sleeper, str(theirs / "haproxy.cfg")])
    try:
        kill_orphan_haproxy({"RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(ours)})
        assert mine.wait(timeout=10) != 0
        assert other.poll() is None
        assert not ours.exists()
        kill_orphan_haproxy({})  # no HAProxy mode: nothing to do
        assert other.poll() is None
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()
