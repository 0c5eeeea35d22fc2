"""A Node.js client (@grpc/grpc-js, the .proto loaded at run time by @grpc/proto-loader) works
against the real service over TLS with a bearer token, and gets UNAUTHENTICATED without one.

tests/node/client.js makes the calls and prints their results as JSON; this test runs it with
node and asserts on what the server answered. Its packages are installed by `make test` (`npm ci
--prefix tests/node`, from tests/node/package-lock.json). A service of its own: TLS +
AUTH_MODE=jwt with the launcher's development key and an issuer check, as in test_security.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from heartrate_serve.loadtest.service import ServiceProcess
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.dev_keys import dev_key_paths, issue_token
from tests.support.certs import Pki, make_pki
from tests.support.service import running_service

pytestmark = [pytest.mark.e2e]
ISSUER = "hr-node-test"
NODE_DIR = Path(__file__).resolve().parents[1] / "node"
CLIENT_JS = NODE_DIR / "client.js"
NODE_TIMEOUT_S = 120
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED.value[0]  # 16


@dataclass
class Secured:
    svc: ServiceProcess
    pki: Pki
    target: str


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the client's packages installed."""
    binary = shutil.which("node")
    if binary is None:
        pytest.fail("node is not on PATH (the Node.js client test needs Node.js 18+)")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(f"the Node.js packages are not installed: run `npm ci --prefix {NODE_DIR}`")
    return binary


@pytest.fixture(scope="module")
def tls_jwt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    work = tmp_path_factory.mktemp("node-tls-jwt")
    pki = make_pki(work / "pki")
    with running_service(
        work,
        TLS_CERT_FILE=str(pki.server_cert),
        TLS_KEY_FILE=str(pki.server_key),
        AUTH_MODE="jwt",
        AUTH_JWT_ISSUER=ISSUER,
    ) as svc:
        yield Secured(svc, pki, f"localhost:{svc.grpc_port}")


def user() -> str:
    return f"n-{uuid.uuid4().hex[:10]}"


def dev_token(s: Secured, sub: str, scopes: list[str]) -> str:
    private, _ = dev_key_paths(s.svc.workdir / "data")
    return issue_token(private, user=sub, scopes=scopes, issuer=ISSUER)


def run_client(
    node: str, s: Secured, u: str, token: str | None, submit: int, stream: list[int]
) -> dict[str, Any]:
    """Runs client.js; its JSON results. The token goes in the environment (not on the command
    line); nothing else of this process's environment is passed (no stray HEARTRATE_TOKEN)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if token is not None:
        env["HEARTRATE_TOKEN"] = token
    args = [node, str(CLIENT_JS), "--target", s.target, "--ca", str(s.pki.ca), "--user", u]
    args += ["--submit-bpm", str(submit), "--stream-bpm", ",".join(map(str, stream))]
    out = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT_S, cwd=NODE_DIR
    )
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_node_client_over_tls_with_a_token(node: str, tls_jwt: Secured) -> None:
    """Submit, a stream of three readings (every answer success) and the status, all as the
    token's user: the status shows exactly those four readings at the stored timestamps."""
    u = user()
    token = dev_token(tls_jwt, u, ["heartrate:read", "heartrate:write"])
    got = run_client(node, tls_jwt, u, token, 71, [72, 73, 74])

    submit = got["submit"]
    assert submit["ok"], submit
    assert submit["response"]["success"] is True, submit
    assert submit["response"]["reject_reason"] == "REJECT_REASON_UNSPECIFIED"
    assert submit["response"]["duplicate"] is False
    t0 = int(submit["response"]["timestamp_ms"])
    assert t0 > 0

    stream = got["stream"]
    assert stream["ok"], stream
    answers = stream["responses"]
    assert [a["success"] for a in answers] == [True, True, True], answers
    assert [int(a["timestamp_ms"]) for a in answers] == [t0 + 1, t0 + 2, t0 + 3]
    assert not any(a["duplicate"] for a in answers)

    status = got["status"]
    assert status["ok"], status
    stored = [(m["bpm"], int(m["timestamp_ms"])) for m in status["response"]["recent_measurements"]]
    assert stored == [(74, t0 + 3), (73, t0 + 2), (72, t0 + 1), (71, t0)]  # newest first
    stats = status["response"]["stats"]
    assert (stats["count"], stats["min_bpm"], stats["max_bpm"]) == (4, 71, 74)
    assert stats["average_bpm"] == pytest.approx(72.5)


def test_node_client_without_a_token_is_unauthenticated(node: str, tls_jwt: Secured) -> None:
    """No token: every call (the stream too) fails with UNAUTHENTICATED (16), nothing stored."""
    u = user()
    got = run_client(node, tls_jwt, u, None, 80, [81, 82])
    for rpc in ("submit", "stream", "status"):
        assert got[rpc]["ok"] is False, (rpc, got[rpc])
        assert got[rpc]["code"] == UNAUTHENTICATED, (rpc, got[rpc])
    assert got["stream"]["responses"] == []

    admin = [("authorization", f"Bearer {dev_token(tls_jwt, 'root', ['heartrate:admin'])}")]
    creds = grpc.ssl_channel_credentials(root_certificates=tls_jwt.pki.ca.read_bytes())
    with grpc.secure_channel(tls_jwt.target, creds) as ch:
        stub = pb_grpc.HeartRateMonitorStub(ch)
        status = stub.GetHeartRateStatus(pb.StatusRequest(user_id=u), metadata=admin, timeout=10)
    assert list(status.recent_measurements) == []
