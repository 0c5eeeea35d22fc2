"""The `heartrate` argument parser: argument types, options and subcommands."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2_grpc

from heartrate_serve.cli.channel import REDACTED
from heartrate_serve.cli.commands import (
    cmd_batch,
    cmd_health,
    cmd_profile_get,
    cmd_profile_set,
    cmd_status,
    cmd_stream,
    cmd_submit,
    cmd_zones,
)
from heartrate_serve.cli.inputs import parse_bpm, parse_time_ms
from heartrate_serve.cli.requests import FORMULAS, SEXES, ZONE_MODELS
from heartrate_serve.cli.simulator import run_simulate
from heartrate_serve.cli.tokens import (
    DEFAULT_TTL,
    check_user_id,
    cmd_token_issue,
    scopes_arg,
    ttl_arg,
    user_arg,
    users_arg,
)
from heartrate_serve.cli.watch import cmd_watch


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low."""

    def convert(text: str) -> int:
        """The integer, or an argparse error."""
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    convert.__name__ = f"integer >= {low}"
    return convert


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def time_arg(text: str) -> int:
    """An argparse type: a time (Unix s, Unix ms or ISO 8601) as Unix ms."""
    try:
        return parse_time_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def lows_arg(text: str) -> list[int]:
    """An argparse type: comma-separated, strictly ascending, positive zone lower bounds."""
    try:
        lows = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not lows or lows[0] <= 0 or any(b <= a for a, b in zip(lows, lows[1:], strict=False)):
        raise argparse.ArgumentTypeError(f"must be positive and strictly ascending: {text!r}")
    return lows


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--address/--user/--json/--timeout and the connection options; on subcommands with
    suppressed defaults."""

    def default(value: object) -> object:
        """The default, or SUPPRESS so a subcommand does not override the global value."""
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--address",
        default=default(None),
        help="host:port of the service (default 127.0.0.1:GRPC_PORT from the settings, 50051)",
    )
    parser.add_argument("--user", default=default(""), help="user_id (default: the default user)")
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine output: one JSON object per result line",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=default(10.0),
        help="per-call deadline in seconds (default 10)",
    )
    _connection_options(parser, default)


def _connection_options(parser: argparse.ArgumentParser, default: Callable[[Any], Any]) -> None:
    """--token and the TLS options (any --tls* option turns TLS on)."""
    parser.add_argument(
        "--token",
        default=default(None),
        help="bearer token sent on every call (default: $HEARTRATE_TOKEN, which is safer: "
        "command lines are visible to other users)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="connect with TLS, trusting the system's CA roots",
    )
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=default(None),
        metavar="FILE",
        help="connect with TLS, trusting this PEM CA bundle",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=default(None),
        metavar="FILE",
        help="PEM client certificate for mutual TLS (with --tls-key)",
    )
    parser.add_argument(
        "--tls-key",
        type=Path,
        default=default(None),
        metavar="FILE",
        help="PEM private key of --tls-cert",
    )
    parser.add_argument(
        "--tls-server-name",
        default=default(None),
        metavar="NAME",
        help="check the server certificate against NAME instead of the address's host",
    )


def _add_submit(sub: Any) -> None:
    """The `submit` subcommand."""
    p = sub.add_parser("submit", help="submit one reading (SubmitHeartRate)")
    p.add_argument("bpm", type=parse_bpm, metavar="BPM")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--timestamp",
        type=time_arg,
        metavar="S",
        help="Unix seconds (or ISO 8601); default: the server's now",
    )
    when.add_argument("--timestamp-ms", type=_int_at_least(0), metavar="MS", help="Unix ms")
    p.set_defaults(handler=cmd_submit)
    _global_options(p, suppress=True)


def _retry_options(p: argparse.ArgumentParser) -> None:
    """--retry-for / --no-retry of the commands that send readings (see cli/resending.py)."""
    retry = p.add_mutually_exclusive_group()
    retry.add_argument(
        "--retry-for",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="resend through transient failures (UNAVAILABLE, overload, timeouts) for up to S "
        "seconds of continuous failure, then fail (default 60)",
    )
    retry.add_argument(
        "--no-retry",
        action="store_true",
        help="fail at the first transient failure (readings are still stamped by the client)",
    )


def _add_file_arg(p: argparse.ArgumentParser) -> None:
    """The optional FILE argument ('-' or absent: stdin)."""
    p.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="lines 'bpm', 'timestamp,bpm' or JSON objects; '-' or absent: stdin",
    )


def _add_health(sub: Any) -> None:
    """The `health` subcommand."""
    p = sub.add_parser("health", help="grpc.health.v1 Check: SERVING (exit 0) or not (exit 4)")
    p.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help="service name to check (default '': the whole server)",
    )
    p.set_defaults(handler=cmd_health, stub_class=health_pb2_grpc.HealthStub)
    _global_options(p, suppress=True)


def _add_token(sub: Any) -> None:
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


def _add_stream_status_batch(sub: Any) -> None:
    """The `stream`, `status` and `batch` subcommands."""
    p = sub.add_parser("stream", help="stream readings over one bidi stream (StreamHeartRate)")
    _add_file_arg(p)
    _retry_options(p)
    p.set_defaults(handler=cmd_stream)
    _global_options(p, suppress=True)
    p = sub.add_parser("status", help="alert state, thresholds, stats, recent readings")
    p.add_argument(
        "--recent",
        type=_int_at_least(0),
        default=10,
        metavar="N",
        help="how many recent readings (default 10, 0: the server's default)",
    )
    p.set_defaults(handler=cmd_status)
    _global_options(p, suppress=True)
    p = sub.add_parser("batch", help="submit readings as one columnar batch")
    _add_file_arg(p)
    _retry_options(p)
    p.set_defaults(handler=cmd_batch)
    _global_options(p, suppress=True)


def _physiology_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `zones` and `profile set`."""
    p.add_argument("--model", choices=sorted(ZONE_MODELS), help="zone model")
    p.add_argument("--formula", choices=list(FORMULAS), help="HRmax formula")
    p.add_argument("--max-hr", type=_int_at_least(0), metavar="BPM", help="measured HRmax")
    p.add_argument("--resting", type=_int_at_least(0), metavar="BPM", help="resting heart rate")
    p.add_argument(
        "--lows",
        type=lows_arg,
        metavar="B1,B2,..",
        help="custom zone lower bounds, bpm, ascending (implies --model custom)",
    )
    p.add_argument("--sex", choices=list(SEXES), help="for the Banister TRIMP coefficients")


def _add_zones(sub: Any) -> None:
    """The `zones` subcommand."""
    p = sub.add_parser("zones", help="time in heart-rate zones (CalculateExerciseZones)")
    p.add_argument(
        "--age",
        type=_int_at_least(0),
        default=0,
        metavar="N",
        help="years (optional when --max-hr or the profile gives it)",
    )
    _physiology_options(p)
    p.add_argument(
        "--max-gap",
        type=_int_at_least(0),
        metavar="S",
        help="longer gaps count as no data (server default 30)",
    )
    p.add_argument(
        "--end", type=time_arg, metavar="TS", help="session end: the last reading counts until then"
    )
    p.add_argument(
        "--from",
        dest="from_ts",
        type=time_arg,
        metavar="TS",
        help="use stored readings from this time (with --to)",
    )
    p.add_argument("--to", dest="to_ts", type=time_arg, metavar="TS", help="... up to this time")
    _add_file_arg(p)
    p.set_defaults(handler=cmd_zones, resting=0, max_hr=0)
    _global_options(p, suppress=True)


def _add_profile(sub: Any) -> None:
    """The `profile get` and `profile set` subcommands."""
    p = sub.add_parser("profile", help="read or set the user's profile")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    get = actions.add_parser("get", help="show the profile (GetUserProfile)")
    get.set_defaults(handler=cmd_profile_get)
    _global_options(get, suppress=True)
    put = actions.add_parser("set", help="update the profile (SetUserProfile)")
    put.add_argument("--age", type=_int_at_least(0), metavar="N", help="years")
    _physiology_options(put)
    put.add_argument("--normal-low", type=_int_at_least(0), metavar="BPM", help="alert below")
    put.add_argument("--normal-high", type=_int_at_least(0), metavar="BPM", help="alert above")
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
    _global_options(put, suppress=True)
    _global_options(p, suppress=True)


def _add_simulate(sub: Any) -> None:
    """The `simulate` subcommand."""
    p = sub.add_parser("simulate", help="stream synthetic workouts for many users in real time")
    p.add_argument("--users", type=_int_at_least(1), required=True, metavar="N")
    p.add_argument(
        "--rate",
        type=positive_float,
        required=True,
        metavar="HZ",
        help="readings per second per user",
    )
    p.add_argument("--duration", type=positive_float, required=True, metavar="S", help="seconds")
    p.add_argument("--user-prefix", default="sim-", help="user ids are PREFIX1..PREFIXN")
    p.add_argument("--seed", type=int, default=0, help="user i uses workout seed SEED+i")
    _retry_options(p)
    p.set_defaults(async_handler=run_simulate)
    _global_options(p, suppress=True)


def build_parser() -> argparse.ArgumentParser:
    """The whole `heartrate` argument parser."""
    parser = argparse.ArgumentParser(
        prog="heartrate", description="Command-line client of the heartrate-serve gRPC service."
    )
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_submit(sub)
    _add_stream_status_batch(sub)
    _add_zones(sub)
    _add_profile(sub)
    _add_simulate(sub)
    _add_health(sub)
    _add_token(sub)
    _add_watch(sub)
    return parser


def _add_watch(sub: Any) -> None:
    """The `watch` subcommand."""
    p = sub.add_parser("watch", help="print alert events of users as they arrive (WatchAlerts)")
    p.add_argument(
        "--users",
        type=users_arg,
        required=True,
        metavar="A,B,..",
        help="user_ids to watch, comma-separated (1 to 1000)",
    )
    p.add_argument(
        "--after",
        default="",
        metavar="EVENT_ID",
        help="first replay the events after this event_id (as printed), then go on live",
    )
    p.add_argument(
        "--count",
        type=_int_at_least(1),
        default=None,
        metavar="N",
        help="stop after N events (default: run until interrupted)",
    )
    _retry_options(p)
    p.set_defaults(handler=cmd_watch)
    _global_options(p, suppress=True)


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
