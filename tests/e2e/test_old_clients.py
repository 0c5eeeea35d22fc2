"""Clients built from the replaced service's contract keep working unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from grpc_tools import protoc

pytestmark = pytest.mark.e2e
HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "compat" / "heartrate_service_v1.proto"


def test_old_contract_client_gets_the_original_behaviour(service: object, tmp_path: Path) -> None:
    """Submit/stream/status/zones from v1 stubs behave as the original service documented."""
    include = str(resources.files("grpc_tools") / "_proto")
    args = [
        f"-I{FIXTURE.parent}",
        f"-I{include}",
        f"--python_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
    ]
    assert protoc.main(["protoc", *args, str(FIXTURE)]) == 0
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    address = service.address  # type: ignore[attr-defined]
    run = subprocess.run(
        [sys.executable, str(HERE / "old_client.py"), address],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    ok, bad, high = seen["submit"]
    assert ok[0] is True and ok[1] == "" and ok[2] is False
    assert bad[0] is False and bad[1] != ""
    assert high[:1] == [True] and high[2] is True and high[3] == 2
    assert seen["stream"] == [[True, False, 0], [False, True, 0], [True, False, 1]]
    assert seen["status"]["n"] == 3 and seen["status"]["alert_active"] is True
    # no session end: the last reading counts 0 s; 10 s in each of [50,60) [60,70) [70,90) %HRmax
    assert seen["zones"][:4] == [10, 10, 20, 50]
    assert seen["zones_age0"] == "INVALID_ARGUMENT"
