"""`heartrate watch`: alert events of some users as they arrive (WatchAlerts), resumed after a
broken connection from the last event printed, so nothing is missed."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from heartrate_serve.cli.commands import retry_policy
from heartrate_serve.cli.exit_codes import EXIT_OK
from heartrate_serve.cli.output import Json, alert_name, emit, format_ts_ms, warn
from heartrate_serve.cli.resending import RetryPolicy, describe, is_transient
from heartrate_serve.core.errors import InputError
from heartrate_serve.proto import heartrate_service_pb2 as pb


def event_dict(event: pb.AlertEvent) -> Json:
    """An AlertEvent as a JSON-ready dict."""
    return {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "alert_type": pb.AlertType.Name(event.alert_type),
        "active": event.active,
        "at_ms": event.at_ms,
        "at": format_ts_ms(event.at_ms),
        "bpm": event.bpm,
    }


def event_line(event: pb.AlertEvent) -> str:
    """One event as a line: time, user, LOW/HIGH raised/cleared, bpm, event id."""
    what = "raised" if event.active else "cleared"
    name = alert_name(event.alert_type) or "NONE"
    return (
        f"{format_ts_ms(event.at_ms)}  {event.user_id}  {name} {what}  bpm {event.bpm}"
        f"  event {event.event_id}"
    )


def watch(
    stub: Any,
    users: list[str],
    after: str,
    retry: RetryPolicy,
    on_event: Callable[[pb.AlertEvent], None],
    count: int | None = None,
) -> int:
    """Calls WatchAlerts and hands each event to on_event; after a transient failure waits
    (retry) and watches again after the last event seen. Returns the number of events; stops
    after `count` events when given."""
    seen = 0
    attempts = retry.attempts()
    while True:
        call = stub.WatchAlerts(pb.WatchAlertsRequest(user_ids=users, after_event_id=after))
        try:
            for event in call:
                attempts.reset()
                after = event.event_id
                on_event(event)
                seen += 1
                if count is not None and seen >= count:
                    call.cancel()
                    return seen
            return seen  # the server ended the watch (shutdown): treated as done
        except Exception as error:
            if not is_transient(error):
                raise
            delay = attempts.next_delay()
            if delay is None:
                raise
            warn(f"warning: {describe(error)}; watching again in {delay:.1f} s")
            retry.sleep(delay)


def cmd_watch(args: argparse.Namespace, stub: Any) -> int:
    """`watch`: prints alert events of --users as they arrive, until interrupted (or --count)."""
    if len(args.users) > 1000:
        raise InputError("--users: at most 1000 user_ids")
    retry = retry_policy(args)

    def show(event: pb.AlertEvent) -> None:
        emit(args.json, event_dict(event), [event_line(event)])

    watch(stub, args.users, args.after, retry, show, args.count)
    return EXIT_OK
