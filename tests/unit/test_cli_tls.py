"""The `heartrate` client over TLS against a real grpc.aio server: the bearer token reaches the
server on every kind of call (unary health check, bidi stream, the asyncio simulator), mutual TLS
presents the client certificate, and TLS failures are reported without the token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.cli import main as cli
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from tests.support.certs import Pki, make_pki


class Recorder(health_pb2_grpc.HealthServicer, pb_grpc.HeartRateMonitorServicer):
    """Health and StreamHeartRate that remember each call's metadata and client certificate."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], list[bytes]]] = []

    def _record(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        metadata = dict(context.invocation_metadata() or ())
        client_names = list(context.auth_context().get("x509_common_name", []))
        self.calls.append((method, metadata, client_names))

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        self._record("Check", context)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def StreamHeartRate(
        self,
        request_iterator: AsyncIterator[pb.HeartRateRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.HeartRateResponse]:
        self._record("StreamHeartRate", context)
        async for req in request_iterator:
            yield pb.HeartRateResponse(success=True, timestamp_ms=req.timestamp_ms or 1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The PKI the test server uses."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """An unrelated CA and its certificates (not trusted by the server nor the client)."""
    return make_pki(tmp_path_factory.mktemp("other-pki"), ca_name="another CA")


@pytest.fixture(autouse=True)
def _no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEARTRATE_TOKEN", raising=False)


@contextlib.asynccontextmanager
async def tls_server(pki: Pki, *, mutual: bool = False) -> AsyncIterator[tuple[str, Recorder]]:
    """A grpc.aio server on 127.0.0.1 speaking TLS only (mutual: client certificates required)."""
    server = grpc.aio.server()
    recorder = Recorder()
    health_pb2_grpc.add_HealthServicer_to_server(recorder, server)
    pb_grpc.add_HeartRateMonitorServicer_to_server(recorder, server)  # type: ignore[no-untyped-call]
    creds = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca.read_bytes() if mutual else None,
        require_client_auth=mutual,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    try:
        yield f"127.0.0.1:{port}", recorder
    finally:
        await server.stop(None)


async def run_cli(*argv: str | Path) -> int:
    """`heartrate ARGV` through its entry point, in a thread (the server runs on this loop)."""
    args: Sequence[str] = [str(a) for a in argv]
    return await asyncio.to_thread(cli.main, args)


def new_token() -> str:
    """A fresh token-like value (the server does not verify it)."""
    return "tok." + secrets.token_urlsafe(24)


async def test_health_over_tls_sends_the_bearer_token(
    pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tls-ca + --token: the Check goes over TLS with `authorization: Bearer <token>`."""
    token = new_token()
    async with tls_server(pki) as (address, recorder):
        code = await run_cli("--address", address, "--tls-ca", pki.ca, "--token", token,
                             "--json", "health")  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out) == {"service": "", "status": "SERVING"}
    assert [(m, md.get("authorization")) for m, md, _ in recorder.calls] == [
        ("Check", f"Bearer {token}")
    ]
    assert token not in out + err


async def test_health_over_mutual_tls_with_the_token_from_the_environment(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tls-cert/--tls-key present the client certificate; HEARTRATE_TOKEN is the default."""
    token = new_token()
    monkeypatch.setenv("HEARTRATE_TOKEN", token)
    async with tls_server(pki, mutual=True) as (address, recorder):
        code = await run_cli("--address", address, "--tls-ca", pki.ca, "--tls-cert",
                             pki.client_cert, "--tls-key", pki.client_key, "health")  # fmt: skip
    out, err = capsys.readouterr()
    assert (code, out.strip()) == (0, "SERVING"), err
    [(method, metadata, client_names)] = recorder.calls
    assert (method, metadata.get("authorization")) == ("Check", f"Bearer {token}")
    assert client_names == [b"heartrate-client"]


async def test_mutual_tls_without_a_client_certificate_is_refused(
    pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mutual-TLS server drops a client without certificate: exit 3, a hint, no token shown."""
    token = new_token()
    async with tls_server(pki, mutual=True) as (address, recorder):
        code = await run_cli("--address", address, "--tls-ca", pki.ca, "--token", token,
                             "--timeout", "5", "health")  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 3
    assert "closed the connection" in err and "--tls-cert" in err
    assert token not in err and recorder.calls == []


async def test_mutual_tls_with_a_certificate_of_another_ca_is_refused(
    pki: Pki, other_pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client certificate the server's CA did not sign gets no call through."""
    async with tls_server(pki, mutual=True) as (address, recorder):
        code = await run_cli("--address", address, "--tls-ca", pki.ca, "--tls-cert",
                             other_pki.client_cert, "--tls-key", other_pki.client_key,
                             "--timeout", "5", "health")  # fmt: skip
    assert code == 3, capsys.readouterr().err
    assert recorder.calls == []


@pytest.mark.parametrize("trust", ["other-ca", "system-roots"])
async def test_an_untrusted_server_certificate_fails_the_handshake(
    trust: str, pki: Pki, other_pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server certificate outside the trusted roots: exit 3 naming TLS, token never shown."""
    token = new_token()
    trust_args = ["--tls-ca", str(other_pki.ca)] if trust == "other-ca" else ["--tls"]
    async with tls_server(pki) as (address, recorder):
        code = await run_cli("--address", address, *trust_args, "--token", token,
                             "--timeout", "5", "health")  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 3
    assert f"TLS with {address} failed" in err and "CERTIFICATE_VERIFY_FAILED" in err
    assert token not in err and recorder.calls == []


@pytest.mark.parametrize(("server_name", "exit_code"), [(None, 3), ("localhost", 0)])
async def test_tls_server_name_overrides_the_checked_name(
    server_name: str | None,
    exit_code: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A certificate for DNS:localhost only, reached at 127.0.0.1: needs --tls-server-name."""
    dns_only = make_pki(tmp_path / "pki", ips=())
    name_args = ["--tls-server-name", server_name] if server_name else []
    async with tls_server(dns_only) as (address, recorder):
        code = await run_cli("--address", address, "--tls-ca", dns_only.ca, *name_args,
                             "--timeout", "5", "health")  # fmt: skip
    assert code == exit_code, capsys.readouterr().err
    assert len(recorder.calls) == (1 if exit_code == 0 else 0)


async def test_no_token_sends_no_authorization(
    pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --token or HEARTRATE_TOKEN no authorization metadata is sent."""
    async with tls_server(pki) as (address, recorder):
        code = await run_cli("--address", address, "--tls-ca", pki.ca, "health")
    assert code == 0, capsys.readouterr().err
    [(_, metadata, _)] = recorder.calls
    assert "authorization" not in metadata


async def test_stream_and_simulate_send_the_token(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The blocking bidi stream and the simulator's asyncio streams carry the token too."""
    token = new_token()
    readings = tmp_path / "readings.csv"
    readings.write_text("1700000000,70\n1700000001,72\n")
    tls = ["--tls-ca", str(pki.ca), "--token", token]
    async with tls_server(pki) as (address, recorder):
        stream_code = await run_cli("--address", address, *tls, "--json", "stream", readings)
        stream_out = capsys.readouterr().out
        sim_code = await run_cli("--address", address, *tls, "--json", "simulate", "--users",
                                 "2", "--rate", "20", "--duration", "0.2")  # fmt: skip
        sim_out, err = capsys.readouterr()
    assert (stream_code, sim_code) == (0, 0), err
    assert json.loads(stream_out.splitlines()[-1])["summary"]["acked"] == 2
    assert json.loads(sim_out.splitlines()[-1])["acked"] == 8
    assert [(m, md.get("authorization")) for m, md, _ in recorder.calls] == [
        ("StreamHeartRate", f"Bearer {token}")
    ] * 3
