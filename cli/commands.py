"""The `heartrate` client's commands: one handler per subcommand, given its arguments and stub."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from heartrate_serve.cli.exit_codes import EXIT_NOT_SERVING, EXIT_OK, describe_rpc_error
from heartrate_serve.cli.inputs import (
    BadLine,
    Reading,
    now_ms,
    open_input,
    parse_lines,
)
from heartrate_serve.cli.output import Tally, emit, response_dict, response_text, warn
from heartrate_serve.cli.reports import (
    batch_dict,
    batch_lines,
    profile_dict,
    profile_lines,
    status_dict,
    status_lines,
    zones_dict,
    zones_lines,
)
from heartrate_serve.cli.requests import (
    batch_request,
    profile_from_args,
    reading_request,
    status_request,
    submit_request,
    zone_request,
)
from heartrate_serve.cli.resending import (
    NO_RETRY,
    ResendingStream,
    RetryPolicy,
    StreamStats,
    call_with_retry,
)
from heartrate_serve.core.errors import InputError
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.settings import Settings


def default_address(settings: Settings | None = None) -> str:
    """127.0.0.1 on the gRPC port of the settings (built from the environment by Settings)."""
    port = (settings or Settings.from_env()).grpc_port
    return f"127.0.0.1:{port}"


def read_readings(path: str) -> list[Reading]:
    """All readings of a file or stdin; bad lines reported on stderr and skipped."""
    readings: list[Reading] = []
    with open_input(path) as lines:
        for item in parse_lines(lines):
            if isinstance(item, BadLine):
                warn(item.message())
            else:
                readings.append(item)
    if not readings:
        raise InputError(f"no readings in {'stdin' if path == '-' else path}")
    return readings


def retry_policy(args: argparse.Namespace, **overrides: Any) -> RetryPolicy:
    """How `stream`, `batch` and `simulate` retry: through transient failures for --retry-for
    seconds (default 60), or not at all with --no-retry. `overrides` (other RetryPolicy fields:
    backoff, sleep, clock...) are for tests."""
    if getattr(args, "no_retry", False):
        return RetryPolicy(max_retries=0, **overrides) if overrides else NO_RETRY
    return RetryPolicy(max_seconds=getattr(args, "retry_for", 60.0), **overrides)


def warn_retry(what: str, delay: float) -> None:
    """One stderr line per retry, so a waiting client says why it waits."""
    warn(f"warning: {what}; retrying in {delay:.1f} s")


def resend_counts(stats: StreamStats) -> dict[str, int]:
    """The resending counts added to a stream's or simulation's summary."""
    return {"resent": stats.resent, "reconnects": stats.reconnects}


def cmd_submit(args: argparse.Namespace, stub: Any) -> int:
    """`submit`: one SubmitHeartRate call."""
    req = submit_request(args)
    resp: pb.HeartRateResponse = stub.SubmitHeartRate(req, timeout=args.timeout)
    reading = Reading(req.bpm, req.timestamp_ms)
    emit(args.json, response_dict(resp, reading), [response_text(resp)])
    return EXIT_OK


def stream_requests(
    items: Iterable[Reading | BadLine], user_id: str, tally: Tally
) -> Iterator[pb.HeartRateRequest]:
    """Requests for the readings; bad lines reported and skipped."""
    for item in items:
        if isinstance(item, BadLine):
            tally.malformed += 1
            warn(item.message())
            continue
        tally.sent += 1
        yield reading_request(item, user_id)


def cmd_stream(args: argparse.Namespace, stub: Any) -> int:
    """`stream`: the whole input over StreamHeartRate, no deadline (input may be live). Readings
    are stamped by the client before their first send, so a broken stream is reopened and its
    unanswered readings resent (see cli/resending.py); one answer line per reading, in order."""
    tally = Tally()
    with open_input(args.file) as lines:
        requests = stream_requests(parse_lines(lines), args.user, tally)
        stream = ResendingStream(
            stub.StreamHeartRate, requests, retry=retry_policy(args), on_retry=warn_retry
        )
        with stream:
            for req, resp in stream:
                reading = Reading(req.bpm, req.timestamp_ms)
                tally.add(resp)
                emit(args.json, response_dict(resp, reading), [response_text(resp, reading)])
    summary = {**asdict(tally), **resend_counts(stream.stats)}
    text = ", ".join(f"{k} {v}" for k, v in summary.items())
    emit(args.json, {"summary": summary}, [f"summary: {text}"])
    return EXIT_OK


def cmd_status(args: argparse.Namespace, stub: Any) -> int:
    """`status`: one GetHeartRateStatus call."""
    resp: pb.StatusResponse = stub.GetHeartRateStatus(status_request(args), timeout=args.timeout)
    emit(args.json, status_dict(resp), status_lines(resp))
    return EXIT_OK


def cmd_zones(args: argparse.Namespace, stub: Any) -> int:
    """`zones`: one CalculateExerciseZones call over the input or a stored range."""
    readings = read_readings(args.file) if args.from_ts is None else []
    req = zone_request(args, readings, now_ms())
    resp: pb.ExerciseZoneResponse = stub.CalculateExerciseZones(req, timeout=args.timeout)
    emit(args.json, zones_dict(resp), zones_lines(resp))
    return EXIT_OK


def cmd_batch(args: argparse.Namespace, stub: Any) -> int:
    """`batch`: one SubmitHeartRateBatch call for the whole input, made again after transient
    failures (its timestamps are filled in before the first send, so readings already stored
    answer as duplicates)."""
    readings = read_readings(args.file)
    req = batch_request(readings, args.user, now_ms())
    resp: pb.HeartRateBatchResponse = call_with_retry(
        stub.SubmitHeartRateBatch,
        req,
        timeout=args.timeout,
        retry=retry_policy(args),
        on_retry=warn_retry,
    )
    emit(args.json, batch_dict(resp, readings), batch_lines(resp, readings))
    return EXIT_OK


def cmd_profile_get(args: argparse.Namespace, stub: Any) -> int:
    """`profile get`: one GetUserProfile call (NOT_FOUND when none was set)."""
    req = pb.GetUserProfileRequest(user_id=args.user)
    resp: pb.GetUserProfileResponse = stub.GetUserProfile(req, timeout=args.timeout)
    emit(args.json, profile_dict(resp.profile), profile_lines(resp.profile))
    return EXIT_OK


def _stored_profile(args: argparse.Namespace, stub: Any) -> pb.UserProfile | None:
    """The user's stored profile, None when none is set or --replace was given."""
    if args.replace:
        return None
    try:
        req = pb.GetUserProfileRequest(user_id=args.user)
        resp: pb.GetUserProfileResponse = stub.GetUserProfile(req, timeout=args.timeout)
    except grpc.RpcError as exc:
        if describe_rpc_error(exc)[0] == "NOT_FOUND":
            return None
        raise
    return resp.profile


def cmd_profile_set(args: argparse.Namespace, stub: Any) -> int:
    """`profile set`: updates the stored profile with the given options (SetUserProfile)."""
    profile = profile_from_args(args, _stored_profile(args, stub))
    req = pb.SetUserProfileRequest(profile=profile)
    resp: pb.SetUserProfileResponse = stub.SetUserProfile(req, timeout=args.timeout)
    emit(args.json, profile_dict(resp.profile), profile_lines(resp.profile))
    return EXIT_OK


def health_name(status: int) -> str:
    """The name of a grpc.health.v1 serving status (e.g. SERVING)."""
    try:
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        return name
    except ValueError:
        return str(status)


def cmd_health(args: argparse.Namespace, stub: Any) -> int:
    """`health`: one grpc.health.v1 Health/Check; exit 0 when SERVING, 4 otherwise."""
    req = health_pb2.HealthCheckRequest(service=args.service)
    resp: health_pb2.HealthCheckResponse = stub.Check(req, timeout=args.timeout)
    name = health_name(resp.status)
    emit(args.json, {"service": args.service, "status": name}, [name])
    return EXIT_OK if resp.status == health_pb2.HealthCheckResponse.SERVING else EXIT_NOT_SERVING
