"""`heartrate`: the command-line client of the heart-rate gRPC service.

Parsing and formatting are pure functions (plain values and protobuf messages in and out); only
the `cmd_*` handlers, `main` and the simulator touch the network, files and the terminal. The
parts live in cli_input (time and reading lines), cli_requests (gRPC requests), cli_output and
cli_reports (text and JSON), cli_parser (arguments), cli_commands (handlers), cli_simulator
(`simulate`) and cli_errors (exit codes and RPC errors); this module holds the entry point.

Exit codes: 0 success, 1 bad input (file, settings, no readings), 2 a gRPC error (and argparse
usage errors), 3 the service cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import grpc

from heartrate_serve.cli.commands import default_address
from heartrate_serve.cli.errors import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    InputError,
    describe_rpc_error,
    rpc_error_report,
)
from heartrate_serve.cli.output import warn
from heartrate_serve.cli.parser import parse_args
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.settings import SettingsError


def run(args: argparse.Namespace) -> int:
    """Runs the chosen command against args.address."""
    if hasattr(args, "async_handler"):
        code: int = asyncio.run(args.async_handler(args))
        return code
    with grpc.insecure_channel(args.address) as channel:
        code = args.handler(args, pb_grpc.HeartRateMonitorStub(channel))  # type: ignore[no-untyped-call]
        return code


def main(argv: Sequence[str] | None = None) -> int:
    """The `heartrate` console script; returns the exit code."""
    args = parse_args(argv)
    try:
        args.address = args.address or default_address()
        return run(args)
    except grpc.RpcError as exc:
        code, message = rpc_error_report(*describe_rpc_error(exc), args.address)
        warn(message)
        return code
    except (InputError, SettingsError) as exc:
        warn(f"error: {exc}")
        return EXIT_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as other Unix tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
