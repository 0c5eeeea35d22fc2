"""The `heartrate` client's connection options: TLS credentials, the token metadata, redaction."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import grpc
import pytest

from heartrate_serve.cli import channel as cli_channel
from heartrate_serve.cli import exit_codes
from heartrate_serve.cli import parser as cli_parser
from heartrate_serve.core.errors import InputError
from tests.support.certs import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def args(*argv: str) -> argparse.Namespace:
    """Parses a command line as `heartrate` would."""
    return cli_parser.parse_args(list(argv))


def tls_of(*argv: str) -> cli_channel.TlsOptions:
    """The TLS options of a command line."""
    return cli_channel.TlsOptions.from_args(args(*argv))


def test_connection_options_before_or_after_the_command() -> None:
    """--token and the --tls* options work on either side of the subcommand; none by default."""
    opts = ["--token", "t", "--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem",
            "--tls-server-name", "localhost"]  # fmt: skip
    for ns in (args(*opts, "health"), args("status", *opts)):
        assert (ns.token, ns.tls_ca, ns.tls_cert, ns.tls_key, ns.tls_server_name) == (
            "t", Path("ca.pem"), Path("c.pem"), Path("k.pem"), "localhost",
        )  # fmt: skip
    ns = args("status")
    assert (ns.token, ns.tls, ns.tls_ca, ns.tls_cert, ns.tls_key) == (None, False, None, None, None)


@pytest.mark.parametrize(
    ("argv", "enabled"),
    [
        ([], False),
        (["--tls"], True),
        (["--tls-ca", "ca.pem"], True),
        (["--tls-cert", "c.pem", "--tls-key", "k.pem"], True),
        (["--tls-server-name", "localhost"], True),
    ],
)
def test_any_tls_option_turns_tls_on(argv: list[str], enabled: bool) -> None:
    """TLS is on with any --tls* option, off without."""
    assert tls_of(*argv, "health").enabled is enabled


def test_plaintext_has_no_credentials() -> None:
    """No TLS option: no channel credentials, no options (an insecure channel)."""
    tls = tls_of("health")
    assert cli_channel.channel_credentials(tls) is None
    assert cli_channel.channel_options(tls) == []


def test_tls_credentials_from_files(pki: Pki) -> None:
    """CA only, system roots, and CA plus client certificate all give TLS credentials."""
    for argv in (
        ["--tls-ca", str(pki.ca)],
        ["--tls"],
        ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key",
         str(pki.client_key)],
    ):  # fmt: skip
        creds = cli_channel.channel_credentials(tls_of(*argv, "health"))
        assert isinstance(creds, grpc.ChannelCredentials)
    tls = tls_of("--tls-ca", str(pki.ca), "--tls-server-name", "localhost", "health")
    assert cli_channel.channel_options(tls) == [("grpc.ssl_target_name_override", "localhost")]


def test_unusable_tls_files_are_input_errors(pki: Pki, tmp_path: Path) -> None:
    """A missing file, a file that is not PEM, a key given as certificate: errors naming them."""
    missing = tmp_path / "missing.pem"
    with pytest.raises(InputError, match=f"cannot read --tls-ca {missing}"):
        cli_channel.channel_credentials(cli_channel.TlsOptions(True, ca=missing))
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    with pytest.raises(InputError, match="--tls-ca .*not a PEM file"):
        cli_channel.channel_credentials(cli_channel.TlsOptions(True, ca=text))
    with pytest.raises(InputError, match="--tls-cert .*CERTIFICATE"):
        cli_channel.channel_credentials(
            cli_channel.TlsOptions(True, cert=pki.client_key, key=pki.client_key)
        )
    with pytest.raises(InputError, match="give both or neither"):
        cli_channel.channel_credentials(cli_channel.TlsOptions(True, cert=pki.client_cert))


@pytest.mark.parametrize("argv", [["--tls-cert", "c.pem"], ["--tls-key", "k.pem"]])
def test_client_certificate_and_key_go_together(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--tls-cert without --tls-key (or the reverse) is a usage error."""
    with pytest.raises(SystemExit) as exc:
        args(*argv, "health")
    assert exc.value.code == 2
    assert "--tls-cert and --tls-key: give both or neither" in capsys.readouterr().err


def test_token_metadata_and_cleaning() -> None:
    """The token becomes `authorization: Bearer <token>`; blanks and a Bearer prefix removed."""
    assert cli_channel.auth_metadata("abc.def") == (("authorization", "Bearer abc.def"),)
    assert cli_channel.auth_metadata(None) == ()
    assert cli_channel.clean_token("  abc.def\n") == "abc.def"
    assert cli_channel.clean_token("Bearer abc.def") == "abc.def"
    assert cli_channel.clean_token(" ") is None and cli_channel.clean_token(None) is None
    with pytest.raises(InputError) as exc:
        cli_channel.clean_token("abc def-secret")
    assert "def-secret" not in str(exc.value)


class FakeStub:
    """A stub whose one method records how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []
        self.label = "not a method"

    def Check(self, request: Any, **kwargs: Any) -> str:
        self.calls.append((request, kwargs))
        return "answer"


def test_with_token_adds_the_metadata_to_every_call() -> None:
    """A token wraps the stub so calls carry the metadata; no token leaves the stub as it is."""
    stub = FakeStub()
    assert cli_channel.with_token(stub, None) is stub
    wrapped = cli_channel.with_token(stub, "abc")
    assert wrapped.Check("req", timeout=3) == "answer"
    assert stub.calls == [("req", {"timeout": 3, "metadata": (("authorization", "Bearer abc"),)})]
    assert wrapped.label == "not a method"


@pytest.mark.parametrize(
    ("argv", "warned"),
    [
        (["--address", "10.0.0.5:50051", "--token", "t"], True),
        (["--address", "[2001:db8::1]:50051", "--token", "t"], True),
        (["--address", "10.0.0.5:50051"], False),
        (["--address", "10.0.0.5:50051", "--token", "t", "--tls"], False),
        (["--address", "127.0.0.1:50051", "--token", "t"], False),
        (["--address", "localhost:50051", "--token", "t"], False),
        (["--address", "[::1]:50051", "--token", "t"], False),
    ],
)
def test_plaintext_token_warning(argv: list[str], warned: bool) -> None:
    """A token sent without TLS to a host other than loopback is warned about, without itself."""
    message = cli_channel.plaintext_token_warning(args(*argv, "health"))
    assert (message is not None) is warned
    assert message is None or "warning: sending the token to" in message


def test_redact() -> None:
    """Every occurrence of the token is replaced; no token, no change."""
    assert cli_channel.redact("a tok b tok", "tok") == "a <token> b <token>"
    assert cli_channel.redact("a tok", None) == "a tok"


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "issue", "--user", "a", "--scope", "heartrate:read", "--token", "s3cr3t-tok"],
        ["token", "issue", "--user", "a", "--scope", "heartrate:read", "--token=s3cr3t-tok"],
        ["token", "issue", "--user", "a", "--scope", "heartrate:read", "--tok", "s3cr3t-tok"],
    ],
)
def test_usage_errors_never_show_the_token(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse echoes unrecognized arguments; a token among them is redacted."""
    with pytest.raises(SystemExit):
        cli_parser.parse_args(argv)
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err and "<token>" in err
    assert "s3cr3t-tok" not in err


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Tls "
         "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED",
         "error: TLS with h:1 failed: UNKNOWN: ipv4:127.0.0.1:1: Tls handshake failed"),
        ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Custom "
         "verification check failed with error: UNAUTHENTICATED: Hostname Verification Check "
         "failed.", "error: TLS with h:1 failed"),
        ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: Socket "
         "closed", "error: h:1 closed the connection: UNAVAILABLE"),
    ],
)  # fmt: skip
def test_tls_failures_are_reported_as_such(details: str, message: str) -> None:
    """TLS handshake failures and dropped connections exit 3 with what to check, not 'running?'."""
    code, text = exit_codes.rpc_error_report("UNAVAILABLE", details, "h:1")
    assert code == 3 and text.startswith(message) and "is the service running" not in text


def test_unauthenticated_without_a_token_says_how_to_get_one() -> None:
    """UNAUTHENTICATED without a token points at --token and `heartrate token issue`."""
    code, text = exit_codes.rpc_error_report(
        "UNAUTHENTICATED", "missing token", "h:1", token_given=False
    )
    assert code == 2 and "--token" in text and "heartrate token issue" in text
    _, text = exit_codes.rpc_error_report("UNAUTHENTICATED", "token expired", "h:1")
    assert text == "error: UNAUTHENTICATED: token expired"
