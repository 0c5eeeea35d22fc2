"""Alert events as watchers and webhooks see them, and the event ids they resume from.

An event id is "<ms>-<seq>:<user_id>": the id of the event in the user's Redis stream (its
server's clock in ms and a sequence number, growing per user) and the user. Ids of one user
are ordered; a resume cursor (after_event_id) replays, for its own user, the events with a
larger stream id and, for every other watched user, those from the same millisecond on (so a
reconnecting app misses nothing; an event of another user in that very millisecond may come
twice, and event_id tells the copies apart).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from heartrate_serve.core.constants import MAX_WATCHED_USERS, USER_ID_PATTERN
from heartrate_serve.core.errors import InvalidRequest

_STREAM_ID = re.compile(r"(\d{1,19})-(\d{1,19})")
_USER = re.compile(USER_ID_PATTERN)

StreamId = tuple[int, int]


@dataclass(frozen=True)
class AlertRecord:
    """One raise (active) or clear (not active) of a user's sustained alert.

    alert_type: 1 LOW, 2 HIGH (the type raised, or the type that cleared); at_ms: the
    timestamp of the reading that raised or cleared it; bpm: that reading's bpm."""

    stream_id: StreamId
    user_id: str
    alert_type: int
    active: bool
    at_ms: int
    bpm: int

    @property
    def event_id(self) -> str:
        """The id clients see and resume from: "<ms>-<seq>:<user_id>"."""
        return f"{self.stream_id[0]}-{self.stream_id[1]}:{self.user_id}"

    def to_json(self) -> dict[str, object]:
        """The event as a JSON object (webhook bodies, the dashboard)."""
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "alert_type": {1: "LOW_HEART_RATE", 2: "HIGH_HEART_RATE"}.get(self.alert_type, "NONE"),
            "active": self.active,
            "at_ms": self.at_ms,
            "bpm": self.bpm,
        }


@dataclass(frozen=True)
class Cursor:
    """Where a watch resumes: after stream_id of user_id."""

    stream_id: StreamId
    user_id: str

    def floor(self, user: str) -> tuple[StreamId, bool]:
        """For `user`: the stream id to replay from, and whether it is exclusive."""
        if user == self.user_id:
            return self.stream_id, True
        return (self.stream_id[0], 0), False


def parse_stream_id(text: str) -> StreamId:
    """A Redis stream id "<ms>-<seq>" as a tuple; ValueError when it is not one."""
    match = _STREAM_ID.fullmatch(text)
    if match is None:
        raise ValueError(f"not a stream id: {text!r}")
    return int(match.group(1)), int(match.group(2))


def parse_cursor(event_id: str) -> Cursor | None:
    """after_event_id as a Cursor; None for "" (live only); InvalidRequest when malformed."""
    if event_id == "":
        return None
    stream, sep, user = event_id.partition(":")
    try:
        sid = parse_stream_id(stream)
    except ValueError:
        sid = None
    if sid is None or not sep or _USER.fullmatch(user) is None:
        raise InvalidRequest(
            "after_event_id",
            f"after_event_id {event_id[:200]!r} is not an event id: expected the event_id of "
            'an AlertEvent ("<ms>-<seq>:<user_id>"), or empty for live events only',
        )
    return Cursor(sid, user)


def watched_users(user_ids: list[str]) -> list[str]:
    """The distinct user_ids of a watch request, in order; InvalidRequest (field user_ids)
    unless there are 1..MAX_WATCHED_USERS of them, each 1-128 characters of [A-Za-z0-9._:@-]."""
    users = list(dict.fromkeys(user_ids))
    if not users:
        raise InvalidRequest("user_ids", "user_ids is empty: name 1 to 1000 users to watch")
    if len(users) > MAX_WATCHED_USERS:
        raise InvalidRequest(
            "user_ids",
            f"user_ids names {len(users)} users; one watch takes at most {MAX_WATCHED_USERS}",
        )
    for i, user in enumerate(users):
        if _USER.fullmatch(user) is None:
            raise InvalidRequest(
                "user_ids",
                f"user_ids[{i}] {user[:200]!r} is not a user id: 1-128 characters of "
                "[A-Za-z0-9._:@-]",
            )
    return users
