"""`heartrate token issue`: a development JWT signed with a local private key.

    heartrate token issue --user ann --scope "heartrate:read heartrate:write" --ttl 1h
    heartrate token issue --user carer --scope heartrate:read --users ann,bob --ttl 7d

The key is --key FILE, by default the development key `make run` creates in DATA_DIR when
AUTH_MODE=jwt and no key is configured (runtime/dev_keys.py); `iss`/`aud` come from
AUTH_JWT_ISSUER/AUTH_JWT_AUDIENCE when set, so the service accepts the token. Only the token is
printed (on stdout): `export HEARTRATE_TOKEN=$(heartrate token issue ...)`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import jwt

from heartrate_serve.cli.exit_codes import EXIT_OK
from heartrate_serve.core.constants import USER_ID_PATTERN
from heartrate_serve.core.errors import InputError
from heartrate_serve.runtime.dev_keys import dev_key_paths, issue_token
from heartrate_serve.settings import Settings

SCOPES = ("heartrate:read", "heartrate:write", "heartrate:admin")
TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_TTL = "1h"
_TTL_RE = re.compile(r"(\d+)\s*([smhd]?)")
_USER_RE = re.compile(USER_ID_PATTERN)
T = TypeVar("T")


def parse_ttl(text: str) -> int:
    """A lifetime such as 30s, 15m, 1h, 7d or plain seconds, in seconds (> 0)."""
    match = _TTL_RE.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"not a lifetime (like 30s, 15m, 1h, 7d or seconds): {text!r}")
    seconds = int(match[1]) * TTL_UNITS[match[2] or "s"]
    if seconds <= 0:
        raise ValueError(f"lifetime must be > 0, got {text!r}")
    return seconds


def parse_scopes(text: str) -> list[str]:
    """Scopes separated by blanks or commas, each a known one; in order, without repeats."""
    scopes = list(dict.fromkeys(s for s in re.split(r"[\s,]+", text) if s))
    if not scopes:
        raise ValueError(f"no scope given (known: {' '.join(SCOPES)})")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {', '.join(unknown)} (known: {' '.join(SCOPES)})")
    return scopes


def check_user_id(text: str) -> str:
    """A user id as the service accepts it (1-128 characters of [A-Za-z0-9._:@-])."""
    if not _USER_RE.fullmatch(text):
        raise ValueError(f"user id must be 1-128 characters of [A-Za-z0-9._:@-], got {text!r}")
    return text


def parse_users(text: str) -> list[str]:
    """A comma-separated list of user ids (the users a reader may read)."""
    users = list(dict.fromkeys(u.strip() for u in text.split(",") if u.strip()))
    if not users:
        raise ValueError(f"no user ids in {text!r}")
    return [check_user_id(u) for u in users]


def _argtype(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parse function raising ValueError with a clear message."""

    def convert(text: str) -> T:
        """The parsed value, or an argparse error with the parser's message."""
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


ttl_arg = _argtype(parse_ttl)
scopes_arg = _argtype(parse_scopes)
users_arg = _argtype(parse_users)
user_arg = _argtype(check_user_id)


def signing_key(args: argparse.Namespace, settings: Settings) -> Path:
    """--key, or the development private key under DATA_DIR; InputError saying how to get one."""
    if args.key is not None:
        key = Path(args.key)
        if not key.is_file():
            raise InputError(f"no signing key at {key} (--key)")
        return key
    key = dev_key_paths(settings.data_dir)[0].absolute()
    if not key.is_file():
        raise InputError(
            f"no development signing key at {key}: start the service once with "
            "`AUTH_MODE=jwt make run` (same DATA_DIR; it creates the key pair there), "
            "or pass --key FILE"
        )
    return key


def cmd_token_issue(args: argparse.Namespace, settings: Settings) -> int:
    """`token issue`: prints a signed token for --user with --scope (only the token, on stdout)."""
    key = signing_key(args, settings)
    try:
        token = issue_token(
            key,
            user=args.user,
            scopes=args.scope,
            users=args.users,
            ttl_s=args.ttl,
            issuer=settings.auth_jwt_issuer,
            audience=settings.auth_jwt_audience,
        )
    except OSError as exc:
        raise InputError(f"cannot read signing key {key}: {exc.strerror or exc}") from None
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        # cryptography's messages name the problem, never the key's content.
        raise InputError(
            f"{key} is not an unencrypted PEM private key (EC P-256 or RSA): {exc}"
        ) from None
    print(token, flush=True)
    return EXIT_OK
