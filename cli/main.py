"""`heartrate`: the command-line client of the heart-rate gRPC service.

Parsing and formatting are pure functions (plain values and protobuf messages in and out); only
the `cmd_*` handlers, `main` and the simulator touch the network, files and the terminal. The
parts live in inputs (time and reading lines), requests (gRPC requests), output and reports
(text and JSON), parser (arguments), commands (handlers), channel (TLS and the bearer token),
tokens (`token issue`), simulator (`simulate`) and errors (exit codes and RPC errors); this
module holds the entry point.

Exit codes: 0 success, 1 bad input (file, settings, no readings, TLS files, signing key), 2 a gRPC
error (and argparse usage errors), 3 the service cannot be reached (or the TLS handshake failed),
4 `health` answered but not SERVING, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import grpc

from heartrate_serve.cli.channel import (
    clean_token,
    open_channel,
    plaintext_token_warning,
    redact,
    with_token,
)
from heartrate_serve.cli.commands import default_address
from heartrate_serve.cli.exit_codes import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    describe_rpc_error,
    rpc_error_report,
)
from heartrate_serve.cli.output import warn
from heartrate_serve.cli.parser import parse_args
from heartrate_serve.core.errors import InputError, SettingsError
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.settings import Settings


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Runs the chosen command: locally (`token`), or against args.address over one channel."""
    if hasattr(args, "local_handler"):
        code: int = args.local_handler(args, settings or Settings.from_env())
        return code
    if hasattr(args, "async_handler"):
        code = asyncio.run(args.async_handler(args))
        return code
    stub_class = getattr(args, "stub_class", pb_grpc.HeartRateMonitorStub)
    with open_channel(args) as channel:
        stub = with_token(stub_class(channel), getattr(args, "token", None))
        code = args.handler(args, stub)
        return code


def main(argv: Sequence[str] | None = None) -> int:
    """The `heartrate` console script; returns the exit code."""
    args = parse_args(argv)
    token = args.token
    try:
        settings = Settings.from_env()
        token = token or settings.client_token
        args.address = args.address or default_address(settings)
        args.token = token = clean_token(token)
        if not hasattr(args, "local_handler") and (message := plaintext_token_warning(args)):
            warn(message)
        return run(args, settings)
    except grpc.RpcError as exc:
        code, message = rpc_error_report(
            *describe_rpc_error(exc), args.address, token_given=bool(token)
        )
        warn(redact(message, token))
        return code
    except (InputError, SettingsError) as exc:
        warn(redact(f"error: {exc}", token))
        return EXIT_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as other Unix tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
