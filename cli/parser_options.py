"""Options of the `heartrate` parser that several commands share: the global and connection
options, --retry-for/--no-retry, the FILE argument and the physiology options."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from heartrate_serve.cli.parser_types import int_at_least, lows_arg, positive_float
from heartrate_serve.cli.requests import FORMULAS, SEXES, ZONE_MODELS


def global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
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


def retry_options(p: argparse.ArgumentParser) -> None:
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


def add_file_arg(p: argparse.ArgumentParser) -> None:
    """The optional FILE argument ('-' or absent: stdin)."""
    p.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="lines 'bpm', 'timestamp,bpm' or JSON objects; '-' or absent: stdin",
    )


def physiology_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `zones` and `profile set`."""
    p.add_argument("--model", choices=sorted(ZONE_MODELS), help="zone model")
    p.add_argument("--formula", choices=list(FORMULAS), help="HRmax formula")
    p.add_argument("--max-hr", type=int_at_least(0), metavar="BPM", help="measured HRmax")
    p.add_argument("--resting", type=int_at_least(0), metavar="BPM", help="resting heart rate")
    p.add_argument(
        "--lows",
        type=lows_arg,
        metavar="B1,B2,..",
        help="custom zone lower bounds, bpm, ascending (implies --model custom)",
    )
    p.add_argument("--sex", choices=list(SEXES), help="for the Banister TRIMP coefficients")
