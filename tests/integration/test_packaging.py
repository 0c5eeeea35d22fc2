"""`pip install .` (a wheel, not the editable checkout) holds every room, the Lua script and
serve_config.yaml, and the settings find that config inside the installed package."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = (
    "core",
    "service",
    "store",
    "deployments",
    "runtime",
    "cli",
    "proto",
    "loadtest",
    "notify",
    "dashboard",
)
PROBE = """
import json, heartrate_serve
from heartrate_serve.settings import Settings
from heartrate_serve.runtime.serve_config import deployment_user_configs
from heartrate_serve.store import compaction, store, writes
s = Settings.from_env({})
print(json.dumps({
    "package": heartrate_serve.__file__,
    "serve_config": str(s.serve_config),
    "deployments": sorted(deployment_user_configs(s.serve_config)),
    "lua_bytes": min(len(writes.WRITE_SCRIPT), len(store.READ_SCRIPT),
                     len(compaction.COMPACT_SCRIPT), len(compaction.SHRINK_SCRIPT)),
}))
"""


def _wheel(tmp_path: Path) -> Path:
    out = tmp_path / "wheel"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*cmd, "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (wheel,) = out.glob("heartrate_serve-*.whl")
    return wheel


def test_wheel_holds_every_room_and_its_data_files(tmp_path: Path) -> None:
    """The wheel has real files (not symlinks) for each room, store.lua and serve_config.yaml."""
    wheel = zipfile.ZipFile(_wheel(tmp_path))
    names = wheel.namelist()
    for room in ROOMS:
        assert f"heartrate_serve/{room}/__init__.py" in names, room
    assert "heartrate_serve/store/store.lua" in names
    assert "heartrate_serve/settings.py" in names
    config = wheel.read("heartrate_serve/serve_config.yaml")
    assert config == (ROOT / "serve_config.yaml").read_bytes()


def test_installed_package_finds_its_serve_config(tmp_path: Path) -> None:
    """Installed into a plain folder, Settings.serve_config defaults to the packaged copy."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(_wheel(tmp_path))],
        check=True,
        capture_output=True,
    )  # fmt: skip
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, check=True, capture_output=True, text=True, cwd="/"
    )
    found = json.loads(out.stdout)
    assert found["package"].startswith(str(target))
    assert found["serve_config"].startswith(str(target))
    assert found["deployments"] == ["HeartRateIngress", "Validator", "ZoneCalculator"]
    assert found["lua_bytes"] > 100
