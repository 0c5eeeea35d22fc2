"""The `heartrate` client's arguments: global options, subcommands and usage errors."""

from __future__ import annotations

import argparse

import pytest

from heartrate_serve.cli import parser as cli_parser


def args(*argv: str) -> argparse.Namespace:
    """Parses a command line as `heartrate` would."""
    return cli_parser.parse_args(list(argv))


def test_global_options_before_or_after_the_command() -> None:
    """--address/--user/--json/--timeout work on either side of the subcommand."""
    a = args("--address", "h:1", "--user", "u1", "--json", "--timeout", "2.5", "status")
    b = args("status", "--address", "h:1", "--user", "u1", "--json", "--timeout", "2.5")
    for ns in (a, b):
        assert (ns.address, ns.user, ns.json, ns.timeout) == ("h:1", "u1", True, 2.5)


def test_global_defaults() -> None:
    """No address (resolved later from Settings), default user, human output, 10 s timeout."""
    ns = args("status")
    assert (ns.address, ns.user, ns.json, ns.timeout, ns.recent) == (None, "", False, 10.0, 10)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["submit"],
        ["submit", "abc"],
        ["submit", "72", "--timestamp", "1", "--timestamp-ms", "1000"],
        ["status", "--recent", "-1"],
        ["status", "--timeout", "0"],
        ["zones", "--from", "1700000000"],
        ["zones", "--from", "1", "--to", "2", "readings.csv"],
        ["zones", "--lows", "120,100"],
        ["zones", "--lows", "a,b"],
        ["zones", "--model", "magic"],
        ["zones", "--end", "later"],
        ["profile"],
        ["profile", "set", "--sex", "other"],
        ["simulate", "--users", "2", "--rate", "1"],
        ["simulate", "--users", "0", "--rate", "1", "--duration", "5"],
        ["simulate", "--users", "1", "--rate", "-1", "--duration", "5"],
        ["status", "--tls-cert", "client.pem"],
        ["token"],
        ["token", "issue", "--scope", "heartrate:read"],
        ["token", "issue", "--user", "ann"],
        ["token", "issue", "--user", "ann", "--scope", "heartrate:root"],
        ["token", "issue", "--user", "a b", "--scope", "heartrate:read"],
        ["token", "issue", "--user", "ann", "--scope", "heartrate:read", "--ttl", "1w"],
        ["token", "issue", "--user", "ann", "--scope", "heartrate:read", "--users", "x y"],
    ],
)
def test_bad_command_lines_exit_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad command lines exit with argparse's usage error (code 2), before any RPC."""
    with pytest.raises(SystemExit) as exc:
        cli_parser.parse_args(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_simulate_arguments() -> None:
    """simulate takes users, rate, duration, prefix and seed."""
    ns = args("simulate", "--users", "3", "--rate", "2", "--duration", "1.5", "--seed", "9")
    assert (ns.users, ns.rate, ns.duration, ns.user_prefix, ns.seed) == (3, 2.0, 1.5, "sim-", 9)


def test_health_arguments() -> None:
    """health checks the whole server by default, or --service."""
    assert args("health").service == ""
    assert args("health", "--service", "heartrate.HeartRateMonitor").service == (
        "heartrate.HeartRateMonitor"
    )


def test_token_issue_arguments() -> None:
    """token issue: user, scopes as a list, users, ttl in seconds (default 1 h), key."""
    ns = args("token", "issue", "--user", "ann", "--scope", "heartrate:read heartrate:write",
              "--users", "bob,cy", "--ttl", "15m", "--key", "k.pem")  # fmt: skip
    assert (ns.user, ns.scope, ns.users, ns.ttl, str(ns.key)) == (
        "ann", ["heartrate:read", "heartrate:write"], ["bob", "cy"], 900, "k.pem",
    )  # fmt: skip
    ns = args("--user", "ann", "token", "issue", "--scope", "heartrate:admin")
    assert (ns.user, ns.scope, ns.users, ns.ttl, ns.key) == (
        "ann", ["heartrate:admin"], None, 3600, None,
    )  # fmt: skip
