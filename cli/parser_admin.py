"""The `heartrate` subcommands that set up rather than send or read readings: `profile get`,
`profile set`, `health` and `token issue`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2_grpc

from heartrate_serve.cli.commands import cmd_health, cmd_profile_get, cmd_profile_set
from heartrate_serve.cli.parser_options import global_options, physiology_options
from heartrate_serve.cli.parser_types import int_at_least
from heartrate_serve.cli.tokens import (
    DEFAULT_TTL,
    cmd_token_issue,
    scopes_arg,
    ttl_arg,
    user_arg,
    users_arg,
)


def add_profile(sub: Any) -> None:
    """The `profile get` and `profile set` subcommands."""
    p = sub.add_parser("profile", help="read or set the user's profile")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    get = actions.add_parser("get", help="show the profile (GetUserProfile)")
    get.set_defaults(handler=cmd_profile_get)
    global_options(get, suppress=True)
    put = actions.add_parser("set", help="update the profile (SetUserProfile)")
    put.add_argument("--age", type=int_at_least(0), metavar="N", help="years")
    physiology_options(put)
    put.add_argument("--normal-low", type=int_at_least(0), metavar="BPM", help="alert below")
    put.add_argument("--normal-high", type=int_at_least(0), metavar="BPM", help="alert above")
    put.add_argument(
        "--webhook-url",
        metavar="URL",
        help="POST this user's alert events here (http:// or https://; '' removes it)",
    )
    put.add_argument(
        "--replace",
        action="store_true",
        help="replace the whole profile instead of updating the stored one",
    )
    put.set_defaults(handler=cmd_profile_set)
    global_options(put, suppress=True)
    global_options(p, suppress=True)


def add_health(sub: Any) -> None:
    """The `health` subcommand."""
    p = sub.add_parser("health", help="grpc.health.v1 Check: SERVING (exit 0) or not (exit 4)")
    p.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help="service name to check (default '': the whole server)",
    )
    p.set_defaults(handler=cmd_health, stub_class=health_pb2_grpc.HealthStub)
    global_options(p, suppress=True)


def add_token(sub: Any) -> None:
    """The `token issue` subcommand (local: no call to the service)."""
    p = sub.add_parser("token", help="development tokens, signed locally")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    issue = actions.add_parser(
        "issue",
        help="sign a token with the development key (or --key); prints only the token",
        description="Sign a JWT with the development key `make run` creates in DATA_DIR when "
        "AUTH_MODE=jwt (or --key FILE); iss/aud from AUTH_JWT_ISSUER/AUTH_JWT_AUDIENCE.",
    )
    issue.add_argument(
        "--user",
        type=user_arg,
        default=argparse.SUPPRESS,
        metavar="U",
        help="the token's subject (sub): the user it acts as (required)",
    )
    issue.add_argument(
        "--scope",
        type=scopes_arg,
        required=True,
        metavar="SCOPES",
        help="space-separated: heartrate:read, heartrate:write, heartrate:admin",
    )
    issue.add_argument(
        "--users",
        type=users_arg,
        default=None,
        metavar="A,B",
        help="users a heartrate:read token may also read (the `users` claim)",
    )
    issue.add_argument(
        "--ttl",
        type=ttl_arg,
        default=DEFAULT_TTL,
        metavar="TTL",
        help=f"lifetime: 30s, 15m, 1h, 7d or seconds (default {DEFAULT_TTL})",
    )
    issue.add_argument(
        "--key",
        type=Path,
        default=None,
        metavar="FILE",
        help="PEM private key (EC P-256 or RSA); default: the development key in DATA_DIR",
    )
    issue.set_defaults(local_handler=cmd_token_issue)
