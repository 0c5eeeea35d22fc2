"""Clients built from the replaced service's contract keep working unchanged: the behaviour
table of tests/support/replaced_service.py, texts included, run with v1 stubs against the real
service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from grpc_tools import protoc

from tests.support.replaced_service import CASES

pytestmark = pytest.mark.e2e
TESTS = Path(__file__).resolve().parents[1]
FIXTURE = TESTS / "compat" / "heartrate_service_v1.proto"
SUPPORT = TESTS / "support"


@pytest.fixture(scope="module")
def seen(service: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every case run once, in order, by old_client.py (v1 stubs) against the service."""
    out = tmp_path_factory.mktemp("v1")
    include = str(resources.files("grpc_tools") / "_proto")
    args = [
        f"-I{FIXTURE.parent}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
    ]
    assert protoc.main(["protoc", *args, str(FIXTURE)]) == 0
    run = subprocess.run(
        [sys.executable, str(SUPPORT / "old_client.py"), service.address],
        input=json.dumps(CASES),
        env={**os.environ, "PYTHONPATH": str(out)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=out,
    )
    assert run.returncode == 0, run.stderr
    answers = json.loads(run.stdout)
    assert len(answers) == len(CASES)
    return {case["name"]: answer for case, answer in zip(CASES, answers, strict=True)}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_replaced_service_behaviour(seen: dict[str, dict[str, Any]], case: dict[str, Any]) -> None:
    """One row of the table: the status (and exact details) or the fields an old client sees."""
    got = seen[case["name"]]
    assert got["code"] == case.get("code", "OK"), got
    if "details" in case:
        assert got["details"] == case["details"]
    response = got.get("response", {})
    for field, value in case.get("equal", {}).items():
        assert response.get(field) == value, (field, response)
    if "alert" in case:
        assert response["alert_type"] == case["alert"], response
    if "stream" in case:
        assert len(got["stream"]) == len(case["stream"])
        for want, answer in zip(case["stream"], got["stream"], strict=True):
            assert {k: answer.get(k) for k in want} == want, answer
    if "count" in case:
        assert len(response.get("recent_measurements", [])) == case["count"], response
