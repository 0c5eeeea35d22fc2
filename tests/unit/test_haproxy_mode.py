"""The HAProxy ingress settings for a local run: loopback listeners, private ports and state."""

from __future__ import annotations

import subprocess
from pathlib import Path

from heartrate_serve.runtime.haproxy_mode import PORT_BLOCK, WRAPPER, haproxy_env
from heartrate_serve.settings import Settings


def test_wrapper_rewrites_binds_to_loopback_in_place_and_passes_arguments(tmp_path: Path) -> None:
    """`bind *:p` and `bind :p` become 127.0.0.1; the config keeps its path; args pass through."""
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("frontend a\n  bind *:123\n  bind :456\n  bind 127.0.0.1:789\n")
    wrapper = tmp_path / "haproxy.sh"
    wrapper.write_text(WRAPPER.format(real="/bin/echo"))
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
