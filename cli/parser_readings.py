"""The `heartrate` subcommands about readings and their alerts: `submit`, `stream`, `status`,
`batch`, `zones`, `simulate` and `watch`."""

from __future__ import annotations

from typing import Any

from heartrate_serve.cli.commands import cmd_batch, cmd_status, cmd_stream, cmd_submit, cmd_zones
from heartrate_serve.cli.inputs import parse_bpm
from heartrate_serve.cli.parser_options import (
    add_file_arg,
    global_options,
    physiology_options,
    retry_options,
)
from heartrate_serve.cli.parser_types import int_at_least, positive_float, time_arg
from heartrate_serve.cli.simulator import run_simulate
from heartrate_serve.cli.tokens import users_arg
from heartrate_serve.cli.watch import cmd_watch


def add_submit(sub: Any) -> None:
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
    when.add_argument("--timestamp-ms", type=int_at_least(0), metavar="MS", help="Unix ms")
    p.set_defaults(handler=cmd_submit)
    global_options(p, suppress=True)


def add_stream_status_batch(sub: Any) -> None:
    """The `stream`, `status` and `batch` subcommands."""
    p = sub.add_parser("stream", help="stream readings over one bidi stream (StreamHeartRate)")
    add_file_arg(p)
    retry_options(p)
    p.set_defaults(handler=cmd_stream)
    global_options(p, suppress=True)
    p = sub.add_parser("status", help="alert state, thresholds, stats, recent readings")
    p.add_argument(
        "--recent",
        type=int_at_least(0),
        default=10,
        metavar="N",
        help="how many recent readings (default 10, 0: the server's default)",
    )
    p.set_defaults(handler=cmd_status)
    global_options(p, suppress=True)
    p = sub.add_parser("batch", help="submit readings as one columnar batch")
    add_file_arg(p)
    retry_options(p)
    p.set_defaults(handler=cmd_batch)
    global_options(p, suppress=True)


def add_zones(sub: Any) -> None:
    """The `zones` subcommand."""
    p = sub.add_parser("zones", help="time in heart-rate zones (CalculateExerciseZones)")
    p.add_argument(
        "--age",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="years (optional when --max-hr or the profile gives it)",
    )
    physiology_options(p)
    p.add_argument(
        "--max-gap",
        type=int_at_least(0),
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
    add_file_arg(p)
    p.set_defaults(handler=cmd_zones, resting=0, max_hr=0)
    global_options(p, suppress=True)


def add_simulate(sub: Any) -> None:
    """The `simulate` subcommand."""
    p = sub.add_parser("simulate", help="stream synthetic workouts for many users in real time")
    p.add_argument("--users", type=int_at_least(1), required=True, metavar="N")
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
    retry_options(p)
    p.set_defaults(async_handler=run_simulate)
    global_options(p, suppress=True)


def add_watch(sub: Any) -> None:
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
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="stop after N events (default: run until interrupted)",
    )
    retry_options(p)
    p.set_defaults(handler=cmd_watch)
    global_options(p, suppress=True)
