"""`heartrate token issue`: lifetimes, scopes, and tokens that verify with the public key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from heartrate_serve.cli import main as cli
from heartrate_serve.cli import tokens as cli_tokens
from heartrate_serve.runtime.dev_keys import DEV_KID, dev_key_paths, ensure_dev_keypair

ENV_VARS = ("HEARTRATE_TOKEN", "AUTH_JWT_ISSUER", "AUTH_JWT_AUDIENCE", "DATA_DIR")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DATA_DIR for the CLI's settings, with none of the auth variables of the outer shell."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "data"
    monkeypatch.setenv("DATA_DIR", str(folder))
    return folder


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), ("45", 45), (" 2H ", 7200)],
)
def test_parse_ttl(text: str, seconds: int) -> None:
    """Lifetimes in s, m, h, d or plain seconds."""
    assert cli_tokens.parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0h", "1w", "-5m", "1.5h", "h", "1h30m", "soon"])
def test_parse_ttl_refuses(text: str) -> None:
    """Zero, negative, fractional, unknown units and words are refused."""
    with pytest.raises(ValueError):
        cli_tokens.parse_ttl(text)


def test_parse_scopes() -> None:
    """Blank- or comma-separated known scopes, in order, without repeats; others refused."""
    assert cli_tokens.parse_scopes("heartrate:read heartrate:write") == [
        "heartrate:read",
        "heartrate:write",
    ]
    assert cli_tokens.parse_scopes("heartrate:admin,heartrate:read  heartrate:admin") == [
        "heartrate:admin",
        "heartrate:read",
    ]
    with pytest.raises(ValueError, match="unknown scope heartrate:delete"):
        cli_tokens.parse_scopes("heartrate:read heartrate:delete")
    with pytest.raises(ValueError, match="no scope"):
        cli_tokens.parse_scopes("  ")


def test_parse_users() -> None:
    """Comma-separated user ids, checked like the service checks them."""
    assert cli_tokens.parse_users("ann, bob,,ann") == ["ann", "bob"]
    with pytest.raises(ValueError, match="user id"):
        cli_tokens.parse_users("ann,b b")
    with pytest.raises(ValueError):
        cli_tokens.parse_users(",")


def _claims(token: str, public_pem: bytes, algorithm: str, **verify: str) -> dict[str, object]:
    """The verified claims (signature, exp, and iss/aud when given)."""
    decoded: dict[str, object] = jwt.decode(
        token,
        public_pem,
        algorithms=[algorithm],
        issuer=verify.get("issuer"),
        audience=verify.get("audience"),
        options={"require": ["exp", "iat", "sub"]},
    )
    return decoded


@pytest.mark.parametrize(
    ("ttl", "ttl_s", "users"),
    [("15m", 900, "ann,bob"), ("2h", 7200, None), ("90", 90, None)],
)
def test_token_issue_prints_a_token_the_public_key_verifies(
    ttl: str,
    ttl_s: int,
    users: str | None,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Signed with the development key in DATA_DIR: sub, scope, users, exp = now + ttl, kid."""
    _, public, _ = ensure_dev_keypair(data_dir)
    argv = ["token", "issue", "--user", "carer-1", "--scope", "heartrate:read heartrate:write",
            "--ttl", ttl] + (["--users", users] if users else [])  # fmt: skip
    before = int(time.time())
    assert cli.main(argv) == 0
    after = int(time.time())
    out, err = capsys.readouterr()
    assert err == "" and out.endswith("\n") and out.count("\n") == 1
    token = out.strip()
    claims = _claims(token, public.read_bytes(), "ES256")
    assert claims["sub"] == "carer-1"
    assert claims["scope"] == "heartrate:read heartrate:write"
    assert claims.get("users") == (users.split(",") if users else None)
    assert before + ttl_s <= int(str(claims["exp"])) <= after + ttl_s
    assert "iss" not in claims and "aud" not in claims
    assert jwt.get_unverified_header(token)["kid"] == DEV_KID


def test_token_issue_takes_issuer_and_audience_from_the_settings(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """AUTH_JWT_ISSUER/AUTH_JWT_AUDIENCE become iss/aud; a user given before `token` counts."""
    _, public, _ = ensure_dev_keypair(data_dir)
    monkeypatch.setenv("AUTH_JWT_ISSUER", "https://issuer.test")
    monkeypatch.setenv("AUTH_JWT_AUDIENCE", "heartrate-api")
    assert cli.main(["--user", "ann", "token", "issue", "--scope", "heartrate:admin"]) == 0
    token = capsys.readouterr().out.strip()
    claims = _claims(token, public.read_bytes(), "ES256",
                     issuer="https://issuer.test", audience="heartrate-api")  # fmt: skip
    assert (claims["sub"], claims["scope"]) == ("ann", "heartrate:admin")
    assert int(str(claims["exp"])) - int(str(claims["iat"])) == 3600  # the default ttl, 1h


def test_token_issue_with_an_rsa_key_file(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--key FILE signs with that key (RS256 for RSA) instead of the development key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "rsa.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    argv = ["token", "issue", "--user", "bob", "--scope", "heartrate:write", "--key", str(key_file)]
    assert cli.main(argv) == 0
    claims = _claims(capsys.readouterr().out.strip(), public_pem, "RS256")
    assert (claims["sub"], claims["scope"]) == ("bob", "heartrate:write")
    assert not dev_key_paths(data_dir)[0].exists()


def test_token_issue_without_a_key_says_where_and_how(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No development key: exit 1 naming the expected path, `AUTH_MODE=jwt make run` and --key."""
    assert cli.main(["token", "issue", "--user", "ann", "--scope", "heartrate:read"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert str(dev_key_paths(data_dir)[0].absolute()) in err
    assert "AUTH_MODE=jwt make run" in err and "--key" in err


def test_token_issue_with_a_file_that_is_no_key(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --key that is not a PEM private key: exit 1 naming the file."""
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello\n")
    argv = ["token", "issue", "--user", "ann", "--scope", "heartrate:read", "--key", str(bad)]
    assert cli.main(argv) == 1
    assert f"{bad} is not an unencrypted PEM private key" in capsys.readouterr().err


def test_token_issue_console_script(data_dir: Path) -> None:
    """The installed `heartrate` script prints only the token, which verifies."""
    _, public, _ = ensure_dev_keypair(data_dir)
    script = shutil.which("heartrate", path=str(Path(sys.executable).parent))
    assert script is not None, "the heartrate console script is not installed in the venv"
    done = subprocess.run(
        [script, "token", "issue", "--user", "ann", "--scope", "heartrate:read", "--ttl", "30s"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    claims = _claims(done.stdout.strip(), public.read_bytes(), "ES256")
    assert claims["sub"] == "ann"
    assert int(str(claims["exp"])) - int(str(claims["iat"])) == 30
