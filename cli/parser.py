"""The `heartrate` argument parser: the subcommands put together, the checks across options and
a token given on the command line kept out of usage errors.

Argument types live in parser_types, shared options in parser_options, the subcommands in
parser_readings (`submit`, `stream`, `status`, `batch`, `zones`, `simulate`, `watch`) and
parser_admin (`profile`, `health`, `token`)."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Sequence

from heartrate_serve.cli.channel import REDACTED
from heartrate_serve.cli.parser_admin import add_health, add_profile, add_token
from heartrate_serve.cli.parser_options import global_options
from heartrate_serve.cli.parser_readings import (
    add_simulate,
    add_stream_status_batch,
    add_submit,
    add_watch,
    add_zones,
)
from heartrate_serve.cli.tokens import check_user_id


def build_parser() -> argparse.ArgumentParser:
    """The whole `heartrate` argument parser."""
    parser = argparse.ArgumentParser(
        prog="heartrate", description="Command-line client of the heartrate-serve gRPC service."
    )
    global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_submit(sub)
    add_stream_status_batch(sub)
    add_zones(sub)
    add_profile(sub)
    add_simulate(sub)
    add_health(sub)
    add_token(sub)
    add_watch(sub)
    return parser


def _checked(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parsed arguments with the checks across options (argparse usage errors)."""
    args = parser.parse_args(argv)
    if args.command == "zones":
        if (args.from_ts is None) != (args.to_ts is None):
            parser.error("zones: --from and --to go together")
        if args.from_ts is not None and args.file != "-":
            parser.error("zones: give either FILE or --from/--to, not both")
    if args.command == "token":
        try:
            check_user_id(args.user)
        except ValueError as exc:
            parser.error(f"token issue: --user is required: {exc}")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key: give both or neither")
    return args


def token_values(argv: Sequence[str]) -> list[str]:
    """The values given to --token (or an abbreviation of it) on a command line."""
    values = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if len(name) < len("--tok") or not "--token".startswith(name):
            continue
        if eq:
            values.append(value)
        elif i + 1 < len(argv):
            values.append(argv[i + 1])
    return [v for v in values if v]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parsed and cross-checked arguments (exits with usage on error, like argparse).

    A token given on the command line never appears in a usage error: the message is redacted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    secrets = token_values(argv)
    if not secrets:
        return _checked(parser, argv)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return _checked(parser, argv)
    finally:
        text = captured.getvalue()
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        sys.stderr.write(text)
