"""`pip install .` ships the dashboard: its modules and every page, script and style sheet, found
by the installed package (not the checkout)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json
from heartrate_serve.dashboard import app
from heartrate_serve.service import dashboard_reads
from heartrate_serve.store import alert_board
print(json.dumps({
    "modules": [app.__file__, dashboard_reads.__file__, alert_board.__file__],
    "static": sorted(app.load_static()),
}))
"""


def test_the_installed_package_serves_every_static_file(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheel", tmp_path / "site"
    pip = [sys.executable, "-m", "pip"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True)
    (wheel,) = wheels.glob("heartrate_serve-*.whl")
    install = [*pip, "install", "--no-deps", "-q", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, check=True, capture_output=True, text=True, cwd="/"
    )
    found = json.loads(out.stdout)
    assert all(path.startswith(str(target)) for path in found["modules"]), found
    shipped = {p.name for p in (ROOT / "dashboard" / "static").iterdir()}
    assert found["static"] == sorted(shipped)
