"""A development JWT key pair in DATA_DIR, and tokens signed with it (`heartrate token issue`).

`make run` with AUTH_MODE=jwt and no key configured creates the pair once (ES256, P-256) under
DATA_DIR/auth/, private key mode 0600, and verifies tokens with its public half. For production,
configure AUTH_JWT_PUBLIC_KEY_FILE with your identity provider's key (or JWKS) instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

DEV_KEY_DIR = "auth"
PRIVATE_KEY_FILE = "dev-jwt-private.pem"
PUBLIC_KEY_FILE = "dev-jwt-public.pem"
DEV_ALGORITHM = "ES256"
DEV_KID = "dev"


def dev_key_paths(data_dir: Path) -> tuple[Path, Path]:
    """(private, public) key paths of the development pair under data_dir."""
    folder = Path(data_dir) / DEV_KEY_DIR
    return folder / PRIVATE_KEY_FILE, folder / PUBLIC_KEY_FILE


def ensure_dev_keypair(data_dir: Path) -> tuple[Path, Path, bool]:
    """Creates the development pair unless it exists; (private, public, created)."""
    private, public = dev_key_paths(data_dir)
    if private.exists() and public.exists():
        return private, public, False
    private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    write_private_key(private, key)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public, True


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """key as unencrypted PKCS#8 PEM in path, mode 0600 (also when the file existed)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)


def issue_token(
    private_key_file: Path,
    *,
    user: str,
    scopes: list[str],
    users: list[str] | None = None,
    ttl_s: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    now_s: int | None = None,
) -> str:
    """A token for `user` with these scopes, signed with the key in private_key_file: ES256 for an
    EC key, RS256 for an RSA key."""
    pem = Path(private_key_file).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    algorithm = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    now = int(time.time()) if now_s is None else now_s
    claims: dict[str, object] = {
        "sub": user,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl_s,
    }
    if users:
        claims["users"] = users
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, pem, algorithm=algorithm, headers={"kid": DEV_KID})
